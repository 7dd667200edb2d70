//! Images from a private registry (Debian's docker-registry with htpasswd auth; plain HTTP
//! on loopback, TLS with a test CA for the nodes), pulled with the logins of a
//! `DOCKER_CONFIG` as the Docker CLI finds them: an image a `docker login` pushed, run on
//! first start with no tag listing; a missing login or a wrong password is one line and the
//! other services run, and fixing the file is picked up without a restart; a `credsStore` helper; a tag
//! with a digest pulls the digest; Swarm services created with the login run on a node
//! that lacks the image; a replica moved to a node that never had the image pulls it there.
//!
//! Every test has its own project and registry; node indices 121..129 belong to this file.

mod support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use support::drover::{Drover, Project, eventually_with};
use support::registry::{PASSWORD, Registry, USER};
use support::{Node, TEST_IMAGE, local_env, unique_name};

const UP: Duration = Duration::from_secs(60);

/// What the registry logs for a request that came with a valid login.
const AUTHORIZED: &str = "msg=\"authorized request\"";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A registry with [`TEST_IMAGE`] pushed as `{repo}:latest` from the engine `engine_env`
/// names (and removed there): the registry, the login's `DOCKER_CONFIG` and the image name
/// (no tag).
fn pushed(r: Registry, engine_env: &[(String, String)], repo: &str) -> (Registry, PathBuf, String) {
    let config = r.dir.join("client");
    r.login(engine_env, &config);
    let image = r.push(engine_env, &config, TEST_IMAGE, &unique_name(repo));
    (r, config, image)
}

fn service(name: &str, image: &str, replicas: u32) -> String {
    format!(
        "  {name}:\n    image: {image}\n    command: [\"sleep\", \"86400\"]\n    stop_signal: SIGKILL\n    deploy: {{ replicas: {replicas} }}\n"
    )
}

/// The project's engine plus `DOCKER_CONFIG`.
fn with_config(mut env: Vec<(String, String)>, config: &Path) -> Vec<(String, String)> {
    env.push(("DOCKER_CONFIG".into(), config.display().to_string()));
    env
}

/// A command run inside a running container of `service` answers: the image really runs.
fn answers_inside(p: &Project, service: &str) -> bool {
    p.containers(Some(service), Some("running"))
        .first()
        .is_some_and(|id| {
            let out = p.docker(&["exec", id, "sh", "-c", "echo inside-$((6*7))"]);
            String::from_utf8_lossy(&out.stdout).trim() == "inside-42"
        })
}

/// No log line carries the password or the `auth` value of the login.
fn assert_no_secret(d: &Drover, secrets: &[&str]) {
    for line in d.logs() {
        for s in secrets {
            assert!(!line.contains(s), "a secret in a log line: {line}");
        }
    }
}

#[test]
fn a_private_image_is_pulled_on_first_start_as_latest_without_listing_tags() {
    let (r, config, image) = pushed(Registry::http(), &local_env(), "first");
    let compose = format!("services:\n{}", service("app", &image, 2));
    let p = Project::on("it-reg-first", &compose, with_config(local_env(), &config));
    assert!(
        !p.docker(&["image", "inspect", &image]).status.success(),
        "the engine lacks the image: the start must pull it"
    );
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "2 app replicas running", |_| {
        p.running("app") == 2
    });
    assert!(answers_inside(&p, "app"));
    let id = &p.containers(Some("app"), Some("running"))[0];
    assert_eq!(p.inspect(id, "{{.Config.Image}}"), image);
    let repo = image.split_once('/').unwrap().1;
    let pulls = r.requests(&format!("/v2/{repo}/manifests/latest"));
    assert!(
        pulls.iter().any(|l| l.contains(AUTHORIZED)),
        "the pull asked for latest, logged in:\n{}",
        r.log()
    );
    assert_eq!(
        r.requests("/tags/list"),
        Vec::<String>::new(),
        "no tag listing"
    );
    assert_no_secret(&d, &[PASSWORD, &b64(&format!("{USER}:{PASSWORD}"))]);
}

