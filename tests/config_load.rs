//! Loading Compose files from `tests/fixtures/config/`: what users write, what drover runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use drover::config::{
    self, DependsCondition, LoadOptions, Loaded, MountKind, Protocol, RestartCondition,
};

fn fixture_dir(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(dir)
}

fn opts(dir: &str, files: &[&str]) -> LoadOptions {
    LoadOptions {
        files: files.iter().map(PathBuf::from).collect(),
        cwd: fixture_dir(dir),
        env: HashMap::from([("HOME".to_string(), "/home/tester".to_string())]),
        ..LoadOptions::default()
    }
}

fn load(o: &LoadOptions) -> Loaded {
    match config::load(o) {
        Ok(l) => l,
        Err(e) => panic!("load failed: {e}"),
    }
}

fn load_err(o: &LoadOptions) -> String {
    match config::load(o) {
        Ok(_) => panic!("load succeeded, expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn full_file_maps_every_supported_key() {
    let o = opts("full", &[]);
    let loaded = load(&o);
    let p = &loaded.project;
    let dir = fixture_dir("full");
    assert_eq!(p.name, "fullstack");
    assert_eq!(p.working_dir, dir);

    let web = &p.services["web"];
    assert_eq!(web.image, "nginx:1.25", ".env feeds interpolation");
    assert_eq!(
        web.command.as_deref(),
        Some(&["nginx".to_string(), "-g".into(), "daemon off;".into()][..])
    );
    assert_eq!(
        web.entrypoint.as_deref(),
        Some(&["/docker-entrypoint.sh".to_string()][..])
    );
    let env = &web.environment;
    assert_eq!(env["MODE"].as_deref(), Some("production"));
    assert_eq!(env["WORKERS"].as_deref(), Some("4"));
    assert_eq!(env["DEBUG"].as_deref(), Some("false"));
    assert_eq!(env["EMPTY"], None);
    assert_eq!(env["FROM_DOTENV"].as_deref(), Some("dotenv-value"));
    assert_eq!(env["PRICE"].as_deref(), Some("$5"));
    assert_eq!(env["APP_ONLY"].as_deref(), Some("yes"));
    assert_eq!(env.len(), 7);
    assert_eq!(web.labels["team"], "edge");
    assert_eq!(web.labels["tier"], "frontend");

    let ports: Vec<(u16, Option<u16>, Option<&str>, Protocol)> = web
        .ports
        .iter()
        .map(|p| (p.target, p.published, p.host_ip.as_deref(), p.protocol))
        .collect();
    assert_eq!(
        ports,
        vec![
            (80, Some(8080), None, Protocol::Tcp),
            (443, Some(8443), Some("127.0.0.1"), Protocol::Udp),
            (9000, Some(9000), None, Protocol::Tcp),
            (9001, Some(9001), None, Protocol::Tcp),
            (3000, None, None, Protocol::Tcp),
            (5000, Some(5001), Some("0.0.0.0"), Protocol::Tcp),
        ]
    );

    let mounts: Vec<(MountKind, Option<String>, &str, bool)> = web
        .volumes
        .iter()
        .map(|m| (m.kind, m.source.clone(), m.target.as_str(), m.read_only))
        .collect();
    let html = dir.join("html").to_string_lossy().into_owned();
    let shared = dir
        .parent()
        .unwrap()
        .join("shared")
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        mounts,
        vec![
            (MountKind::Bind, Some(html), "/usr/share/nginx/html", true),
            (
                MountKind::Volume,
                Some("fullstack_data".into()),
                "/data",
                false
            ),
            (MountKind::Volume, None, "/cache", false),
            (
                MountKind::Bind,
                Some("/home/tester/certs".into()),
                "/certs",
                false
            ),
            (MountKind::Tmpfs, None, "/run", false),
            (
                MountKind::Volume,
                Some("shared-logs".into()),
                "/var/log/nginx",
                true
            ),
            (MountKind::Bind, Some(shared), "/shared", false),
        ]
    );

    assert_eq!(
        web.networks.keys().collect::<Vec<_>>(),
        vec!["back", "front"]
    );
    assert_eq!(web.networks["front"].aliases, vec!["www", "site"]);
    assert!(web.networks["back"].aliases.is_empty());

    let hc = web.healthcheck.as_ref().unwrap();
    assert_eq!(
        hc.test,
        vec!["CMD-SHELL", "curl -f http://localhost/ || exit 1"]
    );
    assert_eq!(hc.interval, Some(Duration::from_secs(90)));
    assert_eq!(hc.timeout, Some(Duration::from_secs(10)));
    assert_eq!(hc.start_period, Some(Duration::from_millis(500)));
    assert_eq!(hc.retries, Some(3));

    // `restart` wins for the condition and the count; the delay comes from deploy.
    assert_eq!(web.restart.condition, RestartCondition::OnFailure);
    assert_eq!(web.restart.max_attempts, Some(5));
    assert_eq!(web.restart.delay, Some(Duration::from_secs(5)));
    assert_eq!(web.stop_signal.as_deref(), Some("SIGQUIT"));
    assert_eq!(web.stop_grace_period, Duration::from_secs(60));
    assert_eq!(web.user.as_deref(), Some("101"));
    assert_eq!(web.working_dir.as_deref(), Some("/srv"));
    assert_eq!(web.hostname.as_deref(), Some("web"));
    assert_eq!(
        web.depends_on["db"].condition,
        DependsCondition::ServiceHealthy
    );
    assert_eq!(
        web.depends_on["cache"].condition,
        DependsCondition::ServiceStarted
    );
    assert!(web.depends_on["cache"].required);
    assert_eq!(web.replicas, 1);
    assert_eq!(web.container_name, None);
    assert_eq!(web.config_hash.len(), 64);

    let db = &p.services["db"];
    assert_eq!(
        db.environment["POSTGRES_PASSWORD"].as_deref(),
        Some("s3cret value")
    );
    assert_eq!(db.environment["PGDATA"], None, "unset KEY passes through");
    assert_eq!(db.labels["backup"], "nightly");
    assert_eq!(db.volumes[0].source.as_deref(), Some("fullstack_pgdata"));
    assert_eq!(
        db.healthcheck.as_ref().unwrap().test,
        vec!["CMD", "pg_isready"]
    );
    assert_eq!(db.restart.condition, RestartCondition::Never);
    assert_eq!(db.stop_grace_period, Duration::from_secs(10));
    assert_eq!(
        db.networks.keys().collect::<Vec<_>>(),
        vec!["back"],
        "no default network when networks are given"
    );

    let cache = &p.services["cache"];
    assert_eq!(cache.healthcheck.as_ref().unwrap().test, vec!["NONE"]);
    assert_eq!(cache.restart.condition, RestartCondition::Always);
    assert_eq!(cache.volumes[0].kind, MountKind::Tmpfs);
    assert_eq!(cache.volumes[0].target, "/tmp");
    assert_eq!(cache.networks.keys().collect::<Vec<_>>(), vec!["default"]);

    assert_eq!(p.networks["default"].name, "fullstack_default");
    assert_eq!(p.networks["front"].name, "fullstack_front");
    assert_eq!(p.networks["front"].driver.as_deref(), Some("bridge"));
    assert_eq!(p.networks["front"].labels["purpose"], "public");
    assert_eq!(p.networks["back"].name, "backend-net");
    assert_eq!(p.networks["outside"].name, "outside");
    assert!(p.networks["outside"].external);
    assert_eq!(p.volumes["data"].name, "fullstack_data");
    assert_eq!(p.volumes["pgdata"].driver.as_deref(), Some("local"));
    assert_eq!(p.volumes["legacy"].name, "legacy");
    assert!(p.volumes["legacy"].external);

    assert_eq!(p.start_order(), vec!["cache", "db", "web"]);
    assert!(
        loaded.warnings.is_empty(),
        "unexpected warnings: {:?}",
        loaded.warnings
    );
}

#[test]
fn process_environment_wins_over_dotenv() {
    let mut o = opts("full", &["compose.yml"]);
    o.env.insert("NGINX_TAG".into(), "1.99".into());
    let p = load(&o).project;
    assert_eq!(p.services["web"].image, "nginx:1.99");
}

#[test]
fn env_file_option_replaces_dotenv() {
    let mut o = opts("full", &["compose.yml"]);
    o.env_files = vec![PathBuf::from("app.env")];
    // app.env has no DB_PASSWORD: the `:?` in compose.yml now fails, located.
    let err = load_err(&o);
    assert_eq!(
        err,
        "compose.yml:80:9: services.db.environment[0]: \
         required variable DB_PASSWORD is missing a value: set DB_PASSWORD in .env"
    );
}

#[test]
fn required_variable_error_is_located_and_secret_free() {
    let o = opts("errors", &["required-var.yml"]);
    let err = load_err(&o);
    assert_eq!(
        err,
        "required-var.yml:5:14: services.web.environment.TOKEN: \
         required variable TOKEN is missing a value: TOKEN must be set"
    );
    assert_eq!(err.lines().count(), 1);

    let mut o = opts("errors", &["required-var.yml"]);
    o.env.insert("TOKEN".into(), "hunter2".into());
    let p = load(&o).project;
    assert_eq!(
        p.services["web"].environment["TOKEN"].as_deref(),
        Some("hunter2")
    );
}

#[test]
fn anchors_and_merge_keys() {
    let p = load(&opts("anchors", &["compose.yml"])).project;
    assert_eq!(
        p.name, "anchors",
        "directory name when nothing else names it"
    );
    let a = &p.services["a"];
    assert_eq!(a.image, "busybox:1.36");
    assert_eq!(a.labels["owner"], "ops");
    assert_eq!(a.environment["SHARED"].as_deref(), Some("1"));
    assert_eq!(a.command.as_ref().unwrap(), &vec!["sleep", "1000"]);
    let b = &p.services["b"];
    assert_eq!(b.image, "alpine:3.20", "explicit keys win over merged ones");
    assert_eq!(b.environment["SHARED"].as_deref(), Some("1"));
    assert_eq!(b.environment["EXTRA"].as_deref(), Some("2"));
    assert_eq!(b.restart.condition, RestartCondition::Always);
}

#[test]
fn replica_precedence_has_five_levels() {
    let mut o = opts("scale", &["compose.yml"]);
    o.scale_file = Some(PathBuf::from("scale.yml"));
    o.scale = vec![("a".into(), 6)];
    let loaded = load(&o);
    let r = |s: &str| loaded.project.services[s].replicas;
    assert_eq!(r("a"), 6, "--scale beats everything");
    assert_eq!(r("b"), 5, "scale file beats deploy.replicas");
    assert_eq!(r("c"), 5, "scale file beats x-drover");
    assert_eq!(r("d"), 4, "x-drover beats scale:");
    assert_eq!(r("e"), 1, "default");

    let loaded = load(&opts("scale", &["compose.yml"]));
    assert_eq!(loaded.project.services["a"].replicas, 2, "deploy.replicas");
    assert_eq!(loaded.project.services["c"].replicas, 4);

    let s = &loaded.settings;
    assert_eq!(s.resync_interval, Some(Duration::from_secs(30)));
    assert_eq!(s.watchdog, Some(Duration::from_secs(120)));
    assert_eq!(s.backoff.initial, Some(Duration::from_millis(500)));
    assert_eq!(s.backoff.max, Some(Duration::from_secs(60)));
    assert_eq!(s.backoff.reset_after, Some(Duration::from_secs(600)));
    assert_eq!(
        loaded.warnings,
        vec!["compose.yml:11:3: x-drover.colour: unknown key, ignored"]
    );
}

#[test]
fn scale_errors() {
    let mut o = opts("scale", &["compose.yml"]);
    o.scale = vec![("nope".into(), 2)];
    let err = load_err(&o);
    assert!(err.starts_with("--scale nope: no such service"), "{err}");

    let mut o = opts("scale", &["compose.yml"]);
    o.scale_file = Some(PathBuf::from("bad-scale.yml"));
    let err = load_err(&o);
    assert_eq!(err, "bad-scale.yml:2:1: z: no such service");

    o.scale_file = Some(PathBuf::from("bad-count.yml"));
    let err = load_err(&o);
    assert_eq!(
        err,
        "bad-count.yml:1:4: a: expected a non-negative integer, got \"-1\""
    );
}

#[test]
fn project_name_precedence() {
    let o = opts("named", &["compose.yml"]);
    assert_eq!(load(&o).project.name, "from-file");

    let mut o = opts("named", &["compose.yml"]);
    o.env
        .insert("COMPOSE_PROJECT_NAME".into(), "From_Env".into());
    assert_eq!(load(&o).project.name, "from_env");

    o.project_name = Some("Flag".into());
    assert_eq!(load(&o).project.name, "flag");

    o.project_name = Some("-bad".into());
    let err = load_err(&o);
    assert!(err.contains("must"), "{err}");
}

#[test]
fn unsupported_keys_warn_once_and_an_unknown_key_is_refused_as_compose_refuses_it() {
    let err = load_err(&opts("errors", &["unknown-keys.yml"]));
    assert_eq!(
        err,
        "unknown-keys.yml:8:5: services.web.colour: unknown key: the Compose specification \
         has no such key (compose refuses it too); a typo?"
    );
    let loaded = load(&opts("errors", &["unsupported-keys.yml"]));
    assert_eq!(loaded.project.services["web"].image, "nginx");
    assert_eq!(
        loaded.warnings,
        vec![
            "unsupported-keys.yml:1:1: models: not supported yet, ignored",
            "unsupported-keys.yml:6:5: services.web.gpus: not supported yet, ignored",
            "unsupported-keys.yml:8:5: services.web.device_cgroup_rules: not supported yet, ignored",
        ]
    );
}

/// Every service key of the Compose specification drover is tested against (compose-go
/// 2.9's schema, which Docker Compose 2.40 loads with) is known: read, or warned about as
/// not supported, never refused as unknown.
#[test]
fn every_service_key_of_the_compose_specification_is_known() {
    const SPEC: &[&str] = &[
        "annotations",
        "attach",
        "blkio_config",
        "build",
        "cap_add",
        "cap_drop",
        "cgroup",
        "cgroup_parent",
        "command",
        "configs",
        "container_name",
        "cpu_count",
        "cpu_percent",
        "cpu_period",
        "cpu_quota",
        "cpu_rt_period",
        "cpu_rt_runtime",
        "cpu_shares",
        "cpus",
        "cpuset",
        "credential_spec",
        "depends_on",
        "deploy",
        "develop",
        "device_cgroup_rules",
        "devices",
        "dns",
        "dns_opt",
        "dns_search",
        "domainname",
        "entrypoint",
        "env_file",
        "environment",
        "expose",
        "extends",
        "external_links",
        "extra_hosts",
        "gpus",
        "group_add",
        "healthcheck",
        "hostname",
        "image",
        "init",
        "ipc",
        "isolation",
        "label_file",
        "labels",
        "links",
        "logging",
        "mac_address",
        "mem_limit",
        "mem_reservation",
        "mem_swappiness",
        "memswap_limit",
        "models",
        "network_mode",
        "networks",
        "oom_kill_disable",
        "oom_score_adj",
        "pid",
        "pids_limit",
        "platform",
        "ports",
        "post_start",
        "pre_stop",
        "privileged",
        "profiles",
        "provider",
        "pull_policy",
        "pull_refresh_after",
        "read_only",
        "restart",
        "runtime",
        "scale",
        "secrets",
        "security_opt",
        "shm_size",
        "stdin_open",
        "stop_grace_period",
        "stop_signal",
        "storage_opt",
        "sysctls",
        "tmpfs",
        "tty",
        "ulimits",
        "use_api_socket",
        "user",
        "userns_mode",
        "uts",
        "volumes",
        "volumes_from",
        "working_dir",
    ];
    let dir = std::env::temp_dir().join(format!("drover-load-spec-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for key in SPEC {
        // The value may well be wrong for the key: only "unknown" is looked for.
        std::fs::write(
            dir.join("compose.yml"),
            format!("services:\n  web:\n    image: x\n    {key}: ~\n"),
        )
        .unwrap();
        let o = LoadOptions {
            cwd: dir.clone(),
            project_name: Some("p".into()),
            ..LoadOptions::default()
        };
        if let Err(e) = drover::config::load(&o) {
            assert!(!e.to_string().contains("unknown key"), "{key}: {e}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wrong_value_is_one_located_line() {
    let err = load_err(&opts("errors", &["replicas-type.yml"]));
    assert_eq!(
        err,
        "replicas-type.yml:5:17: services.web.deploy.replicas: expected an integer, got \"many\""
    );
}

#[test]
fn undeclared_network_and_volume() {
    let err = load_err(&opts("errors", &["undeclared-network.yml"]));
    assert_eq!(
        err,
        "undeclared-network.yml:6:9: services.web.networks.missing: \
         network \"missing\" is not declared in the top-level networks"
    );
    let err = load_err(&opts("errors", &["undeclared-volume.yml"]));
    assert_eq!(
        err,
        "undeclared-volume.yml:6:9: services.web.volumes[1]: \
         volume \"nodata\" is not declared in the top-level volumes"
    );
}

#[test]
fn dependency_errors() {
    let err = load_err(&opts("errors", &["cycle.yml"]));
    assert_eq!(
        err,
        "cycle.yml:4:18: services.a.depends_on: dependency cycle: a -> b -> c -> a"
    );
    let err = load_err(&opts("errors", &["unknown-dependency.yml"]));
    assert_eq!(
        err,
        "unknown-dependency.yml:4:18: services.web.depends_on.db: no such service \"db\""
    );
}

#[test]
fn container_name_cannot_have_replicas() {
    let err = load_err(&opts("errors", &["container-name.yml"]));
    assert!(
        err.starts_with("container-name.yml:4:5: services.web.container_name: "),
        "{err}"
    );
    assert!(err.contains("compose refuses to scale it too"), "{err}");
    let mut o = opts("errors", &["container-name.yml"]);
    o.scale = vec![("web".into(), 1)];
    let p = load(&o).project;
    assert_eq!(p.services["web"].container_name.as_deref(), Some("the-web"));
}

#[test]
fn build_without_image_runs_the_image_compose_would_build() {
    let loaded = load(&opts("errors", &["build-only.yml"]));
    let web = &loaded.project.services["web"];
    assert_eq!(web.image, "errors-web", "compose names built images so");
    assert_eq!(web.options.pull_policy, config::PullPolicy::Build);
    assert_eq!(
        loaded.warnings,
        vec![
            "build-only.yml:3:5: services.web.build: ignored: drover runs images and does not \
             build them; the image (named as compose names it) must be present on the engine"
        ]
    );
}

#[test]
fn later_files_override_earlier_ones() {
    let p = load(&opts("multi", &["base.yml", "override.yml"])).project;
    assert_eq!(p.name, "multi");
    let web = &p.services["web"];
    assert_eq!(web.image, "app:2");
    let env: Vec<(&str, Option<&str>)> = web
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect();
    assert_eq!(
        env,
        vec![("A", Some("1")), ("B", Some("3")), ("C", Some("4"))]
    );
    assert_eq!(web.labels["keep"], "yes");
    // Ports add up, as in compose.
    let published: Vec<Option<u16>> = web.ports.iter().map(|p| p.published).collect();
    assert_eq!(published, vec![Some(80), Some(8080)]);
    assert_eq!(
        web.networks.keys().collect::<Vec<_>>(),
        vec!["back", "front"]
    );
    assert_eq!(p.services["worker"].image, "worker:1");
}

#[test]
fn config_hash_is_stable_and_sensitive() {
    let base = load(&opts("multi", &["base.yml"])).project;
    let again = load(&opts("multi", &["base.yml"])).project;
    assert_eq!(
        base.services["web"].config_hash,
        again.services["web"].config_hash
    );

    let mut o = opts("multi", &["base.yml"]);
    o.scale = vec![("worker".into(), 5)];
    let scaled = load(&o).project;
    assert_eq!(scaled.services["worker"].replicas, 5);
    assert_eq!(
        base.services["worker"].config_hash, scaled.services["worker"].config_hash,
        "replicas do not change the hash"
    );

    let changed = load(&opts("multi", &["base.yml", "override.yml"])).project;
    assert_ne!(
        base.services["web"].config_hash,
        changed.services["web"].config_hash
    );
    assert_eq!(
        base.services["worker"].config_hash, changed.services["worker"].config_hash,
        "an untouched service keeps its hash"
    );
}

#[test]
fn missing_files() {
    let err = load_err(&opts("multi", &["nope.yml"]));
    assert_eq!(err, "nope.yml: no such file");
    let dir = fixture_dir("errors");
    let err = load_err(&opts("errors", &[]));
    assert_eq!(
        err,
        format!(
            "no compose file found in {} (looked for compose.yaml, compose.yml, \
             docker-compose.yaml, docker-compose.yml)",
            dir.display()
        )
    );
}

#[test]
fn errors_never_echo_values() {
    let mut o = opts("errors", &["secret-port.yml"]);
    o.env.insert("SECRET".into(), "hunter2".into());
    let err = load_err(&o);
    assert!(
        err.starts_with("secret-port.yml:5:9: services.web.ports[0]: "),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn map_values_must_be_scalars() {
    let mut o = opts("errors", &["secret-port.yml"]);
    o.env.insert("SECRET".into(), "8080:80".into());
    let err = load_err(&o);
    assert_eq!(
        err,
        "secret-port.yml:7:15: services.web.environment.NESTED: \
         expected a string, number, boolean or null"
    );
}

#[test]
fn same_file_twice_still_warns_once() {
    let loaded = load(&opts(
        "errors",
        &["unsupported-keys.yml", "unsupported-keys.yml"],
    ));
    assert_eq!(loaded.warnings.len(), 3, "{:?}", loaded.warnings);
}

/// A fresh directory holding `compose.yml` with `text`.
fn temp_project(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drover-load-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yml"), text).unwrap();
    dir
}

#[test]
fn project_name_in_effect_is_interpolated_as_compose_does() {
    let dir = temp_project(
        "pn",
        "services:\n  a:\n    image: busybox\n    environment:\n      PN: \"${COMPOSE_PROJECT_NAME}\"\n      OR: \"${COMPOSE_PROJECT_NAME:-unset}\"\n",
    );
    let mut o = LoadOptions {
        cwd: dir.clone(),
        project_name: Some("MyProj".into()),
        ..LoadOptions::default()
    };
    let env = |o: &LoadOptions| load(o).project.services["a"].environment.clone();
    let e = env(&o);
    assert_eq!(e["PN"].as_deref(), Some("myproj"), "-p, normalized");
    assert_eq!(e["OR"].as_deref(), Some("myproj"));
    // -p wins over the environment, as the name itself does.
    o.env
        .insert("COMPOSE_PROJECT_NAME".into(), "fromenv".into());
    assert_eq!(env(&o)["PN"].as_deref(), Some("myproj"));
    o.project_name = None;
    assert_eq!(env(&o)["PN"].as_deref(), Some("fromenv"));
    // Without either: the name from `name:`, else the directory's, as compose.
    o.env.clear();
    let dir_name = dir.file_name().unwrap().to_string_lossy().to_lowercase();
    assert_eq!(env(&o)["PN"].as_deref(), Some(dir_name.as_str()));
    assert_eq!(load(&o).project.name, dir_name);
    let text = std::fs::read_to_string(dir.join("compose.yml")).unwrap();
    std::fs::write(dir.join("compose.yml"), format!("name: Named\n{text}")).unwrap();
    assert_eq!(env(&o)["PN"].as_deref(), Some("named"));
    assert_eq!(load(&o).project.name, "named");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_long_bind_without_a_bind_section_may_create_its_host_path_as_in_compose() {
    let dir = temp_project(
        "bind",
        "services:\n  a:\n    image: busybox\n    volumes:\n      - {type: bind, source: ./otel.yaml, target: /a}\n      - {type: bind, source: ./b, target: /b, bind: {propagation: rprivate}}\n      - {type: bind, source: ./c, target: /c, bind: {create_host_path: true}}\n      - {type: bind, source: ./d, target: /d, bind: {create_host_path: false}}\n      - ./e:/e\n",
    );
    let o = LoadOptions {
        cwd: dir.clone(),
        ..LoadOptions::default()
    };
    let loaded = load(&o);
    let created: Vec<(&str, bool)> = loaded.project.services["a"]
        .volumes
        .iter()
        .map(|m| (m.target.as_str(), m.create_host_path))
        .collect();
    assert_eq!(
        created,
        [
            ("/a", true),
            ("/b", false),
            ("/c", true),
            ("/d", false),
            ("/e", true)
        ]
    );
    assert!(!dir.join("otel.yaml").exists(), "loading creates nothing");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn several_nodes_in_plain_mode_make_a_mesh_of_the_services_with_ports() {
    let l = load(&opts("mesh", &["compose.yml"]));
    let mesh = l.project.mesh.as_ref().expect("several nodes: a mesh");
    assert_eq!(mesh.image(), "registry.example/drover:1.4");
    let addresses: Vec<(String, String)> = mesh
        .addresses
        .iter()
        .map(|(n, a)| (n.clone(), a.to_string()))
        .collect();
    assert_eq!(
        addresses,
        vec![
            ("n1".to_string(), "10.0.0.11".to_string()),
            ("n2".to_string(), "192.168.5.12".to_string()),
        ],
        "the IP of host, else address; a host name gives none"
    );
    let s = &l.project.services;
    assert!(s["db"].options.mesh && s["api"].options.mesh);
    assert!(!s["web"].options.mesh, "no ports, nothing published");
    assert_eq!(
        s["db"].mesh_ports(),
        vec![(5432, Protocol::Tcp), (53, Protocol::Udp)]
    );
    assert_eq!(s["api"].mesh_ports(), vec![(80, Protocol::Tcp)]);

    let one = load(&opts("mesh", &["one-node.yml"]));
    assert!(one.project.mesh.is_none(), "one node: no mesh");
    let unnamed = load(&opts("mesh", &["default-image.yml"]));
    assert_eq!(unnamed.project.mesh.unwrap().image(), "drover:latest");
    assert!(!one.project.services["db"].options.mesh);
}
