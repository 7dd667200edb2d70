//! Readers of single service keys whose values have a form of their own: `healthcheck`,
//! `restart`, `devices`, `ulimits`, `logging`, maps of strings.

use std::collections::BTreeMap;

use super::super::model::*;
use super::super::read::{self, Result, Warnings, child, fail, index};
use super::super::yaml::{Kind, Node};

pub(super) fn healthcheck(w: &mut Warnings, v: &Node, p: &str) -> Result<Option<Healthcheck>> {
    let mut h = Healthcheck {
        test: Vec::new(),
        interval: None,
        timeout: None,
        retries: None,
        start_period: None,
        start_interval: None,
    };
    let mut disable = false;
    for (k, val) in read::map(v, p)? {
        let kp = child(p, &k.name);
        match k.name.as_str() {
            "test" => {
                h.test = match &val.kind {
                    Kind::Str(s) => vec!["CMD-SHELL".to_string(), s.clone()],
                    Kind::Seq(_) => {
                        let t = read::string_or_list(val, &kp, false)?;
                        match t.first().map(String::as_str) {
                            Some("CMD" | "CMD-SHELL" | "NONE") => t,
                            _ => {
                                return Err(fail(
                                    &val.loc,
                                    &kp,
                                    "a test list must start with CMD, CMD-SHELL or NONE",
                                ));
                            }
                        }
                    }
                    _ => return Err(fail(&val.loc, &kp, "expected a string or a list")),
                }
            }
            "interval" => h.interval = read::opt_duration(val, &kp)?,
            "timeout" => h.timeout = read::opt_duration(val, &kp)?,
            "start_period" => h.start_period = read::opt_duration(val, &kp)?,
            "retries" => h.retries = Some(read::u32_(val, &kp)?),
            "disable" => disable = read::boolean(val, &kp)?,
            "start_interval" => h.start_interval = read::opt_duration(val, &kp)?,
            key if key.starts_with("x-") => {}
            _ => w.at(&k.loc, &kp, "unknown key, ignored"),
        }
    }
    if disable {
        h.test = vec!["NONE".to_string()];
    }
    // An empty test keeps the image's HEALTHCHECK command with these timings.
    Ok(Some(h))
}

pub(super) fn restart(v: &Node, p: &str) -> Result<(Option<RestartCondition>, Option<u32>)> {
    let bad = || {
        fail(
            &v.loc,
            p,
            "expected no, always, on-failure, on-failure:N or unless-stopped",
        )
    };
    // `restart: no` unquoted is the boolean false in YAML 1.1 readers.
    let text = match &v.kind {
        Kind::Bool(false) => "no".to_string(),
        Kind::Str(s) => s.clone(),
        _ => return Err(bad()),
    };
    Ok(match text.as_str() {
        "no" | "" => (Some(RestartCondition::Never), None),
        "always" | "unless-stopped" => (Some(RestartCondition::Always), None),
        "on-failure" => (Some(RestartCondition::OnFailure), None),
        other => match other.strip_prefix("on-failure:").map(str::parse::<u32>) {
            Some(Ok(n)) => (Some(RestartCondition::OnFailure), Some(n)),
            _ => return Err(bad()),
        },
    })
}

/// `devices`: `HOST[:CONTAINER[:PERMISSIONS]]` or `{source, target, permissions}`.
pub(super) fn devices(v: &Node, p: &str) -> Result<Vec<Device>> {
    let mut out = Vec::new();
    for (i, item) in read::seq(v, p)?.iter().enumerate() {
        let ip = index(p, i);
        let dev = match &item.kind {
            Kind::Str(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                let (source, target, perms) = match parts.as_slice() {
                    [a] => (*a, *a, "rwm"),
                    [a, b] => (*a, *b, "rwm"),
                    [a, b, c] => (*a, *b, *c),
                    _ => {
                        return Err(fail(
                            &item.loc,
                            &ip,
                            "expected HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]]",
                        ));
                    }
                };
                Device {
                    source: source.to_string(),
                    target: target.to_string(),
                    permissions: perms.to_string(),
                }
            }
            Kind::Map(_) => {
                let field = |f: &str| -> Result<Option<String>> {
                    match item.get(f) {
                        Some(n) => read::opt_string(n, &child(&ip, f)),
                        None => Ok(None),
                    }
                };
                let source =
                    field("source")?.ok_or_else(|| fail(&item.loc, &ip, "missing source"))?;
                Device {
                    target: field("target")?.unwrap_or_else(|| source.clone()),
                    permissions: field("permissions")?.unwrap_or_else(|| "rwm".into()),
                    source,
                }
            }
            _ => return Err(fail(&item.loc, &ip, "expected a device string or a map")),
        };
        if !dev.source.starts_with('/') || !dev.target.starts_with('/') {
            return Err(fail(&item.loc, &ip, "device paths must be absolute"));
        }
        out.push(dev);
    }
    Ok(out)
}

/// `ulimits`: `{nofile: 1024}` or `{nofile: {soft: 1024, hard: 2048}}`.
pub(super) fn ulimits(v: &Node, p: &str) -> Result<BTreeMap<String, Ulimit>> {
    let mut out = BTreeMap::new();
    for (k, val) in read::map(v, p)? {
        let kp = child(p, &k.name);
        let limit = match &val.kind {
            Kind::Map(_) => {
                let get = |f: &str| -> Result<i64> {
                    let n = val
                        .get(f)
                        .ok_or_else(|| fail(&val.loc, &kp, format!("missing {f}")))?;
                    read::int(n, &child(&kp, f))
                };
                Ulimit {
                    soft: get("soft")?,
                    hard: get("hard")?,
                }
            }
            _ => {
                let n = read::int(val, &kp)?;
                Ulimit { soft: n, hard: n }
            }
        };
        out.insert(k.name.clone(), limit);
    }
    Ok(out)
}

pub(super) fn logging(w: &mut Warnings, v: &Node, p: &str) -> Result<Logging> {
    let mut l = Logging::default();
    for (k, val) in read::map_or_null(v, p)? {
        let kp = child(p, &k.name);
        match k.name.as_str() {
            "driver" => l.driver = read::opt_string(val, &kp)?,
            "options" => {
                for e in read::map_or_list(val, &kp)? {
                    if let Some(value) = e.value {
                        l.options.insert(e.key, value);
                    }
                }
            }
            key if key.starts_with("x-") => {}
            _ => w.at(&k.loc, &kp, "unknown key, ignored"),
        }
    }
    Ok(l)
}
