//! drover run the way users run it: as a container from the runtime image, built offline
//! from a static binary built on this host (deploy/build-image.sh, the same runtime stage
//! as the root Dockerfile). Each test has its own project name (`it-obs-...`); TLS nodes
//! use indices 61..69 (this file: 61, 63, 64).

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use drover::telemetry::http;
use drover::telemetry::status::Status;
use support::drover::Project;
use support::{Node, TEST_IMAGE, docker, docker_ok, local_env, repo_root, text, unique_name};

const IMAGE: &str = "drover-test/drover:it";
const UP: Duration = Duration::from_secs(90);
/// The uid the image runs as.
const UID: &str = "65532";

/// Build the runtime image once per test process (a static release build on the first run).
fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        support::local_engine();
        let out = Command::new(repo_root().join("deploy/build-image.sh"))
            .arg(IMAGE)
            .env("DOCKER_HOST", support::local_engine())
            .output()
            .expect("cannot run deploy/build-image.sh");
        assert!(
            out.status.success(),
            "deploy/build-image.sh failed:\n{}",
            text(&out)
        );
    });
    IMAGE
}

/// The example project of compose.example.yml (deploy/example), copied into `p`'s directory.
fn example(name: &str, env: Vec<(String, String)>) -> Project {
    let dir = repo_root().join("deploy/example");
    let compose = std::fs::read_to_string(dir.join("compose.yml")).unwrap();
    let p = Project::on(name, &compose, env);
    p.write(
        "scale.yml",
        &std::fs::read_to_string(dir.join("scale.yml")).unwrap(),
    );
    p
}

/// A drover container on the local engine, removed when dropped.
struct Container {
    name: String,
}

impl Container {
    fn run(name: &str, args: &[&str]) -> Container {
        let _ = docker(&local_env(), &["rm", "-f", name]);
        let mut all = vec!["run", "-d", "--name", name];
        all.extend(args);
        docker_ok(&local_env(), &all);
        Container {
            name: name.to_string(),
        }
    }

