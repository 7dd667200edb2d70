//! Services reaching each other across nodes: the routes an ambassador serves, as data.
//!
//! In plain mode over several nodes, each node runs one ambassador per project network
//! (`drover ambassador`, from drover's own image; one more for each service on a port
//! another service of the network takes): it answers to the names of the
//! project's services that have ports, and forwards each connection (or UDP flow) to the
//! service's replicas, those on its own node first (by their address on the network), then
//! those on other nodes (through the host port each replica publishes on its node's
//! address). The planner decides the [`Routes`] of every ambassador; the executor pushes
//! them through the engine ([`push_command`]: an exec of `drover ambassador --push` in the
//! ambassador, which hands them to the serving process over a socket only the container's
//! own processes reach; `--show` asks it for the routes it has, which `drover plan` uses). Imports nothing else of drover.

pub mod proxy;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The transport a route forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One port an ambassador listens on, and where it forwards.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Route {
    /// The service this port belongs to (for logs).
    pub service: String,
    pub proto: Proto,
    pub port: u16,
    /// Replicas on the ambassador's own node (their address on its network): always tried
    /// first.
    pub local: Vec<SocketAddr>,
    /// Replicas on other nodes (their node's address and published port): balanced.
    pub remote: Vec<SocketAddr>,
}

/// Everything one ambassador forwards; sorted, so that equal sets compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routes {
    pub routes: Vec<Route>,
}

impl Routes {
    pub fn new(mut routes: Vec<Route>) -> Routes {
        for r in &mut routes {
            r.local.sort();
            r.remote.sort();
        }
        routes.sort_by_key(|r| (r.proto, r.port));
        Routes { routes }
    }

    /// How many backends in all (for logs).
    pub fn backends(&self) -> usize {
        self.routes
            .iter()
            .map(|r| r.local.len() + r.remote.len())
            .sum()
    }
}

/// The command an ambassador runs (after the image's entrypoint, `/drover`).
pub fn serve_command() -> Vec<String> {
    vec!["ambassador".to_string()]
}

/// The command, run inside an ambassador, that prints the routes it has (JSON).
pub fn show_command() -> Vec<String> {
    ["/drover", "ambassador", "--show"]
        .map(String::from)
        .to_vec()
}

/// The command, run inside an ambassador, that hands it `routes`.
pub fn push_command(routes: &Routes) -> Vec<String> {
    vec![
        "/drover".to_string(),
        "ambassador".to_string(),
        "--push".to_string(),
        serde_json::to_string(routes).unwrap_or_default(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_sorted_so_equal_sets_compare_equal() {
        let a: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.3:80".parse().unwrap();
        let route = |remote: Vec<SocketAddr>, port| Route {
            service: "db".into(),
            proto: Proto::Tcp,
            port,
            local: vec![],
            remote,
        };
        let one = Routes::new(vec![route(vec![b, a], 80), route(vec![], 53)]);
        let two = Routes::new(vec![route(vec![], 53), route(vec![a, b], 80)]);
        assert_eq!(one, two);
        assert_eq!(one.backends(), 2);
        let cmd = push_command(&one);
        let back: Routes = serde_json::from_str(&cmd[3]).unwrap();
        assert_eq!(back, one);
    }
}
