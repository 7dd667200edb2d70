//! The settings of a top-level network or volume that drover passes to the engine when it
//! creates one: `driver_opts`, and for networks `ipam`, `internal`, `attachable` and
//! `enable_ipv6`, read as compose reads them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::read::{self, Result, child, fail};
use super::yaml::{Kind, Node};

/// Settings of a network drover creates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct NetworkOptions {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
    /// No route out of the network (no gateway to the host's networks).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    /// Standalone containers may join (Swarm overlay networks).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub attachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_ipv6: Option<bool>,
}

/// `ipam`: the address management driver, its pools and options.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Ipam {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamPool>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// One `ipam.config` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct IpamPool {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_addresses: BTreeMap<String, String>,
}

/// `driver_opts` (networks and volumes): a map of strings; numbers and booleans are
/// written as text, as compose does.
pub fn driver_opts(v: &Node, p: &str) -> Result<BTreeMap<String, String>> {
    read::string_map(v, p)
}

/// Read one network setting into `o`; `false` when `key` is not one of them.
pub fn network_key(o: &mut NetworkOptions, key: &str, v: &Node, p: &str) -> Result<bool> {
    match key {
        "driver_opts" => o.driver_opts = driver_opts(v, p)?,
        "ipam" => o.ipam = Some(ipam(v, p)?),
        "internal" => o.internal = read::boolean(v, p)?,
        "attachable" => o.attachable = read::boolean(v, p)?,
        "enable_ipv6" => o.enable_ipv6 = Some(read::boolean(v, p)?),
        _ => return Ok(false),
    }
    Ok(true)
}

fn ipam(v: &Node, p: &str) -> Result<Ipam> {
    let mut out = Ipam::default();
    for (k, val) in read::map_or_null(v, p)? {
        let kp = child(p, &k.name);
        match k.name.as_str() {
            "driver" => out.driver = read::opt_string(val, &kp)?,
            "options" => out.options = read::string_map(val, &kp)?,
            "config" => {
                let Kind::Seq(items) = &val.kind else {
                    return Err(fail(&val.loc, &kp, "expected a list of address pools"));
                };
                for (i, item) in items.iter().enumerate() {
                    out.config.push(pool(item, &read::index(&kp, i))?);
                }
            }
            name if name.starts_with("x-") => {}
            _ => return Err(fail(&k.loc, &kp, "unknown key (driver, config or options)")),
        }
    }
    Ok(out)
}

fn pool(v: &Node, p: &str) -> Result<IpamPool> {
    let mut out = IpamPool::default();
    for (k, val) in read::map_or_null(v, p)? {
        let kp = child(p, &k.name);
        match k.name.as_str() {
            "subnet" => out.subnet = read::opt_string(val, &kp)?,
            "ip_range" => out.ip_range = read::opt_string(val, &kp)?,
            "gateway" => out.gateway = read::opt_string(val, &kp)?,
            "aux_addresses" => out.aux_addresses = read::string_map(val, &kp)?,
            _ => {
                return Err(fail(
                    &k.loc,
                    &kp,
                    "unknown key (subnet, ip_range, gateway or aux_addresses)",
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::config::{LoadOptions, load};

    fn load_text(compose: &str) -> Result<crate::config::Loaded, String> {
        let dir = std::env::temp_dir().join(format!(
            "drover-networks-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("compose.yml"), compose).unwrap();
        let loaded = load(&LoadOptions {
            cwd: dir.clone(),
            project_name: Some("p".into()),
            ..Default::default()
        });
        let _ = std::fs::remove_dir_all(&dir);
        loaded.map_err(|e| e.to_string())
    }

    #[test]
    fn network_and_volume_settings_are_read_as_compose_writes_them() {
        let l = load_text(
            "services:\n  a: {image: x, networks: [inner], volumes: [\"v:/v\"]}\n\
             networks:\n  inner:\n    internal: true\n    attachable: true\n    \
             enable_ipv6: false\n    driver_opts: {com.docker.network.driver.mtu: 1400}\n    \
             ipam:\n      config:\n        - {subnet: 10.0.9.0/24, gateway: 10.0.9.1, \
             aux_addresses: {r: 10.0.9.2}}\n\
             volumes:\n  v: {driver_opts: {type: tmpfs, device: tmpfs}}\n",
        )
        .unwrap();
        let o = &l.project.networks["inner"].options;
        assert!(o.internal && o.attachable);
        assert_eq!(o.enable_ipv6, Some(false));
        assert_eq!(o.driver_opts["com.docker.network.driver.mtu"], "1400");
        let pool = &o.ipam.as_ref().unwrap().config[0];
        assert_eq!(pool.subnet.as_deref(), Some("10.0.9.0/24"));
        assert_eq!(pool.aux_addresses["r"], "10.0.9.2");
        assert_eq!(l.project.volumes["v"].driver_opts["type"], "tmpfs");
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    }

    #[test]
    fn a_misspelt_ipam_key_is_refused_where_it_is_written() {
        let e = load_text(
            "services:\n  a: {image: x, networks: [n]}\nnetworks:\n  n:\n    ipam:\n      \
             config: [{subnett: 10.0.0.0/24}]\n",
        )
        .unwrap_err();
        assert!(
            e.contains("compose.yml:6:") && e.contains("networks.n.ipam.config[0].subnett"),
            "{e}"
        );
    }
}
