//! `deploy.update_config`, `deploy.rollback_config` and the service-level `x-drover`
//! extension (unhealthy action, per-service backoff).

use super::ConfigError;
use super::model::{BackoffSettings, FailureAction, UnhealthyAction, UpdateConfig, UpdateOrder};
use super::read::{self, Warnings, child, fail};
use super::yaml::{Kind, Node};

type Result<T> = std::result::Result<T, ConfigError>;

/// `update_config` or `rollback_config`; absent keys keep Swarm's defaults.
pub fn update_config(v: &Node, path: &str, w: &mut Warnings) -> Result<UpdateConfig> {
    let mut u = UpdateConfig::default();
    for (k, val) in read::map(v, path)? {
        let kp = child(path, &k.name);
        match k.name.as_str() {
            "parallelism" => u.parallelism = read::u32_(val, &kp)?,
            "delay" => u.delay = read::duration(val, &kp)?,
            "monitor" => u.monitor = read::duration(val, &kp)?,
            "order" => {
                u.order = match read::string(val, &kp)?.as_str() {
                    "stop-first" => UpdateOrder::StopFirst,
                    "start-first" => UpdateOrder::StartFirst,
                    _ => return Err(fail(&val.loc, &kp, "expected stop-first or start-first")),
                }
            }
            "failure_action" => {
                u.failure_action = match read::string(val, &kp)?.as_str() {
                    "pause" => FailureAction::Pause,
                    "continue" => FailureAction::Continue,
                    "rollback" => FailureAction::Rollback,
                    _ => {
                        return Err(fail(&val.loc, &kp, "expected pause, continue or rollback"));
                    }
                }
            }
            "max_failure_ratio" => {
                let ratio = match &val.kind {
                    Kind::Int(i) => *i as f64,
                    Kind::Float(f) => *f,
                    Kind::Str(s) => s.trim().parse().unwrap_or(f64::NAN),
                    _ => f64::NAN,
                };
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(fail(&val.loc, &kp, "expected a number from 0 to 1"));
                }
                u.max_failure_ratio = ratio;
            }
            key if key.starts_with("x-") => {}
            _ => w.at(&k.loc, &kp, "unknown key, ignored"),
        }
    }
    Ok(u)
}

/// `restart|recreate|ignore`.
pub fn unhealthy(v: &Node, path: &str) -> Result<UnhealthyAction> {
    match read::string(v, path)?.as_str() {
        "restart" => Ok(UnhealthyAction::Restart),
        "recreate" => Ok(UnhealthyAction::Recreate),
        "ignore" => Ok(UnhealthyAction::Ignore),
        _ => Err(fail(&v.loc, path, "expected restart, recreate or ignore")),
    }
}

/// `backoff: {initial, max, reset_after}`.
pub fn backoff(v: &Node, path: &str, w: &mut Warnings) -> Result<BackoffSettings> {
    let mut b = BackoffSettings::default();
    for (k, val) in read::map_or_null(v, path)? {
        let kp = child(path, &k.name);
        match k.name.as_str() {
            "initial" => b.initial = read::opt_duration(val, &kp)?,
            "max" => b.max = read::opt_duration(val, &kp)?,
            "reset_after" => b.reset_after = read::opt_duration(val, &kp)?,
            _ => w.at(&k.loc, &kp, "unknown key, ignored"),
        }
    }
    Ok(b)
}

/// A service's own `x-drover`: `unhealthy` and `backoff`.
pub fn service_drover(
    v: &Node,
    path: &str,
    w: &mut Warnings,
) -> Result<(Option<UnhealthyAction>, BackoffSettings)> {
    let mut action = None;
    let mut b = BackoffSettings::default();
    for (k, val) in read::map_or_null(v, path)? {
        let kp = child(path, &k.name);
        match k.name.as_str() {
            "unhealthy" => action = Some(unhealthy(val, &kp)?),
            "backoff" => b = backoff(val, &kp, w)?,
            _ => w.at(&k.loc, &kp, "unknown key, ignored"),
        }
    }
    Ok((action, b))
}
