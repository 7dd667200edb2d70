//! `x-drover.autoscale`: services whose replica target follows triggers (a Redis backlog,
//! a Prometheus query, an HTTP JSON value, the replicas' CPU or memory). Secrets
//! (passwords, tokens) are named by file or environment variable, never written inline.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use super::ConfigError;
use super::model::{Autoscale, RateLimit, RedisBacklog, ScaleTrigger, SecretSource, TriggerSource};
use super::read::{self, Warnings, child, fail, index};
use super::yaml::{Key, Kind, Node};

type Result<T> = std::result::Result<T, ConfigError>;

/// The defaults, as the HPA and KEDA have them.
pub const POLLING_INTERVAL: Duration = Duration::from_secs(15);
pub const SCALE_DOWN_WINDOW: Duration = Duration::from_secs(300);
pub const COOLDOWN: Duration = Duration::from_secs(300);
pub const TOLERANCE: f64 = 0.1;
pub const TRIGGER_TIMEOUT: Duration = Duration::from_secs(5);
/// HPA: up by 100% or 4 replicas (whichever is more) per 15 s.
pub const SCALE_UP: RateLimit = RateLimit {
    replicas: Some(4),
    percent: Some(100),
    period: Duration::from_secs(15),
};
/// HPA: down by up to 100% per 15 s.
pub const SCALE_DOWN: RateLimit = RateLimit {
    replicas: None,
    percent: Some(100),
    period: Duration::from_secs(15),
};

/// The `autoscale` map of `x-drover`: service name -> settings. Relative secret and
/// certificate files are resolved against `dir`.
pub fn autoscale(
    v: &Node,
    path: &str,
    names: &BTreeSet<String>,
    dir: &Path,
    w: &mut Warnings,
) -> Result<BTreeMap<String, Autoscale>> {
    let mut out = BTreeMap::new();
    for (k, entry) in read::map_or_null(v, path)? {
        let p = child(path, &k.name);
        if !names.contains(&k.name) {
            return Err(fail(&k.loc, &p, "no such service"));
        }
        out.insert(k.name.clone(), service(k, entry, &p, dir, w)?);
    }
    Ok(out)
}

fn service(k: &Key, v: &Node, p: &str, dir: &Path, w: &mut Warnings) -> Result<Autoscale> {
    let mut a = Autoscale {
        min: 1,
        max: 0,
        polling_interval: POLLING_INTERVAL,
        scale_down_window: SCALE_DOWN_WINDOW,
        scale_up_window: Duration::ZERO,
        tolerance: TOLERANCE,
        cooldown: COOLDOWN,
        scale_up: SCALE_UP,
        scale_down: SCALE_DOWN,
        triggers: Vec::new(),
        pinned: None,
        floor: None,
    };
    let mut max = None;
    let mut triggers = None;
    for (key, val) in read::map(v, p)? {
        let kp = child(p, &key.name);
        match key.name.as_str() {
            "min" => a.min = read::u32_(val, &kp)?,
            "max" => max = Some((read::u32_(val, &kp)?, val)),
            "polling_interval" => a.polling_interval = positive(val, &kp)?,
            "scale_down_window" => a.scale_down_window = read::duration(val, &kp)?,
            "scale_up_window" => a.scale_up_window = read::duration(val, &kp)?,
            "cooldown" => a.cooldown = read::duration(val, &kp)?,
            "tolerance" => {
                a.tolerance = read::float(val, &kp)?;
                if !(0.0..1.0).contains(&a.tolerance) {
                    return Err(read::bad(val, &kp, "expected a fraction from 0 to below 1"));
                }
            }
            "scale_up" => a.scale_up = rate(val, &kp, SCALE_UP, w)?,
            "scale_down" => a.scale_down = rate(val, &kp, SCALE_DOWN, w)?,
            "triggers" => triggers = Some((trigger_list(val, &kp, dir, w)?, val)),
            key if key.starts_with("x-") => {}
            _ => w.at(&key.loc, &kp, "unknown key, ignored"),
        }
    }
    let (max, max_node) = max.ok_or_else(|| fail(&k.loc, p, "max is required"))?;
    if max == 0 {
        return Err(read::bad(max_node, &child(p, "max"), "expected at least 1"));
    }
    if a.min > max {
        return Err(fail(
            &max_node.loc,
            &child(p, "max"),
            format!("max ({max}) is below min ({})", a.min),
        ));
    }
    a.max = max;
    let (list, list_node) =
        triggers.ok_or_else(|| fail(&k.loc, p, "triggers is required (at least one)"))?;
    if list.is_empty() {
        return Err(fail(
            &list_node.loc,
            &child(p, "triggers"),
            "expected at least one trigger",
        ));
    }
    if a.min == 0 && list.iter().all(|t| t.source.per_replica()) {
        return Err(fail(
            &list_node.loc,
            &child(p, "triggers"),
            "min: 0 needs a trigger that sees work while no replica runs (redis, prometheus \
             or http): cpu and memory have nothing to measure at zero",
        ));
    }
    a.triggers = list;
    Ok(a)
}