#[test]
fn a_missing_or_wrong_login_is_one_line_the_other_services_run_and_a_fixed_file_is_used() {
    let (r, good, image) = pushed(Registry::http(), &local_env(), "wrong");
    let bad = r.dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let wrong = "not-the-Pa55word";
    let wrong_auth = b64(&format!("{USER}:{wrong}"));
    let compose = format!(
        "services:\n{}{}",
        service("app", &image, 1),
        service("other", TEST_IMAGE, 2)
    );
    // First no config.json at all: the engine's "no basic auth credentials", worded.
    let p = Project::on("it-reg-wrong", &compose, with_config(local_env(), &bad));
    let mut d = p.run(&["--backoff-max", "2s"]);
    let path = bad.join("config.json").display().to_string();
    let none = format!(
        "registry {} wants a login and drover has none for it: {path} does not exist",
        r.host
    );
    let said = |d: &Drover, what: &str| {
        d.events().into_iter().find(|e| {
            e["service"] == "app" && e["error"].as_str().is_some_and(|m| m.contains(what))
        })
    };
    eventually_with(
        &mut d,
        UP,
        "other running and the missing login said",
        |d| p.running("other") == 2 && said(d, &none).is_some(),
    );
    eprintln!("no login, as said: {}", said(&d, &none).unwrap()["error"]);

    // Then a wrong password: read at the next pull.
    std::fs::write(
        bad.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{wrong_auth}"}}}}}}"#,
            r.host
        ),
    )
    .unwrap();
    let expected = format!(
        "registry {} refused the login from auths[\"{}\"] in {path}",
        r.host, r.host
    );
    eventually_with(&mut d, UP, "other running and the refusal said", |d| {
        p.running("other") == 2
            && d.events().iter().any(|e| {
                e["service"] == "app" && e["error"].as_str().is_some_and(|m| m.contains(&expected))
            })
    });
    assert!(answers_inside(&p, "other"));
    assert_eq!(p.running("app"), 0);
    eprintln!(
        "the refusal, as said: {}",
        said(&d, &expected).unwrap()["error"]
    );
    assert_no_secret(&d, &[wrong, &wrong_auth, PASSWORD]);

    // The file fixed (as `docker login` rewrites it): used at the next pull, no restart.
    let fixed = std::fs::read(good.join("config.json")).unwrap();
    std::fs::write(bad.join(".config.json.tmp"), fixed).unwrap();
    std::fs::rename(bad.join(".config.json.tmp"), bad.join("config.json")).unwrap();
    eventually_with(&mut d, UP, "app running with the fixed login", |_| {
        p.running("app") == 1
    });
    assert!(answers_inside(&p, "app"));
    assert_eq!(p.running("other"), 2);
}

#[test]
fn a_creds_store_helper_on_path_gives_the_login() {
    use std::os::unix::fs::PermissionsExt;
    let (r, _, image) = pushed(Registry::http(), &local_env(), "helper");
    let dir = r.dir.join("helper");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let asked = dir.join("asked.log");
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread server\necho \"$server\" >> {asked}\n\
         if [ \"$server\" = \"{host}\" ]; then\n  \
         printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n\
         else\n  echo 'credentials not found in native keychain'; exit 1\nfi\n",
        asked = asked.display(),
        host = r.host
    );
    let helper = dir.join("bin/docker-credential-test");
    std::fs::write(&helper, script).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"credsStore": "test"}"#).unwrap();
    let mut env = with_config(local_env(), &dir);
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    env.push(("PATH".into(), path));
    let compose = format!("services:\n{}", service("app", &image, 1));
    let p = Project::on("it-reg-helper", &compose, env);
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "app running", |_| p.running("app") == 1);
    assert!(answers_inside(&p, "app"));
    let asked = std::fs::read_to_string(&asked).unwrap_or_default();
    assert!(
        asked.lines().any(|l| l == r.host),
        "helper asked for {}: {asked:?}",
        r.host
    );
    assert_no_secret(&d, &[PASSWORD]);
}