    fn inspect(&self, format: &str) -> String {
        let out = docker(&local_env(), &["inspect", "-f", format, &self.name]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn logs(&self) -> String {
        text(&docker(&local_env(), &["logs", &self.name]))
    }

    /// The published address of the container's port 9477.
    fn http(&self) -> SocketAddr {
        let port = docker_ok(&local_env(), &["port", &self.name, "9477/tcp"]);
        port.lines().next().unwrap().parse().unwrap()
    }

    /// Poll `f` until it holds; on timeout (or if the container stopped) panic with its logs.
    fn eventually(&self, deadline: Duration, what: &str, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + deadline;
        loop {
            if f() {
                return;
            }
            let running = self.inspect("{{.State.Running}}") == "true";
            if !running || Instant::now() >= end {
                panic!(
                    "{} waiting for {what}; drover container logs:\n{}",
                    if running {
                        "timed out"
                    } else {
                        "drover container stopped"
                    },
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&local_env(), &["rm", "-f", &self.name]);
    }
}

fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http::get(addr, path, Duration::from_secs(5)).ok()
}

fn metric(text: &str, name: &str, service: &str) -> Option<f64> {
    let want = format!("service=\"{service}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&want))
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
}

fn socket_gid() -> String {
    let out = Command::new("stat")
        .args(["-c", "%g", "/var/run/docker.sock"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn runtime_stage_is_the_same_in_both_dockerfiles() {
    let stage = |file: &str| {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        let at = text
            .find("# --- runtime stage")
            .unwrap_or_else(|| panic!("{file} has no runtime stage marker"));
        text[at..].to_string()
    };
    assert_eq!(stage("Dockerfile"), stage("deploy/Dockerfile.runtime"));
}

/// Socket mounted, non-root with the socket's group, read-only root filesystem: brings the
/// example project to its counts, restores a killed and a removed replica, never touches
/// its own container (labelled as if it were part of the project), turns healthy, serves
/// figures that match `docker ps`, and on `docker stop` exits 0 within 2 s leaving the
/// project running.
#[test]
fn as_a_non_root_container_with_the_socket_it_keeps_the_example_project() {
    let image = image();
    let p = example(&unique_name("it-obs-ctr"), local_env());
    let config = format!("{}:/config:ro", p.dir.display());
    let gid = socket_gid();
    let project_label = format!("drover.project={}", p.name);
    let c = Container::run(
        &format!("{}-drover", p.name),
        &[
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--group-add",
            &gid,
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "-v",
            &config,
            "-e",
            &format!("EXAMPLE_IMAGE={TEST_IMAGE}"),
            "-e",
            "DROVER_LISTEN=0.0.0.0:9477",
            "-p",
            "127.0.0.1::9477",
            // Labelled as a member of the project it manages: it must never act on itself.
            "--label",
            &project_label,
            "--label",
            "drover.service=web",
            "--label",
            "drover.slot=9",
            image,
            "run",
            "-p",
            &p.name,
            "--scale-file",
            "scale.yml",
            "--resync-interval",
            "1s",
        ],
    );
    let web =
        |p: &Project| p.running("web") - usize::from(c.inspect("{{.State.Running}}") == "true");
    c.eventually(UP, "3 web and 2 worker running", || {
        web(&p) == 3 && p.running("worker") == 2
    });

    // Non-root, with the socket's group, on a read-only root filesystem.
    assert_eq!(c.inspect("{{.Config.User}}"), format!("{UID}:{UID}"));
    assert_eq!(c.inspect("{{.HostConfig.ReadonlyRootfs}}"), "true");
    let pid = c.inspect("{{.State.Pid}}");
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ids = |key: &str| {
        proc_status
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert!(ids("Uid:").iter().all(|u| u == UID), "{proc_status}");
    assert!(ids("Groups:").contains(&gid), "{proc_status}");
    // No capability, and none to gain.
    for set in ["CapPrm:", "CapEff:", "CapBnd:"] {
        assert!(
            ids(set)
                .iter()
                .all(|c| c.trim_start_matches('0').is_empty()),
            "{set} {proc_status}"
        );
    }
    assert_eq!(ids("NoNewPrivs:"), ["1"], "{proc_status}");

    // A killed replica restarts; a removed one is recreated.
    let victim = p.containers(Some("worker"), Some("running"))[0].clone();
    let started = p.inspect(&victim, "{{.State.StartedAt}}");
    p.docker_ok(&["kill", &victim]);
    c.eventually(UP, "the killed worker running again", || {
        p.inspect(&victim, "{{.State.Running}}") == "true"
            && p.inspect(&victim, "{{.State.StartedAt}}") != started
    });
    let own = c.inspect("{{.Id}}");
    let gone = p
        .containers(Some("web"), Some("running"))
        .into_iter()
        .find(|id| *id != own)
        .unwrap();
    p.docker_ok(&["rm", "-f", &gone]);
    c.eventually(UP, "the removed web replica recreated", || {
        web(&p) == 3 && !p.containers(Some("web"), None).contains(&gone)
    });

    // HEALTHCHECK: the image's own, through `drover healthcheck`.
    assert_eq!(
        c.inspect("{{json .Config.Healthcheck.Test}}"),
        r#"["CMD","/drover","healthcheck"]"#
    );
    c.eventually(UP, "healthy", || {
        c.inspect("{{.State.Health.Status}}") == "healthy"
    });

    // /status knows its own container and was never tempted by its labels; /metrics
    // agrees with docker ps.
    let addr = c.http();
    let status: Status = serde_json::from_str(&get(addr, "/status").unwrap().1).unwrap();
    assert_eq!(status.container.as_deref(), Some(own.as_str()));
    assert!(status.ready, "{:?}", status.not_ready);
    c.eventually(UP, "metrics matching docker ps", || {
        let Some((200, m)) = get(addr, "/metrics") else {
            return false;
        };
        metric(&m, "drover_service_actual_replicas", "web") == Some(web(&p) as f64)
            && metric(&m, "drover_service_actual_replicas", "worker")
                == Some(p.running("worker") as f64)
            && metric(&m, "drover_service_desired_replicas", "web") == Some(3.0)
            && metric(&m, "drover_recreations_total", "web") == Some(1.0)
            && metric(&m, "drover_restarts_total", "worker") == Some(1.0)
    });
    assert_eq!(c.inspect("{{.RestartCount}}"), "0");
    let logs = c.logs();
    let touched_itself = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|e| e["container"].as_str() == Some(&own[..12]));
    assert!(!touched_itself, "{logs}");

    // docker stop: drover exits 0 on the SIGTERM itself (the engine's SIGKILL after the
    // grace period would make it 137), the project left running. How long it took is
    // printed, not asserted: on a loaded machine the engine's own stop varies.
    let before: Vec<String> = p.containers(None, Some("running"));
    let t = Instant::now();
    docker_ok(&local_env(), &["stop", "-t", "30", &c.name]);
    let took = t.elapsed();
    eprintln!("docker stop of drover's container took {took:?}");
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "0", "{}", c.logs());
    let after: Vec<String> = p.containers(None, Some("running"));
    assert_eq!(
        before
            .into_iter()
            .filter(|id| *id != own)
            .collect::<Vec<_>>(),
        after,
        "the project keeps running"
    );
    assert_eq!((p.running("web"), p.running("worker")), (3, 2));
}

/// No socket, only a TLS bundle volume made by deploy/tls-bundle.sh: the same drover
/// image manages a remote engine over TLS.
#[test]
fn with_only_a_tls_bundle_volume_it_keeps_a_project_on_a_tls_engine() {
    let image = image();
    let node = Node::start("obs-tls", 61);
    let p = example(&unique_name("it-obs-tls"), node.env());
    let volume = format!("{}-certs", p.name);
    let out = Command::new(repo_root().join("deploy/tls-bundle.sh"))
        .args([
            "--volume",
            &volume,
            "--image",
            image,
            "--local",
            support::local_engine(),
        ])
        .env_remove("DOCKER_CONTEXT")
        .envs(node.env())
        .output()
        .unwrap();
    assert!(out.status.success(), "tls-bundle.sh:\n{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(&format!("-e DOCKER_HOST={}", node.host)),
        "{printed}"
    );
    struct Volume(String);
    impl Drop for Volume {
        fn drop(&mut self) {
            let _ = docker(&local_env(), &["volume", "rm", "-f", &self.0]);
        }
    }
    let _volume = Volume(volume.clone());

    let config = format!("{}:/config:ro", p.dir.display());
    let certs = format!("{volume}:/certs:ro");
    let c = Container::run(
        &format!("{}-drover", p.name),
        &[
            "--read-only",
            "-v",
            &certs,
            "-v",
            &config,
            "-e",
            &format!("DOCKER_HOST={}", node.host),
            "-e",
            "DOCKER_TLS_VERIFY=1",
            "-e",
            "DOCKER_CERT_PATH=/certs",
            "-e",
            &format!("EXAMPLE_IMAGE={TEST_IMAGE}"),
            image,
            "run",
            "-p",
            &p.name,
            "--scale-file",
            "scale.yml",
        ],
    );
    assert!(c.inspect("{{json .Mounts}}").contains("/certs"));
    assert!(!c.inspect("{{json .Mounts}}").contains("docker.sock"));
    c.eventually(UP, "3 web and 2 worker on the TLS node", || {
        p.running("web") == 3 && p.running("worker") == 2
    });
    let victim = p.containers(Some("web"), Some("running"))[0].clone();
    let started = p.inspect(&victim, "{{.State.StartedAt}}");
    p.docker_ok(&["kill", &victim]);
    c.eventually(UP, "the killed replica running again", || {
        p.inspect(&victim, "{{.State.Running}}") == "true"
            && p.inspect(&victim, "{{.State.StartedAt}}") != started
    });
    let logs = c.logs();
    assert!(logs.contains("(tls)"), "{logs}");
    // Stopped before the node goes away, so it does not log the engine leaving.
    drop(c);
}

/// deploy/swarm/stack.yml on a one-node swarm (its own engine, a manager): drover runs as
/// the stack's one replica, keeps the project whole, and when its task's container is
/// removed Swarm starts a new one that carries on.
#[test]
fn the_swarm_stack_runs_drover_on_a_manager_and_swarm_replaces_it() {
    let image = image();
    let node = Node::start("obs-swarm", 63);
    let name = unique_name("it-obs-swarm");
    let on_node = |args: &[&str]| node.docker_ok(args);
    on_node(&["swarm", "init", "--advertise-addr", "10.231.63.2"]);
    // The image, as an operator would ship it to each manager.
    let saved = std::env::temp_dir().join(format!("{name}.tar"));
    std::fs::create_dir_all(saved.parent().unwrap()).unwrap();
    docker_ok(
        &local_env(),
        &["save", "-o", saved.to_str().unwrap(), image],
    );
    on_node(&["load", "-q", "-i", saved.to_str().unwrap()]);
    let _ = std::fs::remove_file(&saved);

    // The example project, with the offline image, as the stack's configs.
    let dir = repo_root().join("deploy/example");
    let compose = std::fs::read_to_string(dir.join("compose.yml"))
        .unwrap()
        .replace("${EXAMPLE_IMAGE:-busybox:1.36}", TEST_IMAGE);
    let p = Project::on(
        &name,
        &compose,
        vec![("DOCKER_HOST".into(), node.unix_host())],
    );
    p.write("scale.yml", "web: 2\nworker: 1\n");
    on_node(&[
        "config",
        "create",
        "drover-compose-v1",
        p.path("compose.yml").to_str().unwrap(),
    ]);
    on_node(&[
        "config",
        "create",
        "drover-scale-v1",
        p.path("scale.yml").to_str().unwrap(),
    ]);
    // The stack file as shipped, with this test's project name, image tag, and the node's
    // socket (all nodes share this machine's filesystem: /var/run/docker.sock is the
    // local engine's).
    let stack = std::fs::read_to_string(repo_root().join("deploy/swarm/stack.yml"))
        .unwrap()
        .replace(
            "source: /var/run/docker.sock",
            &format!("source: {}", node.socket.display()),
        )
        .replace(
            "\"--project-name\", \"example\"",
            &format!("\"--project-name\", \"{name}\""),
        )
        .replace("image: drover:local", &format!("image: {image}"));
    p.write("stack.yml", &stack);
    let gid = std::fs::metadata(&node.socket).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.gid().to_string()
    });
    let out = Command::new("docker")
        .args([
            "stack",
            "deploy",
            "-c",
            p.path("stack.yml").to_str().unwrap(),
            "drover",
        ])
        .env("DOCKER_HOST", node.unix_host())
        .env("DOCKER_GID", gid.unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "docker stack deploy:\n{}", text(&out));

    let task = || {
        node.docker_ok(&[
            "ps",
            "-q",
            "--filter",
            "label=com.docker.swarm.service.name=drover_drover",
        ])
    };
    let logs = || text(&node.docker(&["service", "logs", "drover_drover"]));
    let end = Instant::now() + UP;
    while task().is_empty() || p.running("web") != 2 || p.running("worker") != 1 {
        assert!(
            Instant::now() < end,
            "timed out waiting for drover's task and the project whole; service logs:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let first = task();
    let placed = node.docker_ok(&[
        "service",
        "inspect",
        "-f",
        "{{json .Spec.TaskTemplate.Placement}}",
        "drover_drover",
    ]);
    assert!(placed.contains("node.role == manager"), "{placed}");
    let user = node.docker_ok(&["inspect", "-f", "{{.Config.User}}", &first]);
    assert!(user.starts_with(&format!("{UID}:")), "{user}");

    // Swarm replaces a removed drover; the new one keeps the project whole.
    node.docker_ok(&["rm", "-f", &first]);
    support::wait_until(UP, "a new drover task", || {
        let t = task();
        !t.is_empty() && t != first
    });
    let victim = p.containers(Some("web"), Some("running"))[0].clone();
    p.docker_ok(&["rm", "-f", &victim]);
    support::wait_until(
        UP,
        "the removed replica recreated by the new drover",
        || p.running("web") == 2 && !p.containers(Some("web"), None).contains(&victim),
    );
    let _ = node.docker(&["stack", "rm", "drover"]);
}

/// The arguments of `docker run` that run drover as compose.example.yml does: non-root with
/// the socket's group, read-only, no capability, the project directory at /config.
fn as_the_example_runs(p: &Project) -> Vec<String> {
    [
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--group-add",
        &socket_gid(),
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-v",
        &format!("{}:/config:ro", p.dir.display()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `docker run --rm` of drover's image with `run_args`, then `args` for drover.
fn drover_once(run_args: &[String], args: &[&str]) -> std::process::Output {
    let mut all: Vec<&str> = vec!["run", "--rm"];
    all.extend(run_args.iter().map(String::as_str));
    all.push(image());
    all.extend(args);
    docker(&local_env(), &all)
}

/// The JSON log events of a drover container with this `action`.
fn events(c: &Container, action: &str) -> Vec<serde_json::Value> {
    c.logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["action"] == action)
        .collect()
}

/// A path the bug would have created on the host: drover's own path taken for the host's.
fn assert_not_on_host(path: &str) {
    assert!(
        !std::path::Path::new(path).exists(),
        "{path} exists on the host: a path inside drover's container was handed to the engine"
    );
}

/// The first running container of `service`.
fn replica(p: &Project, service: &str) -> String {
    p.containers(Some(service), Some("running"))[0].clone()
}

/// drover's image with the project mounted at /config: a relative file bind, a relative
/// directory bind and a secret file reach the service with the user's files, as the host
/// has them; `check` and `plan` show the host paths, the log says once which paths were
/// translated, `drover status` shows them, and nothing appears under /config on the host.
#[test]
fn in_a_container_relative_binds_name_the_hosts_paths() {
    let name = unique_name("it-obs-hp");
    let (conf, data) = (format!("site-{name}.conf"), format!("data-{name}"));
    let p = Project::new(
        &name,
        &format!(
            "services:\n  web:\n    image: {TEST_IMAGE}\n    stop_signal: SIGKILL\n    volumes:\n      \
             - ./{data}:/data\n      - ./{conf}:/etc/site.conf:ro\n    secrets: [token]\n\
             secrets:\n  token: {{file: ./token-{name}}}\n"
        ),
    );
    p.write(&conf, &format!("served by {name}\n"));
    p.write(&format!("token-{name}"), "not a real token\n");
    let host = |f: &str| format!("{}/{f}", p.dir.display());
    let run_args = as_the_example_runs(&p);

    let out = drover_once(&run_args, &["check", "-p", &name]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(&host(&conf)) && shown.contains(&host(&data)),
        "{shown}"
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("host path: /config/{conf} -> {}", host(&conf))),
        "{said}"
    );
    let out = drover_once(&run_args, &["plan", "-p", &name]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("host path: /config/{data} -> {}", host(&data))),
        "{}",
        text(&out)
    );

    let mut args = run_args.clone();
    args.extend([image().to_string(), "run".into(), "-p".into(), name.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Container::run(&format!("{name}-drover"), &args);
    c.eventually(UP, "web running", || p.running("web") == 1);
    let web = replica(&p, "web");
    assert_eq!(
        p.docker_ok(&["exec", &web, "cat", "/etc/site.conf"]),
        format!("served by {name}")
    );
    // The directory the engine created is the host's: a file written there shows inside.
    std::fs::write(p.path(&data).join("seen.txt"), "written on the host").unwrap();
    assert_eq!(
        p.docker_ok(&["exec", &web, "cat", "/data/seen.txt"]),
        "written on the host"
    );
    assert_eq!(
        p.docker_ok(&["exec", &web, "cat", "/run/secrets/token"]),
        "not a real token"
    );
    let sources = p.inspect(&web, "{{range .Mounts}}{{.Source}} {{end}}");
    assert!(
        sources.contains(&host(&data)) && sources.contains(&host(&conf)),
        "{sources}"
    );

    let said = events(&c, "host-paths");
    assert_eq!(said.len(), 1, "{}", c.logs());
    assert_eq!(said[0]["level"], "INFO");
    assert_eq!(said[0]["reason"], "container-mounts");
    let message = said[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("/config/{conf} -> {}", host(&conf))),
        "{message}"
    );
    let status = docker_ok(&local_env(), &["exec", &c.name, "/drover", "status"]);
    assert!(
        status.contains(&format!("host path: /config/{data} -> {}", host(&data))),
        "{status}"
    );
    assert_not_on_host(&format!("/config/{conf}"));
    assert_not_on_host(&format!("/config/{data}"));
    assert_not_on_host(&format!("/config/token-{name}"));
}

/// A relative bind that leaves drover's mounts names drover's own filesystem: `check`
/// exits 1 and `run` refuses to start, both with the entry's file:line:column and how to
/// fix it; an edit that adds one while drover runs is logged and the last good config
/// keeps running. The engine is never handed the path.
#[test]
fn in_a_container_a_bind_outside_its_mounts_is_refused_where_it_is_written() {
    let name = unique_name("it-obs-hp-out");
    let outside = format!("outside-{name}");
    let good = format!("services:\n  web:\n    image: {TEST_IMAGE}\n    stop_signal: SIGKILL\n");
    let bad = format!("{good}    volumes:\n      - ../{outside}:/x\n");
    let p = Project::new(&name, &bad);
    let run_args = as_the_example_runs(&p);
    let error = format!(
        "compose.yml:6:9: services.web.volumes[0]: /{outside} is in drover's own container"
    );

    let out = drover_once(&run_args, &["check", "-p", &name]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains(&error), "{said}");
    assert!(
        said.contains("mount that directory into drover at the same path")
            && said.contains("or use an absolute host path"),
        "{said}"
    );

    let mut args = run_args.clone();
    args.extend([image().to_string(), "run".into(), "-p".into(), name.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Container::run(&format!("{name}-drover"), &args);
    support::wait_until(UP, "drover refusing to start", || {
        c.inspect("{{.State.Running}}") == "false"
    });
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "1", "{}", c.logs());
    assert!(c.logs().contains(&error), "{}", c.logs());
    assert_eq!(p.containers(None, None), Vec::<String>::new());
    drop(c);

    p.write("compose.yml", &good);
    let c = Container::run(&format!("{name}-drover"), &args);
    c.eventually(UP, "web running", || p.running("web") == 1);
    let web = replica(&p, "web");
    p.write("compose.yml", &bad);
    c.eventually(UP, "the invalid edit logged", || {
        events(&c, "reload")
            .iter()
            .any(|e| e["error"].as_str().is_some_and(|m| m.contains(&error)))
    });
    assert_eq!(
        replica(&p, "web"),
        web,
        "the last good config keeps running"
    );
    assert_eq!(p.inspect(&web, "{{len .Mounts}}"), "0");
    assert_not_on_host(&format!("/{outside}"));
}

/// --host-project-dir (here DROVER_HOST_PROJECT_DIR) wins over drover's mounts: relative
/// binds resolve under the directory it names, and `check` shows that without any engine.
#[test]
fn with_host_project_dir_relative_binds_resolve_under_it() {
    let name = unique_name("it-obs-hp-dir");
    let conf = format!("site-{name}.conf");
    let p = Project::new(
        &name,
        &format!(
            "services:\n  web:\n    image: {TEST_IMAGE}\n    stop_signal: SIGKILL\n    volumes:\n      \
             - ./{conf}:/etc/site.conf:ro\n"
        ),
    );
    p.write(&conf, "drover's copy\n");
    // Another host directory with the same file: the one the override names.
    let other = p.path("host-side");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join(&conf), "the host's copy\n").unwrap();
    let env = format!("DROVER_HOST_PROJECT_DIR={}", other.display());

    // check with no socket at all: nothing to ask, the override says it.
    let config = format!("{}:/config:ro", p.dir.display());
    let no_engine: Vec<String> = ["--read-only", "-v", &config, "-e", &env]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = drover_once(&no_engine[..3], &["check", "-p", &name]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot ask the engine for its mounts"),
        "{}",
        text(&out)
    );
    let out = drover_once(&no_engine, &["check", "-p", &name]);
    assert!(out.status.success(), "{}", text(&out));
    let want = format!("{}/{conf}", other.display());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&want),
        "{}",
        text(&out)
    );

    let mut args = as_the_example_runs(&p);
    args.extend(["-e".into(), env.clone(), image().to_string()]);
    args.extend(["run".into(), "-p".into(), name.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Container::run(&format!("{name}-drover"), &args);
    c.eventually(UP, "web running", || p.running("web") == 1);
    let web = replica(&p, "web");
    assert_eq!(
        p.docker_ok(&["exec", &web, "cat", "/etc/site.conf"]),
        "the host's copy"
    );
    let said = events(&c, "host-paths");
    assert_eq!(said.len(), 1, "{}", c.logs());
    assert_eq!(said[0]["reason"], "host-project-dir");
    assert_not_on_host(&format!("/config/{conf}"));
}

/// The example project run as compose.example.yml runs it, with a user's override that
/// serves a directory of the project through a relative bind: every web replica serves
/// the host's files.
#[test]
fn the_example_in_a_container_serves_a_relative_bind_from_the_host() {
    let name = unique_name("it-obs-hp-ex");
    let www = format!("www-{name}");
    let p = example(&name, local_env());
    p.write(
        "compose.override.yml",
        &format!(
            "services:\n  web:\n    command: [httpd, -f, -p, '8080', -h, /www]\n    volumes: \
             ['./{www}:/www:ro']\n"
        ),
    );
    std::fs::create_dir_all(p.path(&www)).unwrap();
    std::fs::write(p.path(&www).join("index.html"), format!("example {name}\n")).unwrap();
    let mut args = as_the_example_runs(&p);
    args.extend(["-e".into(), format!("EXAMPLE_IMAGE={TEST_IMAGE}")]);
    args.extend([image().to_string(), "run".into(), "--project-name".into()]);
    args.extend([name.clone(), "--scale-file".into(), "scale.yml".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Container::run(&format!("{name}-drover"), &args);
    c.eventually(UP, "3 web and 2 worker running", || {
        p.running("web") == 3 && p.running("worker") == 2
    });
    for web in p.containers(Some("web"), Some("running")) {
        let page = p.docker_ok(&[
            "exec",
            &web,
            "sh",
            "-c",
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8080",
        ]);
        assert!(page.contains(&format!("example {name}")), "{page}");
    }
    assert_not_on_host(&format!("/config/{www}"));
}

/// deploy/swarm/stack.yml on a one-node swarm, changed as docs/operations.md says for a
/// project with relative binds: the project directory bound into drover (at /app) instead
/// of the configs, and `--mode swarm`. drover's Swarm service for the app mounts the host's
/// file, found through drover's own mounts.
#[test]
fn the_swarm_stack_in_swarm_mode_mounts_relative_binds_from_the_host() {
    let image = image();
    let node = Node::start("obs-hp-swarm", 64);
    let name = unique_name("it-obs-hp-sw");
    let conf = format!("site-{name}.conf");
    node.docker_ok(&["swarm", "init", "--advertise-addr", "10.231.64.2"]);
    let saved = std::env::temp_dir().join(format!("{name}.tar"));
    docker_ok(
        &local_env(),
        &["save", "-o", saved.to_str().unwrap(), image],
    );
    node.docker_ok(&["load", "-q", "-i", saved.to_str().unwrap()]);
    let _ = std::fs::remove_file(&saved);

    let p = Project::on(
        &name,
        &format!(
            "services:\n  web:\n    image: {TEST_IMAGE}\n    stop_signal: SIGKILL\n    volumes:\n      \
             - ./{conf}:/etc/site.conf:ro\n"
        ),
        vec![("DOCKER_HOST".into(), node.unix_host())],
    );
    p.write("scale.yml", "web: 1\n");
    p.write(&conf, &format!("swarm {name}\n"));
    // The stack's external configs must exist, though nothing reads them here.
    for c in ["drover-compose-v1", "drover-scale-v1"] {
        node.docker_ok(&["config", "create", c, p.path("scale.yml").to_str().unwrap()]);
    }
    let project_dir = format!(
        "        target: /var/run/docker.sock\n      - type: bind\n        source: {}\n        \
         target: /app\n        read_only: true\n",
        p.dir.display()
    );
    let stack = std::fs::read_to_string(repo_root().join("deploy/swarm/stack.yml"))
        .unwrap()
        .replace(
            "source: /var/run/docker.sock",
            &format!("source: {}", node.socket.display()),
        )
        .replace("        target: /var/run/docker.sock\n", &project_dir)
        .replace("\"--mode\", \"plain\"", "\"--mode\", \"swarm\"")
        .replace(
            "\"-f\", \"/config/compose.yml\", \"--scale-file\", \"/config/scale.yml\"",
            "\"-f\", \"/app/compose.yml\", \"--scale-file\", \"/app/scale.yml\"",
        )
        .replace(
            "\"--project-name\", \"example\"",
            &format!("\"--project-name\", \"{name}\""),
        )
        .replace("image: drover:local", &format!("image: {image}"));
    p.write("stack.yml", &stack);
    let gid = std::fs::metadata(&node.socket).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.gid().to_string()
    });
    let out = Command::new("docker")
        .args([
            "stack",
            "deploy",
            "-c",
            p.path("stack.yml").to_str().unwrap(),
            "drover",
        ])
        .env("DOCKER_HOST", node.unix_host())
        .env("DOCKER_GID", gid.unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "docker stack deploy:\n{}", text(&out));

    let logs = || text(&node.docker(&["service", "logs", "drover_drover"]));
    let service = format!("{name}_web");
    let task = || {
        let filter = format!("label=com.docker.swarm.service.name={service}");
        let ids = node.docker_ok(&["ps", "-q", "--filter", &filter]);
        ids.lines().next().map(str::to_string)
    };
    let end = Instant::now() + UP;
    while task().is_none() {
        assert!(
            Instant::now() < end,
            "timed out waiting for the app's task; drover's logs:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mounts = node.docker_ok(&[
        "service",
        "inspect",
        "-f",
        "{{range .Spec.TaskTemplate.ContainerSpec.Mounts}}{{.Source}} {{end}}",
        &service,
    ]);
    assert_eq!(mounts.trim(), format!("{}/{conf}", p.dir.display()));
    let id = task().unwrap();
    assert_eq!(
        node.docker_ok(&["exec", &id, "cat", "/etc/site.conf"]),
        format!("swarm {name}")
    );
    // `docker service logs` shows a task's lines with some delay.
    let translated = format!("/app/{conf} -> {}/{conf}", p.dir.display());
    support::wait_until(UP, "the host-paths event in drover's logs", || {
        let said = logs();
        said.contains("\"action\":\"host-paths\"") && said.contains(&translated)
    });
    assert_not_on_host(&format!("/app/{conf}"));
    let _ = node.docker(&["stack", "rm", "drover"]);
}

/// The project in a named volume at /config, and a host directory mounted over a
/// subdirectory of it: a relative bind under the volume maps to the volume's mountpoint on
/// the host, one under the nested mount to that mount's source (the longest wins).
#[test]
fn in_a_container_a_volume_at_config_and_a_nested_mount_map_to_their_host_paths() {
    let name = unique_name("it-obs-hp-vol");
    let conf = format!("site-{name}.conf");
    let p = Project::new(
        &name,
        &format!(
            "services:\n  web:\n    image: {TEST_IMAGE}\n    stop_signal: SIGKILL\n    volumes:\n      \
             - ./{conf}:/etc/site.conf:ro\n      - ./nested/note.txt:/etc/note.txt:ro\n"
        ),
    );
    p.write(&conf, "from the volume\n");
    let elsewhere = p.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("note.txt"), "from the nested mount\n").unwrap();

    struct Volume(String);
    impl Drop for Volume {
        fn drop(&mut self) {
            let _ = docker(&local_env(), &["volume", "rm", "-f", &self.0]);
        }
    }
    let volume = Volume(format!("{name}-config"));
    docker_ok(&local_env(), &["volume", "create", &volume.0]);
    let fill = format!(
        "/bin/busybox cp /src/compose.yml /src/{conf} /v/ && /bin/busybox mkdir -p /v/nested"
    );
    docker_ok(
        &local_env(),
        &[
            "run",
            "--rm",
            "-v",
            &format!("{}:/v", volume.0),
            "-v",
            &format!("{}:/src:ro", p.dir.display()),
            TEST_IMAGE,
            "sh",
            "-c",
            &fill,
        ],
    );
    let mountpoint = docker_ok(
        &local_env(),
        &["volume", "inspect", "-f", "{{.Mountpoint}}", &volume.0],
    );

    let c = Container::run(
        &format!("{name}-drover"),
        &[
            "--read-only",
            "--group-add",
            &socket_gid(),
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "-v",
            &format!("{}:/config:ro", volume.0),
            "-v",
            &format!("{}:/config/nested:ro", elsewhere.display()),
            image(),
            "run",
            "-p",
            &name,
        ],
    );
    c.eventually(UP, "web running", || p.running("web") == 1);
    let web = replica(&p, "web");
    assert_eq!(
        p.docker_ok(&["exec", &web, "cat", "/etc/site.conf"]),
        "from the volume"
    );
    assert_eq!(
        p.docker_ok(&["exec", &web, "cat", "/etc/note.txt"]),
        "from the nested mount"
    );
    let sources = p.inspect(&web, "{{range .Mounts}}{{.Source}} {{end}}");
    assert!(
        sources.contains(&format!("{mountpoint}/{conf}"))
            && sources.contains(&format!("{}/note.txt", elsewhere.display())),
        "{sources}"
    );
    assert_not_on_host(&format!("/config/{conf}"));
    drop(c);
}