fn positive(v: &Node, path: &str) -> Result<Duration> {
    let d = read::duration(v, path)?;
    if d.is_zero() {
        return Err(read::bad(v, path, "expected a duration above zero"));
    }
    Ok(d)
}

fn rate(v: &Node, p: &str, default: RateLimit, w: &mut Warnings) -> Result<RateLimit> {
    let mut r = RateLimit {
        replicas: None,
        percent: None,
        period: default.period,
    };
    for (k, val) in read::map(v, p)? {
        let kp = child(p, &k.name);
        match k.name.as_str() {
            "replicas" => r.replicas = Some(read::u32_(val, &kp)?),
            "percent" => r.percent = Some(read::u32_(val, &kp)?),
            "period" => r.period = positive(val, &kp)?,
            _ => w.at(&k.loc, &kp, "unknown key, ignored"),
        }
    }
    if r.replicas.unwrap_or(0) == 0 && r.percent.unwrap_or(0) == 0 {
        return Err(fail(
            &v.loc,
            p,
            "give replicas or percent above zero (how much the count may change per period)",
        ));
    }
    Ok(r)
}

fn trigger_list(v: &Node, p: &str, dir: &Path, w: &mut Warnings) -> Result<Vec<ScaleTrigger>> {
    let mut out: Vec<ScaleTrigger> = Vec::new();
    for (i, item) in read::seq(v, p)?.iter().enumerate() {
        let ip = index(p, i);
        let t = trigger(item, &ip, i, dir, w)?;
        if out.iter().any(|o| o.name == t.name) {
            return Err(fail(
                &item.loc,
                &ip,
                format!("trigger {} is listed twice (give each a name)", t.name),
            ));
        }
        out.push(t);
    }
    Ok(out)
}

/// The keys of one trigger, collected before its type decides which it needs.
#[derive(Default)]
struct Fields<'a> {
    values: BTreeMap<&'a str, (&'a Key, &'a Node)>,
}

impl<'a> Fields<'a> {
    fn text(&self, key: &str, p: &str) -> Result<Option<String>> {
        match self.values.get(key) {
            Some((_, v)) => Ok(Some(read::string(v, &child(p, key))?)),
            None => Ok(None),
        }
    }

    fn need(&self, key: &str, p: &str, item: &Node, kind: &str) -> Result<String> {
        self.text(key, p)?
            .ok_or_else(|| fail(&item.loc, p, format!("a {kind} trigger needs {key}")))
    }

    /// `{key}_file` or `{key}_env`, at most one.
    fn secret(&self, key: &str, p: &str, dir: &Path) -> Result<Option<SecretSource>> {
        let file = self.values.get(format!("{key}_file").as_str());
        let env = self.values.get(format!("{key}_env").as_str());
        match (file, env) {
            (Some((fk, _)), Some(_)) => Err(fail(
                &fk.loc,
                &child(p, &fk.name),
                format!("give {key}_file or {key}_env, not both"),
            )),
            (Some((fk, fv)), None) => {
                let f = read::string(fv, &child(p, &fk.name))?;
                Ok(Some(SecretSource::File(dir.join(f))))
            }
            (None, Some((ek, ev))) => {
                Ok(Some(SecretSource::Env(env_name(ev, &child(p, &ek.name))?)))
            }
            (None, None) => Ok(None),
        }
    }
}

const COMMON: &[&str] = &["type", "name", "target", "activation", "timeout"];
const REDIS: &[&str] = &[
    "address",
    "list",
    "stream",
    "group",
    "username",
    "password_file",
    "password_env",
    "tls",
    "tls_ca_file",
];
const WEB: &[&str] = &["url", "query", "pointer", "token_file", "token_env"];