#[test]
fn a_tag_with_a_digest_pulls_the_digest() {
    let (r, config, image) = pushed(Registry::http(), &local_env(), "digest");
    let repo = image.split_once('/').unwrap().1;
    let digest = r.digest(repo, "latest");
    // The tag does not exist in the registry: only the digest can be pulled.
    let named = format!("{image}:no-such-tag@{digest}");
    let compose = format!("services:\n{}", service("app", &named, 1));
    let p = Project::on("it-reg-digest", &compose, with_config(local_env(), &config));
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "app running from the digest", |_| {
        p.running("app") == 1
    });
    assert!(answers_inside(&p, "app"));
    assert!(
        !r.requests(&format!("/manifests/{digest}")).is_empty(),
        "the digest was asked for:\n{}",
        r.log()
    );
    assert_eq!(r.requests("/manifests/no-such-tag"), Vec::<String>::new());
    assert_eq!(r.requests("/tags/list"), Vec::<String>::new());
}

/// The host-side address of `node`'s link (`10.231.N.1`): this machine's, reachable from
/// the node's namespace.
fn host_side(node: &Node) -> IpAddr {
    format!("10.231.{}.1", node.index).parse().unwrap()
}

fn node_ip(node: &Node) -> String {
    format!("10.231.{}.2", node.index)
}

#[test]
fn swarm_services_created_with_the_login_run_on_a_node_that_lacks_the_image() {
    let m = Node::start("reg-swarm", 121);
    let node_env = vec![("DOCKER_HOST".to_string(), m.unix_host())];
    // The node pushes to a registry on its link's host side, over TLS (an engine allows
    // plain HTTP only to loopback, and the node's loopback is its own).
    let (r, config, image) = pushed(Registry::tls(host_side(&m)), &node_env, "swarm");
    // Nothing of the image left on the node: layers must come from the registry.
    m.docker_ok(&["rmi", TEST_IMAGE]);
    assert!(!m.docker(&["image", "inspect", &image]).status.success());
    m.docker_ok(&["swarm", "init", "--advertise-addr", &node_ip(&m)]);
    let compose = format!(
        "x-drover:\n  mode: swarm\nservices:\n{}",
        service("app", &image, 1)
    );
    let p = Project::on("it-reg-swarm", &compose, with_config(m.env(), &config));
    let mut d = p.run(&[]);
    let name = format!("{}_app", p.name);
    let running = |m: &Node| {
        let out = m.docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={name}"),
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .map(str::to_string)
    };
    eventually_with(&mut d, UP, "the Swarm task running", |_| {
        running(&m).is_some()
    });
    let id = running(&m).unwrap();
    let inside = m.docker_ok(&["exec", &id, "sh", "-c", "echo inside-$((6*7))"]);
    assert_eq!(inside, "inside-42");
    let blobs: Vec<String> = r
        .requests_from(&node_ip(&m))
        .into_iter()
        .filter(|l| {
            l.contains("/blobs/sha256:") && l.contains("method=GET") && l.contains(AUTHORIZED)
        })
        .collect();
    assert!(
        !blobs.is_empty(),
        "the node fetched the layers itself:\n{}",
        r.log()
    );
    assert_no_secret(&d, &[PASSWORD, &b64(&format!("{USER}:{PASSWORD}"))]);
    drop(d);
    let _ = Command::new("docker")
        .env("DOCKER_HOST", m.unix_host())
        .args(["service", "rm", &name])
        .output();
}

