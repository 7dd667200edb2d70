//! A service's networking keys: `ports`, `expose`, `networks`, `network_mode`, `links`,
//! `extra_hosts`.

use std::collections::BTreeMap;

use super::super::model::*;
use super::super::read::{self, Result, child, fail, index};
use super::super::syntax;
use super::super::yaml::{Kind, Loc, Node};
use super::Cx;

/// `network_mode`, checked; a `service:NAME` it names is pushed to `implied`.
pub(super) fn network_mode(
    cx: &Cx,
    v: &Node,
    p: &str,
    implied: &mut Vec<(String, Loc, String)>,
) -> Result<String> {
    let mode = read::string(v, p)?;
    match mode.split_once(':') {
        None if matches!(mode.as_str(), "host" | "none" | "bridge" | "default") => {}
        Some(("container", name)) if !name.is_empty() => {}
        Some(("service", name)) if !name.is_empty() => {
            if !cx.services.contains(name) {
                return Err(fail(
                    &v.loc,
                    p,
                    format!("no such service {name:?} (or it is not enabled by a profile)"),
                ));
            }
            implied.push((name.to_string(), v.loc.clone(), p.to_string()));
        }
        _ => {
            return Err(fail(
                &v.loc,
                p,
                "expected host, none, bridge, service:NAME or container:NAME",
            ));
        }
    }
    Ok(mode)
}

/// One `links` entry, `SERVICE[:ALIAS]`: the service (which must exist) and the alias.
pub(super) fn link(cx: &Cx, item: &str, loc: &Loc, p: &str) -> Result<(String, String)> {
    let (svc, alias) = match item.split_once(':') {
        Some((svc, alias)) => (svc.to_string(), alias.to_string()),
        None => (item.to_string(), item.to_string()),
    };
    if !cx.services.contains(&svc) {
        return Err(fail(
            loc,
            p,
            format!("no such service {svc:?} (or it is not enabled by a profile)"),
        ));
    }
    Ok((svc, alias))
}

pub(super) fn ports(item: &Node, p: &str, out: &mut Vec<Port>) -> Result<()> {
    match &item.kind {
        Kind::Int(_) => out.push(Port {
            target: read::u16_(item, p, "a port number (1-65535)")?,
            published: None,
            host_ip: None,
            protocol: Protocol::Tcp,
        }),
        Kind::Str(s) => {
            let spec = syntax::parse_port_short(s).map_err(|m| fail(&item.loc, p, m))?;
            for i in 0..=(spec.target.1 - spec.target.0) {
                out.push(Port {
                    target: spec.target.0 + i,
                    published: spec.published.map(|(a, _)| a + i),
                    host_ip: spec.host_ip.clone(),
                    protocol: spec.protocol,
                });
            }
        }
        Kind::Map(entries) => {
            let mut port = Port {
                target: 0,
                published: None,
                host_ip: None,
                protocol: Protocol::Tcp,
            };
            for (k, v) in entries {
                let kp = child(p, &k.name);
                match k.name.as_str() {
                    "target" => port.target = read::u16_(v, &kp, "a port number (1-65535)")?,
                    "published" => {
                        port.published = match &v.kind {
                            Kind::Null => None,
                            Kind::Str(s) if s.is_empty() => None,
                            _ => Some(read::u16_(v, &kp, "a port number (1-65535)")?),
                        }
                    }
                    "host_ip" => {
                        port.host_ip = match read::opt_string(v, &kp)? {
                            Some(ip) if !ip.is_empty() => {
                                Some(syntax::parse_host_ip(&ip).map_err(|m| fail(&v.loc, &kp, m))?)
                            }
                            _ => None,
                        }
                    }
                    "protocol" => {
                        port.protocol = syntax::parse_protocol(&read::string(v, &kp)?)
                            .map_err(|m| fail(&v.loc, &kp, m))?
                    }
                    "mode" | "name" | "app_protocol" => {}
                    key if key.starts_with("x-") => {}
                    _ => return Err(fail(&k.loc, &kp, "unknown port setting")),
                }
            }
            if port.target == 0 {
                return Err(fail(&item.loc, p, "missing target"));
            }
            out.push(port);
        }
        _ => return Err(fail(&item.loc, p, "expected a port string or a map")),
    }
    Ok(())
}

