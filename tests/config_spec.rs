//! A loaded Compose file all the way to the engine's create request.

use std::collections::HashMap;
use std::path::PathBuf;

use drover::config::{self, LoadOptions};
use drover::spec;

#[test]
fn loaded_service_becomes_a_create_request() {
    let o = LoadOptions {
        cwd: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/full"),
        env: HashMap::from([("HOME".to_string(), "/home/tester".to_string())]),
        ..LoadOptions::default()
    };
    let project = config::load(&o).expect("fixture loads").project;
    let web = &project.services["web"];

    assert_eq!(spec::container_name(&project, web, 2), "fullstack-web-2");
    let body = spec::create_body(&project, web, 2);
    let labels = body.labels.as_ref().unwrap();
    assert_eq!(labels[drover::labels::LABEL_PROJECT], "fullstack");
    assert_eq!(labels[drover::labels::LABEL_SLOT], "2");
    assert_eq!(labels[drover::labels::LABEL_CONFIG_HASH], web.config_hash);
    assert_eq!(labels["team"], "edge");
    let env = body.env.as_ref().unwrap();
    assert!(env.contains(&"PRICE=$5".to_string()));
    assert!(env.contains(&"EMPTY".to_string()));
    assert_eq!(body.stop_timeout, Some(60));
    let host = body.host_config.as_ref().unwrap();
    assert_eq!(
        host.restart_policy.as_ref().and_then(|p| p.name),
        Some(bollard::models::RestartPolicyNameEnum::NO)
    );
    assert_eq!(host.network_mode.as_deref(), Some("backend-net"));
    // Short-syntax binds, and long-syntax ones without a `bind` section, go as `Binds`
    // (the engine creates a missing host path, as with `docker run -v` and compose);
    // volumes and tmpfs as mounts.
    assert_eq!(host.binds.as_ref().unwrap().len(), 3);
    assert!(host.binds.as_ref().unwrap()[0].ends_with(":/usr/share/nginx/html:ro"));
    assert_eq!(host.mounts.as_ref().unwrap().len(), 4);
    assert_eq!(host.port_bindings.as_ref().unwrap().len(), 6);

    let extra = spec::extra_networks(&project, web, 1);
    assert_eq!(extra.len(), 1);
    assert_eq!(extra[0].0, "fullstack_front");
    assert_eq!(
        extra[0].1.aliases,
        Some(vec![
            "web".to_string(),
            "fullstack-web-1".to_string(),
            "www".to_string(),
            "site".to_string()
        ])
    );
}
