//! Located errors for what only goes wrong after interpolation, profiles, include and
//! extends: `file:line:column: key.path: message`, naming the variables involved.

use std::collections::HashMap;
use std::path::PathBuf;

use drover::config::{self, LoadOptions};

fn load_err(compose: &str, files: &[(&str, &str)], env: &[(&str, &str)]) -> String {
    // Tests run in parallel: each call gets a directory of its own.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "drover-config-errors-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yml"), compose).unwrap();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let o = LoadOptions {
        cwd: dir.clone(),
        files: vec![PathBuf::from("compose.yml")],
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        ..LoadOptions::default()
    };
    let err = match config::load(&o) {
        Ok(_) => panic!("loaded, expected an error"),
        Err(e) => e.to_string(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    err
}

#[test]
fn a_bad_value_from_a_variable_names_the_variable() {
    let err = load_err(
        "services:\n  web:\n    image: busybox\n    deploy:\n      replicas: ${REPLICAS}\n",
        &[],
        &[("REPLICAS", "x")],
    );
    assert_eq!(
        err,
        "compose.yml:5:17: services.web.deploy.replicas: expected an integer, got \"x\" \
         from ${REPLICAS}"
    );
    let err = load_err(
        "services:\n  web:\n    image: busybox\n    stop_grace_period: \"${GRACE:-${FALLBACK}}\"\n",
        &[],
        &[("FALLBACK", "soon")],
    );
    assert!(
        err.ends_with("got \"soon\" from ${GRACE} and ${FALLBACK}"),
        "{err}"
    );
    let err = load_err(
        "services:\n  web:\n    image: busybox\n    privileged: $PRIV\n",
        &[],
        &[("PRIV", "maybe")],
    );
    assert_eq!(
        err,
        "compose.yml:4:17: services.web.privileged: expected true or false, got \"maybe\" \
         from ${PRIV}"
    );
}

#[test]
fn free_text_is_never_echoed() {
    let err = load_err(
        "services:\n  web:\n    image: busybox\n    ports: [\"${SECRET}\"]\n",
        &[],
        &[("SECRET", "hunter2")],
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert!(
        err.starts_with("compose.yml:4:13: services.web.ports[0]:"),
        "{err}"
    );
}

#[test]
fn required_variables_say_their_message() {
    let err = load_err(
        "services:\n  web:\n    image: ${IMAGE:?set IMAGE to the image to run}\n",
        &[],
        &[],
    );
    assert_eq!(
        err,
        "compose.yml:3:12: services.web.image: required variable IMAGE is missing a value: set IMAGE \
         to the image to run"
    );
}

#[test]
fn depending_on_a_disabled_service_names_its_profiles() {
    let err = load_err(
        "services:\n  web:\n    image: busybox\n    depends_on: [debug]\n  debug:\n    image: busybox\n    profiles: [dev, debug]\n",
        &[],
        &[],
    );
    assert_eq!(
        err,
        "compose.yml:4:18: services.web.depends_on.debug: service \"debug\" is not enabled: \
         enable one of its profiles (dev, debug) with --profile or COMPOSE_PROFILES, or set \
         required: false"
    );
}

#[test]
fn cycles_through_implied_dependencies_are_named() {
    let err = load_err(
        "services:\n  a:\n    image: busybox\n    network_mode: service:b\n  b:\n    image: busybox\n    volumes_from: [a]\n",
        &[],
        &[],
    );
    assert!(err.contains("dependency cycle: a -> b -> a"), "{err}");
}

#[test]
fn extends_and_include_problems() {
    let err = load_err(
        "services:\n  a:\n    image: busybox\n    extends: b\n  b:\n    extends: a\n",
        &[],
        &[],
    );
    assert!(err.contains("extends cycle"), "{err}");
    let err = load_err(
        "include: [lib/compose.yml]\nservices:\n  db:\n    image: busybox\n",
        &[("lib/compose.yml", "services:\n  db:\n    image: postgres\n")],
        &[],
    );
    assert!(
        err.starts_with("compose.yml:3:3: services.db: conflicts with the service of the same name included from"),
        "{err}"
    );
    let err = load_err(
        "services:\n  a:\n    image: busybox\n    network_mode: host\n    networks: [x]\nnetworks:\n  x:\n",
        &[],
        &[],
    );
    assert_eq!(
        err,
        "compose.yml:4:5: services.a.network_mode: cannot be combined with networks; use one of them"
    );
}

#[test]
fn secrets_that_cannot_be_mounted_on_one_engine() {
    let err = load_err(
        "services:\n  a:\n    image: busybox\n    secrets: [tls]\nsecrets:\n  tls:\n    external: true\n",
        &[],
        &[],
    );
    assert_eq!(
        err,
        "compose.yml:4:15: services.a.secrets[0]: secrets \"tls\": external secrets and configs \
         exist only in Swarm mode; use file:"
    );
}

#[test]
fn compose_consistency_checks_are_located_errors() {
    // A service-level resource and its deploy.resources twin must agree, as compose checks.
    let err = load_err(
        "services:\n  web:\n    image: busybox\n    mem_limit: 512m\n    deploy:\n      resources:\n        limits: {memory: 256m}\n",
        &[],
        &[],
    );
    assert_eq!(
        err,
        "compose.yml:4:16: services.web.mem_limit: differs from \
         deploy.resources.limits.memory; set only one (compose refuses distinct values)"
    );
    let err = load_err(
        "services:\n  web:\n    image: busybox\n    cpus: 1.5\n    deploy:\n      resources:\n        limits: {memory: 1g}\n",
        &[],
        &[],
    );
    assert!(
        err.starts_with("compose.yml:4:11: services.web.cpus: differs from"),
        "{err}"
    );
    // `required: false` excuses a disabled service, not a missing one.
    let err = load_err(
        "services:\n  web:\n    image: busybox\n    depends_on:\n      cache: {condition: service_started, required: false}\n",
        &[],
        &[],
    );
    assert_eq!(
        err,
        "compose.yml:5:7: services.web.depends_on.cache: no such service \"cache\""
    );
}

#[test]
fn a_host_address_that_is_not_an_ip_is_refused_at_check_time() {
    let compose =
        "services:\n  web:\n    image: busybox\n    ports: [\"${HOSTIP:-127.0.0.1}:8080:80\"]\n";
    let err = load_err(compose, &[], &[("HOSTIP", "x")]);
    assert_eq!(
        err,
        "compose.yml:4:13: services.web.ports[0]: invalid IP address: x"
    );
    let err = load_err(
        "services:\n  web:\n    image: busybox\n    ports: [{target: 80, host_ip: nope}]\n",
        &[],
        &[],
    );
    assert_eq!(
        err,
        "compose.yml:4:35: services.web.ports[0].host_ip: invalid IP address: nope"
    );
}
