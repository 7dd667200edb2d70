//! Swarm-only `deploy` keys the Compose model does not carry yet: `deploy.mode` and
//! `deploy.resources`. Read straight from the same Compose files (later files win), without
//! interpolation; everything else comes from the validated model.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::config::{self, LoadOptions};

pub use super::convert::{Extras, Resources};

/// The Compose files `opts` names, as the loader finds them.
fn files(opts: &LoadOptions) -> Vec<PathBuf> {
    let explicit: Vec<PathBuf> = if !opts.files.is_empty() {
        opts.files.clone()
    } else {
        opts.env
            .get("COMPOSE_FILE")
            .filter(|v| !v.is_empty())
            .map(|l| {
                let sep = opts
                    .env
                    .get("COMPOSE_PATH_SEPARATOR")
                    .filter(|s| !s.is_empty())
                    .map(String::as_str)
                    .unwrap_or(":");
                l.split(sep)
                    .filter(|f| !f.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    if !explicit.is_empty() {
        return explicit.iter().map(|f| opts.cwd.join(f)).collect();
    }
    let mut out: Vec<PathBuf> = config::DEFAULT_FILES
        .iter()
        .map(|f| opts.cwd.join(f))
        .find(|p| p.is_file())
        .into_iter()
        .collect();
    out.extend(
        config::OVERRIDE_FILES
            .iter()
            .map(|f| opts.cwd.join(f))
            .find(|p| p.is_file()),
    );
    out
}

/// Per Compose service, the Swarm-only keys; problems as warnings (the key is ignored).
pub fn read(opts: &LoadOptions) -> (BTreeMap<String, Extras>, Vec<String>) {
    let mut out: BTreeMap<String, Extras> = BTreeMap::new();
    let mut warnings = Vec::new();
    for path in files(opts) {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(root) = serde_saphyr::from_str::<Value>(&text) else {
            continue; // the loader reports syntax errors
        };
        let Some(services) = root.get("services").and_then(Value::as_object) else {
            continue;
        };
        for (name, svc) in services {
            let Some(deploy) = svc.get("deploy") else {
                continue;
            };
            let e = out.entry(name.clone()).or_default();
            let p = format!("services.{name}.deploy");
            match deploy.get("mode").and_then(Value::as_str) {
                Some("global") => e.global = true,
                Some("replicated") => e.global = false,
                Some(other) => warnings.push(format!(
                    "{p}.mode: {other:?} is not replicated or global, ignored"
                )),
                None => {}
            }
            if let Some(r) = deploy.get("resources") {
                for (kind, slot) in [
                    ("limits", &mut e.resources.limits),
                    ("reservations", &mut e.resources.reservations),
                ] {
                    let Some(v) = r.get(kind) else { continue };
                    if let Some(c) = v.get("cpus") {
                        match cpus(c) {
                            Some(n) => slot.nano_cpus = Some(n),
                            None => warnings.push(format!(
                                "{p}.resources.{kind}.cpus: expected a number of CPUs, ignored"
                            )),
                        }
                    }
                    if let Some(m) = v.get("memory") {
                        match bytes(m) {
                            Some(n) => slot.memory_bytes = Some(n),
                            None => warnings.push(format!(
                                "{p}.resources.{kind}.memory: expected a size like 64M, ignored"
                            )),
                        }
                    }
                    if kind == "limits"
                        && let Some(n) = v.get("pids").and_then(Value::as_i64)
                    {
                        slot.pids = Some(n);
                    }
                }
            }
        }
    }
    (out, warnings)
}

/// `0.5`, `"0.5"` -> nano CPUs.
fn cpus(v: &Value) -> Option<i64> {
    let n = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (n >= 0.0).then(|| (n * 1e9).round() as i64)
}

/// `64M`, `1g`, `512mb`, `1024` -> bytes (binary units, as Compose reads them).
pub fn bytes(v: &Value) -> Option<i64> {
    let s = match v {
        Value::Number(n) => return n.as_i64(),
        Value::String(s) => s.trim().to_ascii_lowercase(),
        _ => return None,
    };
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1i64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_cpus() {
        assert_eq!(bytes(&Value::from("64M")), Some(64 << 20));
        assert_eq!(bytes(&Value::from("1g")), Some(1 << 30));
        assert_eq!(bytes(&Value::from("512mb")), Some(512 << 20));
        assert_eq!(bytes(&Value::from(1024)), Some(1024));
        assert_eq!(bytes(&Value::from("x")), None);
        assert_eq!(cpus(&Value::from("0.5")), Some(500_000_000));
        assert_eq!(cpus(&Value::from(2)), Some(2_000_000_000));
    }
}
