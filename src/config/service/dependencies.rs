//! A service's references to other services: `depends_on` and `volumes_from`.

use std::collections::BTreeMap;

use super::super::model::*;
use super::super::read::{self, Result, child, fail};
use super::super::yaml::{Loc, Node};
use super::Cx;

/// One `volumes_from` entry -> its normal form, and the service it names (if any).
pub(super) fn volumes_from(
    cx: &Cx,
    item: &str,
    loc: &Loc,
    p: &str,
) -> Result<(String, Option<String>)> {
    let (kind, rest) = match item.split_once(':') {
        Some(("container", rest)) => ("container", rest),
        Some(("service", rest)) => ("service", rest),
        _ => ("service", item),
    };
    let (name, mode) = match rest.rsplit_once(':') {
        Some((n, m @ ("ro" | "rw"))) => (n, Some(m)),
        _ => (rest, None),
    };
    if name.is_empty() || name.contains(':') {
        return Err(fail(
            loc,
            p,
            "expected SERVICE[:ro|rw] or container:NAME[:ro|rw]",
        ));
    }
    if kind == "service" && !cx.services.contains(name) {
        return Err(fail(
            loc,
            p,
            format!("no such service {name:?} (or it is not enabled by a profile)"),
        ));
    }
    let mut entry = format!("{kind}:{name}");
    if let Some(m) = mode {
        entry.push(':');
        entry.push_str(m);
    }
    Ok((entry, (kind == "service").then(|| name.to_string())))
}

pub(super) fn depends_on(
    cx: &mut Cx,
    v: &Node,
    p: &str,
    out: &mut BTreeMap<String, DependsOn>,
    locs: &mut BTreeMap<String, Loc>,
) -> Result<()> {
    for (name, loc, settings) in read::names_with_settings(v, p)? {
        let np = child(p, &name);
        let mut dep = DependsOn {
            condition: DependsCondition::ServiceStarted,
            required: true,
        };
        if let Some(settings) = settings {
            for (k, val) in read::map_or_null(settings, &np)? {
                let kp = child(&np, &k.name);
                match k.name.as_str() {
                    "condition" => {
                        dep.condition = match read::string(val, &kp)?.as_str() {
                            "service_started" => DependsCondition::ServiceStarted,
                            "service_healthy" => DependsCondition::ServiceHealthy,
                            "service_completed_successfully" => {
                                DependsCondition::ServiceCompletedSuccessfully
                            }
                            _ => {
                                return Err(fail(
                                    &val.loc,
                                    &kp,
                                    "expected service_started, service_healthy or \
                                     service_completed_successfully",
                                ));
                            }
                        }
                    }
                    "required" => dep.required = read::boolean(val, &kp)?,
                    "restart" => cx.warnings.at(&k.loc, &kp, "not supported yet, ignored"),
                    key if key.starts_with("x-") => {}
                    _ => cx.warnings.at(&k.loc, &kp, "unknown key, ignored"),
                }
            }
        }
        if !cx.services.contains(&name) {
            // As compose: `required: false` excuses a service disabled by its profiles,
            // not one that does not exist.
            let why = match cx.disabled.get(&name) {
                Some(_) if !dep.required => {
                    cx.warnings.at(
                        &loc,
                        &np,
                        "service not enabled; optional dependency ignored",
                    );
                    continue;
                }
                Some(profiles) => format!(
                    "service {name:?} is not enabled: enable one of its profiles ({}) \
                     with --profile or COMPOSE_PROFILES, or set required: false",
                    profiles.join(", ")
                ),
                None => format!("no such service {name:?}"),
            };
            return Err(fail(&loc, &np, why));
        }
        out.insert(name.clone(), dep);
        locs.insert(name, loc);
    }
    Ok(())
}