pub(super) fn networks(
    cx: &mut Cx,
    v: &Node,
    p: &str,
    out: &mut BTreeMap<String, ServiceNetwork>,
) -> Result<()> {
    for (name, loc, settings) in read::names_with_settings(v, p)? {
        let np = child(p, &name);
        if out.contains_key(&name) {
            // Only a list can name a network twice; compose refuses it.
            return Err(fail(&loc, &np, "the network is listed twice"));
        }
        if !cx.networks.contains_key(&name) && name != "default" {
            return Err(fail(
                &loc,
                &np,
                format!("network {name:?} is not declared in the top-level networks"),
            ));
        }
        let mut net = ServiceNetwork::default();
        if let Some(settings) = settings {
            for (k, val) in read::map_or_null(settings, &np)? {
                let kp = child(&np, &k.name);
                match k.name.as_str() {
                    "aliases" => net.aliases = read::string_or_list(val, &kp, false)?,
                    "ipv4_address" => net.ipv4_address = read::opt_string(val, &kp)?,
                    "ipv6_address" => net.ipv6_address = read::opt_string(val, &kp)?,
                    "priority" => net.priority = read::int(val, &kp)?,
                    key if key.starts_with("x-") => {}
                    _ => cx.warnings.at(&k.loc, &kp, "not supported yet, ignored"),
                }
            }
        }
        out.insert(name, net);
    }
    Ok(())
}

/// `expose`: `80`, `"8080-8081"`, `"53/udp"` -> engine forms `80/tcp`, ...
pub(super) fn expose(v: &Node, p: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let items: Vec<Node> = match &v.kind {
        Kind::Seq(items) => items.clone(),
        _ => vec![v.clone()],
    };
    for (i, item) in items.iter().enumerate() {
        let ip = index(p, i);
        let text = read::scalar_text(item)
            .ok_or_else(|| fail(&item.loc, &ip, "expected a port or a range"))?;
        let (ports, proto) = match text.split_once('/') {
            Some((ports, proto)) => (
                ports.to_string(),
                syntax::parse_protocol(proto).map_err(|m| read::bad(item, &ip, m))?,
            ),
            None => (text.clone(), Protocol::Tcp),
        };
        let (a, b) = syntax::parse_port_range(&ports).map_err(|m| read::bad(item, &ip, m))?;
        let proto = match proto {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        };
        for port in a..=b {
            let e = format!("{port}/{proto}");
            if !out.contains(&e) {
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// `extra_hosts`: `["host:ip", "host=ip"]` or `{host: ip}` (an IP list adds one entry
/// per address) -> the engine's `host:ip`.
pub(super) fn extra_hosts(v: &Node, p: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    match &v.kind {
        Kind::Map(entries) => {
            for (k, val) in entries {
                let kp = child(p, &k.name);
                if k.name.is_empty() {
                    return Err(fail(&k.loc, p, "a host name cannot be empty"));
                }
                let ips = match &val.kind {
                    Kind::Seq(_) => read::string_or_list(val, &kp, false)?,
                    _ => vec![read::string(val, &kp)?],
                };
                for ip in ips {
                    out.push(format!("{}:{}", k.name, ip));
                }
            }
        }
        _ => {
            for (i, item) in read::string_or_list(v, p, false)?.into_iter().enumerate() {
                let (host, ip) = item
                    .split_once('=')
                    .or_else(|| item.split_once(':'))
                    .ok_or_else(|| fail(&v.loc, &index(p, i), "expected HOST:IP or HOST=IP"))?;
                out.push(format!("{host}:{ip}"));
            }
        }
    }
    Ok(out)
}