fn trigger(item: &Node, p: &str, i: usize, dir: &Path, w: &mut Warnings) -> Result<ScaleTrigger> {
    let mut f = Fields::default();
    for (k, v) in read::map(item, p)? {
        let kp = child(p, &k.name);
        if ["password", "token"].contains(&k.name.as_str()) {
            return Err(fail(
                &k.loc,
                &kp,
                format!(
                    "a secret is never written in the Compose file: put it in a file \
                     ({0}_file) or an environment variable ({0}_env)",
                    k.name
                ),
            ));
        }
        let known = COMMON.contains(&k.name.as_str())
            || REDIS.contains(&k.name.as_str())
            || WEB.contains(&k.name.as_str());
        if !known && !k.name.starts_with("x-") {
            w.at(&k.loc, &kp, "unknown key, ignored");
        }
        f.values.insert(k.name.as_str(), (k, v));
    }
    let (_, type_node) = f
        .values
        .get("type")
        .copied()
        .ok_or_else(|| fail(&item.loc, p, "a trigger needs a type"))?;
    let kind = read::choice(
        type_node,
        &child(p, "type"),
        &["redis", "prometheus", "http", "cpu", "memory"],
    )?;
    let source = source(&kind, &f, p, item, dir)?;
    let target = match f.values.get("target") {
        // Memory in bytes, or a size like compose's (`512m`, `1g`).
        Some((_, v)) if kind == "memory" && matches!(v.kind, Kind::Str(_)) => {
            read::size(v, &child(p, "target"))? as f64
        }
        Some((_, v)) => {
            let t = read::float(v, &child(p, "target"))?;
            if t <= 0.0 {
                return Err(read::bad(
                    v,
                    &child(p, "target"),
                    "expected a number above zero",
                ));
            }
            t
        }
        None => return Err(fail(&item.loc, p, "a trigger needs a target (per replica)")),
    };
    let activation = match f.values.get("activation") {
        Some((_, v)) => {
            let a = read::float(v, &child(p, "activation"))?;
            if a < 0.0 {
                return Err(read::bad(v, &child(p, "activation"), "expected 0 or more"));
            }
            a
        }
        None => 0.0,
    };
    let timeout = match f.values.get("timeout") {
        Some((_, v)) => positive(v, &child(p, "timeout"))?,
        None => TRIGGER_TIMEOUT,
    };
    let name = match f.values.get("name") {
        Some((_, v)) => trigger_name(v, &child(p, "name"))?,
        None => format!("{kind}-{i}"),
    };
    Ok(ScaleTrigger {
        name,
        target,
        activation,
        timeout,
        source,
    })
}

fn source(kind: &str, f: &Fields, p: &str, item: &Node, dir: &Path) -> Result<TriggerSource> {
    Ok(match kind {
        "redis" => redis(f, p, item, dir)?,
        "prometheus" => TriggerSource::Prometheus {
            url: url(f, p, item, kind)?,
            query: f.need("query", p, item, kind)?,
            token: f.secret("token", p, dir)?,
        },
        "http" => {
            let pointer = f.need("pointer", p, item, kind)?;
            if !pointer.is_empty() && !pointer.starts_with('/') {
                let (_, v) = f.values["pointer"];
                return Err(fail(
                    &v.loc,
                    &child(p, "pointer"),
                    "expected a JSON pointer: empty or starting with / (like /queue/depth)",
                ));
            }
            TriggerSource::Http {
                url: url(f, p, item, kind)?,
                pointer,
                token: f.secret("token", p, dir)?,
            }
        }
        "cpu" => TriggerSource::Cpu,
        _ => TriggerSource::Memory,
    })
}