#[test]
fn a_swarm_task_that_cannot_pull_is_said_with_the_registry_and_the_login_sent() {
    let m = Node::start("reg-swarm-bad", 124);
    let node_env = vec![("DOCKER_HOST".to_string(), m.unix_host())];
    let (r, _, image) = pushed(Registry::tls(host_side(&m)), &node_env, "swbad");
    m.docker_ok(&["rmi", TEST_IMAGE]);
    m.docker_ok(&["swarm", "init", "--advertise-addr", &node_ip(&m)]);
    let bad = r.dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let wrong = b64(&format!("{USER}:not-the-Pa55word"));
    std::fs::write(
        bad.join("config.json"),
        format!(r#"{{"auths": {{"{}": {{"auth": "{wrong}"}}}}}}"#, r.host),
    )
    .unwrap();
    let compose = format!(
        "x-drover:\n  mode: swarm\nservices:\n{}",
        service("app", &image, 1)
    );
    let p = Project::on("it-reg-swbad", &compose, with_config(m.env(), &bad));
    let path = bad.join("config.json").display().to_string();
    let expected = format!(
        "the node could not pull it from {} with the login drover sent, from auths[\"{}\"] in {path}",
        r.host, r.host
    );
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "the task error said with the login", |d| {
        d.actions("task_error").iter().any(|e| {
            e["service"] == "app" && e["reason"].as_str().is_some_and(|m| m.contains(&expected))
        })
    });
    let line = d
        .actions("task_error")
        .into_iter()
        .find(|e| e["service"] == "app")
        .unwrap();
    eprintln!("a task that could not pull, as said: {}", line["reason"]);
    assert_no_secret(&d, &[&wrong, "not-the-Pa55word", PASSWORD]);
    drop(d);
    let _ = Command::new("docker")
        .env("DOCKER_HOST", m.unix_host())
        .args(["service", "rm", &format!("{}_app", p.name)])
        .output();
}

#[test]
fn a_replica_moved_to_a_node_that_never_had_the_image_pulls_it_with_the_login() {
    let (a, b) = (Node::start("reg-na", 122), Node::start("reg-nb", 123));
    // Node b reaches the registry on a's link through the host.
    let ns = format!("--net=/var/run/netns/drover-{}", b.name);
    let via = format!("10.231.{}.1", b.index);
    let to = format!("10.231.{}.1/32", a.index);
    let ok = Command::new("nsenter")
        .args([ns.as_str(), "ip", "route", "replace", &to, "via", &via])
        .status()
        .unwrap()
        .success();
    assert!(ok, "a route from node b to the registry");
    let (r, config, image) = pushed(Registry::tls(host_side(&a)), &local_env(), "moved");
    for n in [&a, &b] {
        assert!(!n.docker(&["image", "inspect", &image]).status.success());
    }
    let mut compose = format!("services:\n{}", service("app", &image, 1));
    compose.push_str("x-drover:\n  nodes:\n");
    for n in [&a, &b] {
        compose.push_str(&format!(
            "    - name: {}\n      host: {}\n      tls: {{ cert_path: {} }}\n",
            n.name,
            n.host,
            n.cert_dir.display()
        ));
    }
    let p = Project::on("it-reg-moved", &compose, with_config(a.env(), &config));
    let mut d = p.run(&[]);
    let on = |n: &Node| {
        let out = n.docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=drover.project={}", p.name),
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .map(str::to_string)
    };
    eventually_with(&mut d, UP, "the replica running on a node", |_| {
        on(&a).is_some() || on(&b).is_some()
    });
    let (first, other) = if on(&a).is_some() { (&a, &b) } else { (&b, &a) };
    assert!(
        !other.docker(&["image", "inspect", &image]).status.success(),
        "the other node never had the image"
    );
    first.kill();
    eventually_with(&mut d, UP, "the replica moved to the other node", |_| {
        on(other).is_some()
    });
    let id = on(other).unwrap();
    let inside = other.docker_ok(&["exec", &id, "sh", "-c", "echo inside-$((6*7))"]);
    assert_eq!(inside, "inside-42");
    let repo = image.split_once('/').unwrap().1;
    let pulled: Vec<String> = r
        .requests_from(&node_ip(other))
        .into_iter()
        .filter(|l| l.contains(&format!("/v2/{repo}/manifests/latest")) && l.contains(AUTHORIZED))
        .collect();
    assert!(
        !pulled.is_empty(),
        "node {} pulled the image, logged in:\n{}",
        other.name,
        r.log()
    );
    assert_no_secret(&d, &[PASSWORD, &b64(&format!("{USER}:{PASSWORD}"))]);
}

#[test]
fn the_test_registry_takes_a_login_and_a_push_over_http_and_tls() {
    for r in [
        Registry::http(),
        Registry::tls(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
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
