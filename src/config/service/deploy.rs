//! A service's `deploy` section: mode, replicas, restart policy and resources
//! (`placement`, `update_config` and `rollback_config` are read by the service itself).

use super::super::model::*;
use super::super::read::{self, Result, child, fail};
use super::super::yaml::{Key, Loc, Node};
use super::Cx;

/// `deploy.resources.limits` or `.reservations`.
#[derive(Default)]
pub(super) struct Resources {
    /// The block was written (compose compares against it even when a value is missing).
    pub present: bool,
    pub cpus: Option<f64>,
    pub memory: Option<i64>,
    pub pids: Option<i64>,
}

pub(super) struct Deploy {
    pub mode: DeployMode,
    pub replicas: Option<u32>,
    pub restart: Option<RestartPolicy>,
    pub limits: Resources,
    pub reservations: Resources,
}

pub(super) fn deploy(cx: &mut Cx, v: &Node, p: &str) -> Result<Deploy> {
    let mut out = Deploy {
        mode: DeployMode::default(),
        replicas: None,
        restart: None,
        limits: Resources::default(),
        reservations: Resources::default(),
    };
    let mut mode_loc = None;
    for (k, val) in read::map(v, p)? {
        let kp = child(p, &k.name);
        match k.name.as_str() {
            "replicas" => out.replicas = Some(read::u32_(val, &kp)?),
            "restart_policy" => out.restart = Some(restart_policy(cx, val, &kp)?),
            "resources" => resources(cx, val, &kp, &mut out)?,
            "mode" => {
                out.mode = mode(val, &kp)?;
                if out.mode == DeployMode::Global {
                    mode_loc = Some(val.loc.clone());
                }
            }
            "endpoint_mode" | "labels" => cx.warnings.at(
                &k.loc,
                &kp,
                "not supported yet, ignored (a Swarm setting, which compose ignores on one \
                 engine too)",
            ),
            // Read by the service itself: drover places, updates and rolls back.
            "placement" | "update_config" | "rollback_config" => {}
            key if key.starts_with("x-") => {}
            _ => cx.warnings.at(&k.loc, &kp, "unknown key, ignored"),
        }
    }
    if let Some(loc) = mode_loc {
        global(&loc, &child(p, "mode"), out.replicas)?;
    }
    Ok(out)
}

fn restart_policy(cx: &mut Cx, val: &Node, kp: &str) -> Result<RestartPolicy> {
    let mut rp = RestartPolicy::default();
    for (rk, rv) in read::map(val, kp)? {
        let rp_path = child(kp, &rk.name);
        match rk.name.as_str() {
            "condition" => {
                rp.condition =
                    match read::choice(rv, &rp_path, &["none", "on-failure", "any"])?.as_str() {
                        "none" => RestartCondition::Never,
                        "on-failure" => RestartCondition::OnFailure,
                        _ => RestartCondition::Always,
                    }
            }
            "delay" => rp.delay = read::opt_duration(rv, &rp_path)?,
            "max_attempts" => rp.max_attempts = Some(read::u32_(rv, &rp_path)?),
            "window" => rp.window = read::opt_duration(rv, &rp_path)?,
            key if key.starts_with("x-") => {}
            _ => cx.warnings.at(&rk.loc, &rp_path, "unknown key, ignored"),
        }
    }
    Ok(rp)
}

/// `resources`: its `limits` and `reservations` blocks.
fn resources(cx: &mut Cx, val: &Node, kp: &str, out: &mut Deploy) -> Result<()> {
    for (rk, rv) in read::map_or_null(val, kp)? {
        let rp = child(kp, &rk.name);
        let target = match rk.name.as_str() {
            "limits" => &mut out.limits,
            "reservations" => &mut out.reservations,
            key if key.starts_with("x-") => continue,
            _ => {
                cx.warnings.at(&rk.loc, &rp, "unknown key, ignored");
                continue;
            }
        };
        target.present = true;
        resource_block(cx, rv, &rp, target, rk.name == "limits")?;
    }
    Ok(())
}

/// One `limits` (`limits`) or `reservations` block.
fn resource_block(
    cx: &mut Cx,
    rv: &Node,
    rp: &str,
    target: &mut Resources,
    limits: bool,
) -> Result<()> {
    for (ek, ev) in read::map_or_null(rv, rp)? {
        let ep = child(rp, &ek.name);
        match ek.name.as_str() {
            "memory" => target.memory = read::opt_size(ev, &ep)?,
            "cpus" => {
                let cpus = read::float(ev, &ep)?;
                if cpus < 0.0 {
                    return Err(read::bad(ev, &ep, "expected a number of CPUs"));
                }
                target.cpus = Some(cpus);
                if !limits {
                    cpu_reservation(cx, ek, &ep);
                }
            }
            "pids" if limits => target.pids = Some(read::int(ev, &ep)?),
            "devices" | "generic_resources" => {
                cx.warnings.at(&ek.loc, &ep, "not supported yet, ignored")
            }
            key if key.starts_with("x-") => {}
            _ => cx.warnings.at(&ek.loc, &ep, "unknown key, ignored"),
        }
    }
    Ok(())
}

fn cpu_reservation(cx: &mut Cx, ek: &Key, ep: &str) {
    cx.swarm_only(
        &ek.loc,
        ep,
        "ignored in plain mode: CPU reservations exist in Swarm mode only (compose ignores \
         them too)",
    );
}

fn mode(val: &Node, kp: &str) -> Result<DeployMode> {
    match read::string(val, kp)?.as_str() {
        "replicated" => Ok(DeployMode::Replicated),
        "global" => Ok(DeployMode::Global),
        "replicated-job" | "global-job" => Err(read::bad(
            val,
            kp,
            "jobs are not supported: drover keeps services running; use replicated or global",
        )),
        _ => Err(read::bad(val, kp, "expected replicated or global")),
    }
}

/// `mode: global` (written at `loc`): one replica per eligible node in every mode, so not
/// with `replicas` (as `docker stack deploy` refuses it).
fn global(loc: &Loc, kp: &str, replicas: Option<u32>) -> Result<()> {
    if replicas.is_some() {
        return Err(fail(
            loc,
            kp,
            "global runs one task per node and cannot be combined with deploy.replicas \
             (as in docker stack deploy); remove one of them",
        ));
    }
    Ok(())
}
