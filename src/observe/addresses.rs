//! A container's address on each network it joined. Most containers join one or two
//! networks: a sorted vector with the network names interned takes a few dozen bytes,
//! where a map allocated a node of eleven entries for each container.

use std::net::IpAddr;
use std::sync::Arc;

use super::labels::intern;

/// By the network's engine name, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses(Vec<(Arc<str>, IpAddr)>);

impl Addresses {
    /// The address on `network`.
    pub fn get(&self, network: &str) -> Option<&IpAddr> {
        self.find(network).ok().map(|i| &self.0[i].1)
    }

    /// Set the address on `network`.
    pub fn insert(&mut self, network: impl AsRef<str>, ip: IpAddr) {
        let network = network.as_ref();
        match self.find(network) {
            Ok(i) => self.0[i].1 = ip,
            Err(i) => self.0.insert(i, (intern(network), ip)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn find(&self, network: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| (**n).cmp(network))
    }
}

impl<S: AsRef<str>> FromIterator<(S, IpAddr)> for Addresses {
    fn from_iter<I: IntoIterator<Item = (S, IpAddr)>>(iter: I) -> Self {
        let mut out = Addresses::default();
        for (network, ip) in iter {
            out.insert(network, ip);
        }
        out.0.shrink_to_fit();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_found_by_network_whatever_the_order_they_came_in() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut a: Addresses = [("b_net", ip("10.0.0.2")), ("a_net", ip("10.0.0.1"))]
            .into_iter()
            .collect();
        assert_eq!(a.get("a_net"), Some(&ip("10.0.0.1")));
        assert_eq!(a.get("b_net"), Some(&ip("10.0.0.2")));
        assert_eq!(a.get("c_net"), None);
        a.insert("a_net", ip("10.0.0.9"));
        a.insert("c_net", ip("10.0.0.3"));
        assert_eq!(a.get("a_net"), Some(&ip("10.0.0.9")));
        assert_eq!(a.get("c_net"), Some(&ip("10.0.0.3")));
        assert!(!a.is_empty() && Addresses::default().is_empty());
    }
}
