//! Images from a private registry (basic auth, plain HTTP on loopback and TLS with a test
//! CA), pulled with the credentials a `docker login` wrote.

mod support;

use std::net::{IpAddr, Ipv4Addr};

use support::registry::Registry;
use support::{TEST_IMAGE, local_env, unique_name};

#[test]
fn the_test_registry_takes_a_login_and_a_push_over_http_and_tls() {
    for r in [
        Registry::http(),
        Registry::tls(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    ] {
        let config = r.dir.join("client");
        r.login(&local_env(), &config);
        let name = r.push(&local_env(), &config, TEST_IMAGE, &unique_name("smoke"));
        assert!(
            !r.requests("/manifests/").is_empty(),
            "the push of {name} reached the registry:\n{}",
            r.log()
        );
        assert_eq!(r.status("/v2/"), "401", "the registry asks for a login");
    }
}