fn redis(f: &Fields, p: &str, item: &Node, dir: &Path) -> Result<TriggerSource> {
    let address = f.need("address", p, item, "redis")?;
    let (_, anode) = f.values["address"];
    let ap = child(p, "address");
    let rest = address
        .strip_prefix("redis://")
        .or_else(|| address.strip_prefix("rediss://"))
        .ok_or_else(|| {
            fail(
                &anode.loc,
                &ap,
                "expected redis://host:port or rediss://host:port",
            )
        })?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return Err(fail(
            &anode.loc,
            &ap,
            "no user or password in the address: use username and password_file or password_env",
        ));
    }
    if authority.is_empty() {
        return Err(fail(&anode.loc, &ap, "expected a host after redis://"));
    }
    let list = f.text("list", p)?;
    let stream = f.text("stream", p)?;
    let group = f.text("group", p)?;
    let backlog = match (list, stream, group) {
        (Some(list), None, None) => RedisBacklog::List { list },
        (None, Some(stream), Some(group)) => RedisBacklog::Stream { stream, group },
        (None, Some(_), None) => {
            return Err(fail(
                &item.loc,
                p,
                "a stream trigger needs group (the consumer group whose pending entries count)",
            ));
        }
        _ => {
            return Err(fail(
                &item.loc,
                p,
                "a redis trigger needs list, or stream and group (one of them)",
            ));
        }
    };
    let tls = match f.values.get("tls") {
        Some((_, v)) => read::boolean(v, &child(p, "tls"))?,
        None => false,
    };
    let tls_ca_file = f.text("tls_ca_file", p)?.map(|s| dir.join(s));
    Ok(TriggerSource::Redis {
        address,
        backlog,
        username: f.text("username", p)?,
        password: f.secret("password", p, dir)?,
        tls,
        tls_ca_file,
    })
}

/// An `http://` or `https://` URL without a user or password in it.
fn url(f: &Fields, p: &str, item: &Node, kind: &str) -> Result<String> {
    let u = f.need("url", p, item, kind)?;
    let (_, v) = f.values["url"];
    let up = child(p, "url");
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .ok_or_else(|| fail(&v.loc, &up, "expected an http:// or https:// URL"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(fail(
            &v.loc,
            &up,
            "no user or password in the URL: use token_file or token_env",
        ));
    }
    if authority.is_empty() {
        return Err(fail(&v.loc, &up, "expected a host in the URL"));
    }
    Ok(u)
}

fn env_name(v: &Node, path: &str) -> Result<String> {
    let s = read::string(v, path)?;
    let ok = !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(fail(
            &v.loc,
            path,
            "expected the name of an environment variable (letters, digits, '_')",
        ));
    }
    Ok(s)
}

fn trigger_name(v: &Node, path: &str) -> Result<String> {
    let s = read::string(v, path)?;
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(fail(
            &v.loc,
            path,
            "use letters, digits, '.', '_' and '-' (it names the trigger in logs and metrics)",
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        yaml: &str,
    ) -> std::result::Result<(BTreeMap<String, Autoscale>, Vec<String>), String> {
        let node = super::super::yaml::parse(&std::sync::Arc::from("compose.yml"), yaml, None)
            .map_err(|e| e.message)?;
        let names: BTreeSet<String> = ["worker".to_string(), "web".to_string()].into();
        let mut w = Warnings::default();
        autoscale(
            &node,
            "x-drover.autoscale",
            &names,
            Path::new("/proj"),
            &mut w,
        )
        .map(|a| (a, w.0))
        .map_err(|e| e.0)
    }

    fn err(yaml: &str) -> String {
        parse(yaml).expect_err("should be refused")
    }

    #[test]
    fn the_issues_example_reads_with_defaults_filled_in() {
        let (a, w) = parse(
            "worker:\n  min: 1\n  max: 20\n  triggers:\n\
             \x20   - { type: redis, address: \"redis://redis:6379\", list: jobs, target: 5 }\n\
             \x20   - { type: cpu, target: 70 }\n\
             \x20   - { type: prometheus, url: \"http://prometheus:9090\", query: \"sum(queue_depth)\", target: 100 }\n\
             \x20   - { type: http, url: \"http://api:8080/stats\", pointer: \"/queue/depth\", target: 10 }\n",
        )
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
        let s = &a["worker"];
        assert_eq!((s.min, s.max), (1, 20));
        assert_eq!(s.scale_down_window, Duration::from_secs(300));
        assert_eq!(s.polling_interval, Duration::from_secs(15));
        assert_eq!(s.tolerance, 0.1);
        let names: Vec<&str> = s.triggers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["redis-0", "cpu-1", "prometheus-2", "http-3"]);
        assert_eq!(
            s.triggers[0].source,
            TriggerSource::Redis {
                address: "redis://redis:6379".into(),
                backlog: RedisBacklog::List {
                    list: "jobs".into()
                },
                username: None,
                password: None,
                tls: false,
                tls_ca_file: None,
            }
        );
        assert_eq!(s.triggers[1].target, 70.0);
    }

    #[test]
    fn secret_sources_are_resolved_and_never_inline() {
        let (a, _) = parse(
            "worker:\n  max: 3\n  triggers:\n\
             \x20   - { type: redis, address: \"rediss://r:6380\", stream: s, group: g, password_file: pw, tls_ca_file: ca.pem, target: 2 }\n\
             \x20   - { type: prometheus, url: \"https://p\", query: q, target: 1, token_env: PROM_TOKEN }\n",
        )
        .unwrap();
        let t = &a["worker"].triggers;
        match &t[0].source {
            TriggerSource::Redis {
                password,
                backlog,
                tls_ca_file,
                ..
            } => {
                assert_eq!(password, &Some(SecretSource::File("/proj/pw".into())));
                assert_eq!(
                    backlog,
                    &RedisBacklog::Stream {
                        stream: "s".into(),
                        group: "g".into()
                    }
                );
                assert_eq!(tls_ca_file.as_deref(), Some(Path::new("/proj/ca.pem")));
            }
            other => panic!("{other:?}"),
        }
        match &t[1].source {
            TriggerSource::Prometheus { token, .. } => {
                assert_eq!(token, &Some(SecretSource::Env("PROM_TOKEN".into())))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err(
                "worker:\n  max: 3\n  triggers:\n    - { type: redis, address: \"redis://r\", list: j, target: 1, password: hunter2 }\n"
            ),
            "compose.yml:4:64: x-drover.autoscale.worker.triggers[0].password: a secret is never written in the Compose file: put it in a file (password_file) or an environment variable (password_env)"
        );
        let e = err(
            "worker:\n  max: 3\n  triggers:\n    - { type: redis, address: \"redis://:hunter2@r\", list: j, target: 1 }\n",
        );
        assert!(e.starts_with("compose.yml:4:31: x-drover.autoscale.worker.triggers[0].address: no user or password"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = err(
            "worker:\n  max: 3\n  triggers:\n    - { type: http, url: \"http://u:hunter2@api/x\", pointer: /a, target: 1 }\n",
        );
        assert!(
            e.contains("triggers[0].url: no user or password in the URL"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn bad_settings_are_one_located_line() {
        let cases = [
            (
                "nobody:\n  max: 2\n",
                "compose.yml:1:1: x-drover.autoscale.nobody: no such service",
            ),
            (
                "worker:\n  min: 1\n  triggers: [{ type: cpu, target: 50 }]\n",
                "compose.yml:1:1: x-drover.autoscale.worker: max is required",
            ),
            (
                "worker:\n  min: 5\n  max: 2\n  triggers: [{ type: cpu, target: 50 }]\n",
                "compose.yml:3:8: x-drover.autoscale.worker.max: max (2) is below min (5)",
            ),
            (
                "worker:\n  max: 2\n  triggers: []\n",
                "compose.yml:3:13: x-drover.autoscale.worker.triggers: expected at least one trigger",
            ),
            (
                "worker:\n  min: 0\n  max: 2\n  triggers: [{ type: cpu, target: 50 }]\n",
                "compose.yml:4:13: x-drover.autoscale.worker.triggers: min: 0 needs a trigger that sees work while no replica runs (redis, prometheus or http): cpu and memory have nothing to measure at zero",
            ),
            (
                "worker:\n  max: 2\n  triggers: [{ type: kafka, target: 50 }]\n",
                "compose.yml:3:22: x-drover.autoscale.worker.triggers[0].type: expected redis, prometheus, http, cpu or memory, got \"kafka\"",
            ),
            (
                "worker:\n  max: 2\n  triggers: [{ type: cpu, target: 0 }]\n",
                "compose.yml:3:35: x-drover.autoscale.worker.triggers[0].target: expected a number above zero, got \"0\"",
            ),
            (
                "worker:\n  max: 2\n  scale_down_window: 5\n  triggers: [{ type: cpu, target: 5 }]\n",
                "compose.yml:3:22: x-drover.autoscale.worker.scale_down_window: expected a duration like 10s, 1m30s, 1.5h or 500ms (units ns, us, ms, s, m, h, d, w) (a number needs a unit), got \"5\"",
            ),
            (
                "worker:\n  max: 2\n  triggers: [{ type: redis, address: \"redis://r\", target: 5 }]\n",
                "compose.yml:3:14: x-drover.autoscale.worker.triggers[0]: a redis trigger needs list, or stream and group (one of them)",
            ),
            (
                "worker:\n  max: 2\n  triggers: [{ type: http, url: \"http://a\", pointer: queue, target: 5 }]\n",
                "compose.yml:3:54: x-drover.autoscale.worker.triggers[0].pointer: expected a JSON pointer: empty or starting with / (like /queue/depth)",
            ),
            (
                "worker:\n  max: 2\n  scale_up: { period: 10s }\n  triggers: [{ type: cpu, target: 5 }]\n",
                "compose.yml:3:13: x-drover.autoscale.worker.scale_up: give replicas or percent above zero (how much the count may change per period)",
            ),
            (
                "worker:\n  max: 2\n  triggers: [{ type: cpu, target: 5 }, { type: cpu, target: 6, name: cpu-0 }]\n",
                "compose.yml:3:40: x-drover.autoscale.worker.triggers[1]: trigger cpu-0 is listed twice (give each a name)",
            ),
        ];
        for (yaml, want) in cases {
            assert_eq!(err(yaml), want, "{yaml}");
        }
    }

    /// `--scale` pins a service, the scale file is its floor; a global service or one with
    /// a container_name cannot be autoscaled.
    #[test]
    fn scale_flags_pin_and_the_scale_file_is_the_floor() {
        let dir = std::env::temp_dir().join(format!("drover-as-prec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let compose = "x-drover:\n  autoscale:\n\
            \x20   web: { max: 4, triggers: [{ type: cpu, target: 50 }] }\n\
            \x20   worker: { max: 4, triggers: [{ type: cpu, target: 50 }] }\n\
            services:\n  web: { image: busybox }\n  worker: { image: busybox }\n";
        std::fs::write(dir.join("compose.yml"), compose).unwrap();
        std::fs::write(dir.join("scale.yml"), "worker: 3\nweb: 9\n").unwrap();
        let opts = crate::config::LoadOptions {
            files: vec![dir.join("compose.yml")],
            project_name: Some("prec".into()),
            cwd: dir.clone(),
            scale: vec![("web".into(), 2)],
            scale_file: Some(dir.join("scale.yml")),
            ..Default::default()
        };
        let loaded = crate::config::load(&opts).unwrap();
        let a = &loaded.settings.autoscale;
        assert_eq!((a["web"].pinned, a["web"].floor), (Some(2), Some(9)));
        assert_eq!((a["worker"].pinned, a["worker"].floor), (None, Some(3)));
        assert_eq!(a["worker"].lowest(), 3);
        let global = compose.replace(
            "web: { image: busybox }",
            "web: { image: busybox, deploy: { mode: global } }",
        );
        std::fs::write(dir.join("compose.yml"), global).unwrap();
        let plain = crate::config::LoadOptions {
            scale: Vec::new(),
            scale_file: None,
            ..opts
        };
        let e = crate::config::load(&plain).unwrap_err().to_string();
        assert!(e.ends_with("x-drover.autoscale.web: a global service runs one task per node: it cannot be autoscaled"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_memory_target_can_be_a_size() {
        let (a, _) =
            parse("worker:\n  max: 2\n  triggers: [{ type: memory, target: 512m }]\n").unwrap();
        assert_eq!(a["worker"].triggers[0].target, 512.0 * 1024.0 * 1024.0);
        let e = err("worker:\n  max: 2\n  triggers: [{ type: cpu, target: 512m }]\n");
        assert!(e.contains("triggers[0].target: expected a number"), "{e}");
    }

    #[test]
    fn unknown_keys_are_warned_about_and_rates_read() {
        let (a, w) = parse(
            "worker:\n  max: 9\n  colour: red\n  scale_down: { replicas: 1, period: 1m }\n  triggers: [{ type: memory, target: 1000, flavour: x }]\n",
        )
        .unwrap();
        assert_eq!(
            w,
            [
                "compose.yml:3:3: x-drover.autoscale.worker.colour: unknown key, ignored",
                "compose.yml:5:44: x-drover.autoscale.worker.triggers[0].flavour: unknown key, ignored"
            ]
        );
        let s = &a["worker"];
        assert_eq!(s.triggers[0].target, 1000.0);
        assert_eq!(
            s.scale_down,
            RateLimit {
                replicas: Some(1),
                percent: None,
                period: Duration::from_secs(60)
            }
        );
        assert_eq!(s.scale_up, SCALE_UP);
    }
}
