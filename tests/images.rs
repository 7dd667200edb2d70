//! Image tags drover follows: every `pull_policy` Compose defines, read as drover runs it;
//! and, against a real registry (Debian's docker-registry, started per test) and the local
//! engine, a tag pushed again rolls the service to the new digest, a broken one is rolled
//! back and refused until the tag moves, and a `docker pull` by hand followed by SIGHUP
//! rolls a service that does not follow its tag; in Swarm mode (a one-node swarm in a
//! network namespace), a pushed tag reaches the service spec and every task.
//!
//! Node indices 131..139 belong to this file.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use drover::config::{self, LoadOptions, PullPolicy};
use support::drover::{Drover, Project, eventually, eventually_with};
use support::registry::Registry;
use support::webhook::Receiver;
use support::{Node, TEST_IMAGE, docker_ok, local_env, unique_name};

// ---- pull_policy and x-drover.follow_images, as loaded ----

fn load(yaml: &str) -> Result<config::Loaded, String> {
    let dir = std::env::temp_dir().join(unique_name("drover-images-config"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yml"), yaml).unwrap();
    let r = config::load(&LoadOptions {
        files: vec![dir.join("compose.yml")],
        project_name: Some("pulls".into()),
        cwd: dir.clone(),
        ..Default::default()
    })
    .map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    r
}

fn policy(words: &str) -> Result<PullPolicy, String> {
    let l = load(&format!(
        "services:\n  web:\n    image: app:1\n    pull_policy: {words}\n"
    ))?;
    Ok(l.project.services["web"].options.pull_policy)
}

const DAY: Duration = Duration::from_secs(86_400);

#[test]
fn every_pull_policy_compose_defines_is_read() {
    assert_eq!(policy("always"), Ok(PullPolicy::Always));
    assert_eq!(policy("missing"), Ok(PullPolicy::Missing));
    assert_eq!(policy("if_not_present"), Ok(PullPolicy::Missing));
    assert_eq!(policy("never"), Ok(PullPolicy::Never));
    assert_eq!(policy("build"), Ok(PullPolicy::Build));
    assert_eq!(policy("daily"), Ok(PullPolicy::Refresh(DAY)));
    assert_eq!(policy("weekly"), Ok(PullPolicy::Refresh(7 * DAY)));
    assert_eq!(
        policy("every_12h"),
        Ok(PullPolicy::Refresh(Duration::from_secs(12 * 3600)))
    );
    assert_eq!(
        policy("every_1h30m"),
        Ok(PullPolicy::Refresh(Duration::from_secs(5400)))
    );
    let err = policy("every_0s").unwrap_err();
    assert!(err.contains("services.web.pull_policy"), "{err}");
    let err = policy("hourly").unwrap_err();
    assert!(err.contains("every_<duration>"), "{err}");
}

#[test]
fn refresh_takes_its_window_from_pull_refresh_after_and_is_missing_without_one() {
    let l = load(
        "services:\n  web:\n    image: app:1\n    pull_policy: refresh\n    pull_refresh_after: 10m\n",
    )
    .unwrap();
    assert_eq!(
        l.project.services["web"].options.pull_policy,
        PullPolicy::Refresh(Duration::from_secs(600))
    );
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let l = load("services:\n  web:\n    image: app:1\n    pull_policy: refresh\n").unwrap();
    assert_eq!(
        l.project.services["web"].options.pull_policy,
        PullPolicy::Missing
    );
    assert!(
        l.warnings[0].contains("refresh without a pull_refresh_after window"),
        "{:?}",
        l.warnings
    );
}

#[test]
fn follow_images_makes_services_without_a_policy_follow_and_leaves_the_others() {
    let l = load(
        "x-drover:\n  follow_images: every_5m\nservices:\n  web:\n    image: app:1\n  \
         pinned:\n    image: app:1\n    pull_policy: never\n  own:\n    image: app:1\n    \
         pull_policy: daily\n",
    )
    .unwrap();
    let s = &l.project.services;
    assert_eq!(
        s["web"].options.pull_policy,
        PullPolicy::Refresh(Duration::from_secs(300))
    );
    assert_eq!(s["pinned"].options.pull_policy, PullPolicy::Never);
    assert_eq!(s["own"].options.pull_policy, PullPolicy::Refresh(DAY));
}

#[test]
fn the_pull_policy_is_not_part_of_the_definition() {
    let a = load("services:\n  web:\n    image: app:1\n").unwrap();
    let b = load("services:\n  web:\n    image: app:1\n    pull_policy: every_1m\n").unwrap();
    assert_eq!(
        a.project.services["web"].config_hash, b.project.services["web"].config_hash,
        "turning following on does not recreate the replicas"
    );
}

// ---- against a registry ----

/// A local image built from the offline test image with `cmd` as its command; `rev`
/// makes its digest its own. Returns its local name.
fn build(rev: &str, cmd: &str) -> String {
    let tag = format!("drover-test/follow:{}", unique_name(rev));
    let dir = std::env::temp_dir().join(unique_name("drover-build"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM {TEST_IMAGE}\nLABEL drover.test.rev=\"{rev}\"\nCMD [\"/bin/sh\", \"-c\", \"{cmd}\"]\n"
        ),
    )
    .unwrap();
    docker_ok(
        &local_env(),
        &["build", "-q", "-t", &tag, &dir.display().to_string()],
    );
    let _ = std::fs::remove_dir_all(&dir);
    tag
}

/// Push the local image `local` as `name` (a tag in the registry) and drop both names from
/// the engine; returns the digest the registry holds.
fn publish(local: &str, name: &str) -> String {
    let env = local_env();
    docker_ok(&env, &["tag", local, name]);
    let out = docker_ok(&env, &["push", name]);
    let digest = out
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in the push output:\n{out}"))
        .to_string();
    docker_ok(&env, &["rmi", name, local]);
    digest
}

/// A healthy image: it marks itself ready, then waits.
const GOOD: &str = "echo ok > /ok; exec sleep 86400";
/// An image that runs but never becomes healthy.
const NEVER_HEALTHY: &str = "exec sleep 86400";

/// The digest label of each running replica of `web`, and how many of them are healthy.
fn replicas(p: &Project) -> (Vec<String>, usize) {
    let base = [
        "ps",
        "--filter",
        &format!("label=drover.project={}", p.name),
        "--filter",
        "label=drover.service=web",
        "--filter",
        "status=running",
    ]
    .map(String::from);
    let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
    args.extend(["--format", "{{.Label \"drover.image-digest\"}} {{.Status}}"]);
    let out = p.docker(&args);
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let healthy = lines.iter().filter(|l| l.contains("(healthy)")).count();
    let digests = lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    (digests, healthy)
}

fn all_on(p: &Project, digest: &str, n: usize) -> bool {
    let (digests, healthy) = replicas(p);
    digests.len() == n && digests.iter().all(|d| d == digest) && healthy == n
}

/// The `image` decisions drover logged with `reason` (an unchanged tag is not logged at
/// INFO).
fn image_lines(d: &Drover, reason: &str) -> usize {
    d.actions("image")
        .iter()
        .filter(|e| e["reason"] == reason)
        .count()
}

fn compose(image: &str, policy: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n{policy}    scale: 3\n    stop_signal: SIGKILL\n    \
         healthcheck:\n      test: [\"CMD\", \"sh\", \"-c\", \"test -f /ok\"]\n      \
         interval: 1s\n      timeout: 1s\n      retries: 1\n    deploy:\n      \
         update_config: {{ order: start-first, monitor: 2s, failure_action: rollback }}\n"
    )
}

/// Watch `web` until `done`, sampling the running replicas: the lowest count seen (all
/// running, and healthy) and how long it took.
fn watch(p: &Project, deadline: Duration, done: impl Fn() -> bool) -> (usize, usize, Duration) {
    let start = Instant::now();
    let (mut low, mut low_healthy) = (usize::MAX, usize::MAX);
    loop {
        let (digests, healthy) = replicas(p);
        low = low.min(digests.len());
        low_healthy = low_healthy.min(healthy);
        if done() {
            return (low, low_healthy, start.elapsed());
        }
        assert!(
            start.elapsed() < deadline,
            "not done within {deadline:?}; replicas now {digests:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_pushed_tag_rolls_every_replica_start_first_and_a_broken_one_is_rolled_back_and_refused() {
    let r = Registry::open();
    let name = r.image(&format!("{}:live", unique_name("follow")));
    let v1 = publish(&build("v1", GOOD), &name);
    // A webhook receiver (it refuses its first request, as a flaky receiver would).
    let hook = Receiver::start();
    let hooks = "x-drover:\n  notify:\n    - url_file: hook.url\n      events: [image-followed, rollback]\n";
    let p = Project::new(
        &unique_name("imgfollow"),
        &format!("{hooks}{}", compose(&name, "    pull_policy: every_3s\n")),
    );
    p.write(
        "hook.url",
        &format!("http://127.0.0.1:{}/hooks\n", hook.port),
    );
    let d = p.run(&["--listen", "off", "--lease-ttl", "0s"]);
    eventually(Duration::from_secs(90), "3 healthy replicas on v1", || {
        all_on(&p, &v1, 3)
    });

    // A new image under the same tag: every replica runs it within the check interval
    // plus the rollout, never fewer than 3 running (start-first).
    let image = build("v2", GOOD);
    let pushed = Instant::now();
    let v2 = publish(&image, &name);
    let (low, low_healthy, _) = watch(&p, Duration::from_secs(90), || all_on(&p, &v2, 3));
    eprintln!(
        "docker push started to all 3 replicas on the new digest: {:.1} s (checks every 3 s); fewest running {low}, fewest healthy {low_healthy}",
        pushed.elapsed().as_secs_f64()
    );
    assert!(low >= 3, "fewest running replicas during the roll: {low}");
    assert!(
        low_healthy >= 3,
        "fewest healthy replicas during the roll: {low_healthy}"
    );
    let moved = d.actions("image");
    assert!(
        moved
            .iter()
            .any(|e| e["reason"] == "tag-moved" && e["desired"] == v2.as_str()),
        "{moved:?}"
    );

    // Nothing moved: a check asks for the manifest and downloads no layer.
    let before = r.log().lines().count();
    let seen = image_lines(&d, "tag-moved");
    let manifests = count_manifests(&r, 0);
    eventually(Duration::from_secs(20), "two more checks", || {
        count_manifests(&r, 0) >= manifests + 4
    });
    let since: Vec<String> = r.log().lines().skip(before).map(str::to_string).collect();
    let done: Vec<&String> = since
        .iter()
        .filter(|l| l.contains("response completed"))
        .collect();
    let blobs = done.iter().filter(|l| l.contains("/blobs/")).count();
    eprintln!(
        "registry requests over two idle checks: {} ({} manifest, {blobs} blob: the manifest's config, no layer)",
        done.len(),
        done.iter().filter(|l| l.contains("/manifests/")).count()
    );
    assert!(blobs <= 2, "no layer is downloaded: {done:#?}");
    assert_eq!(image_lines(&d, "tag-moved"), seen, "nothing moved");

    // A broken image under the same tag: its new replica never turns healthy, the roll is
    // undone, and the digest is refused at every later check.
    let v3 = publish(&build("v3", NEVER_HEALTHY), &name);
    eventually(
        Duration::from_secs(90),
        "the broken digest rolled back",
        || !d.actions("rollback").is_empty(),
    );
    eventually(Duration::from_secs(90), "all back on v2", || {
        all_on(&p, &v2, 3)
    });
    eventually(Duration::from_secs(30), "the broken digest refused", || {
        image_lines(&d, "failed-before") >= 1
    });
    let created_v3 = |d: &Drover| {
        d.actions("start-first")
            .iter()
            .chain(d.actions("create").iter())
            .filter(|e| e["service"] == "web")
            .count()
    };
    let creates = created_v3(&d);
    let refused_checks = count_manifests(&r, 0);
    eventually(Duration::from_secs(30), "three more checks", || {
        count_manifests(&r, 0) >= refused_checks + 3
    });
    assert_eq!(
        created_v3(&d),
        creates,
        "the refused digest is not tried again"
    );
    let (digests, _) = replicas(&p);
    assert!(digests.iter().all(|x| *x == v2), "{digests:?} (v3 {v3})");

    // The tag moves on: the next digest is tried.
    let v4 = publish(&build("v4", GOOD), &name);
    eventually(Duration::from_secs(90), "all on v4", || all_on(&p, &v4, 3));
    // The webhook heard each followed tag and the rollback once (the first start is not
    // news); the refused digest's checks said nothing.
    eventually(Duration::from_secs(30), "the webhook told", || {
        hook.said("web").len() >= 4
    });
    let said = hook.said("web");
    assert_eq!(
        said,
        [
            "image-followed image-updated",
            "image-followed image-updated",
            "rollback update-failed",
            "image-followed image-updated",
        ],
        "{:?}",
        hook.taken()
    );
    drop(d);
}

/// Requests for manifests in the registry's log after line `skip`.
fn count_manifests(r: &Registry, skip: usize) -> usize {
    r.log()
        .lines()
        .skip(skip)
        .filter(|l| l.contains("response completed") && l.contains("/manifests/"))
        .count()
}

#[test]
fn a_tag_pulled_by_hand_and_a_sighup_roll_a_service_that_does_not_follow() {
    let r = Registry::open();
    let name = r.image(&format!("{}:manual", unique_name("manual")));
    let v1 = publish(&build("m1", GOOD), &name);
    let p = Project::new(&unique_name("imgmanual"), &compose(&name, ""));
    let d = p.run(&["--listen", "off", "--lease-ttl", "0s"]);
    eventually(Duration::from_secs(90), "3 healthy replicas on v1", || {
        all_on(&p, &v1, 3)
    });
    let v2 = publish(&build("m2", GOOD), &name);
    docker_ok(&local_env(), &["pull", &name]);
    d.signal("HUP");
    let (low, _, took) = watch(&p, Duration::from_secs(90), || all_on(&p, &v2, 3));
    eprintln!(
        "SIGHUP to all 3 replicas on the pulled digest: {:.1} s",
        took.as_secs_f64()
    );
    assert!(low >= 3, "fewest running replicas during the roll: {low}");
    let lines = d.actions("image");
    assert!(
        lines
            .iter()
            .any(|e| e["source"] == "engine" && e["desired"] == v2.as_str()),
        "{lines:?}"
    );
    let images: HashMap<String, String> = p
        .running_names("web")
        .into_iter()
        .map(|n| {
            let image = p.inspect(&n, "{{.Config.Image}}");
            (n, image)
        })
        .collect();
    assert!(
        images.values().all(|i| *i == format!("{name}@{v2}")),
        "{images:?}"
    );
}

/// The image of Swarm service `name`'s spec, and the images its running tasks run (from
/// the tasks' specs: `docker service ps` shows them without the digest).
fn swarm_images(node: &Node, name: &str) -> (String, Vec<String>) {
    let inspect = |args: &[&str]| String::from_utf8_lossy(&node.docker(args).stdout).to_string();
    let spec = inspect(&[
        "service",
        "inspect",
        "-f",
        "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        name,
    ]);
    let tasks = inspect(&[
        "service",
        "ps",
        name,
        "-q",
        "--filter",
        "desired-state=running",
    ]);
    let running = tasks
        .lines()
        .filter_map(|id| {
            let line = inspect(&[
                "inspect",
                "-f",
                "{{.Status.State}} {{.Spec.ContainerSpec.Image}}",
                id,
            ]);
            let (state, image) = line.trim().split_once(' ')?;
            (state == "running").then(|| image.to_string())
        })
        .collect();
    (spec.trim().to_string(), running)
}

#[test]
fn in_swarm_mode_a_pushed_tag_reaches_the_service_spec_and_every_task() {
    let node = Node::start("imgswarm", 131);
    let ip: std::net::IpAddr = format!("10.231.{}.1", node.index).parse().unwrap();
    let r = Registry::open_tls(ip);
    let name = r.image(&format!("{}:live", unique_name("swfollow")));
    let v1 = publish(&build("s1", GOOD), &name);
    let addr = format!("10.231.{}.2", node.index);
    node.docker_ok(&["swarm", "init", "--advertise-addr", &addr]);
    let compose = compose(&name, "    pull_policy: every_3s\n").replace("scale: 3", "scale: 2");
    let p = Project::on(&unique_name("imgswarm"), &compose, node.env());
    let service = format!("{}_web", p.name);
    let mut d = p.run(&["--listen", "off", "--mode", "swarm"]);
    let on = |digest: &str| {
        let want = format!("{name}@{digest}");
        let (spec, tasks) = swarm_images(&node, &service);
        spec == want && tasks.len() == 2 && tasks.iter().all(|t| *t == want)
    };
    eventually_with(&mut d, Duration::from_secs(120), "2 tasks on v1", |_| {
        on(&v1)
    });
    let image = build("s2", GOOD);
    let start = Instant::now();
    let v2 = publish(&image, &name);
    eventually_with(&mut d, Duration::from_secs(120), "2 tasks on v2", |_| {
        on(&v2)
    });
    eprintln!(
        "swarm: docker push started to 2 tasks on the new digest: {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let moved = d.actions("image");
    assert!(
        moved
            .iter()
            .any(|e| e["reason"] == "tag-moved" && e["desired"] == v2.as_str()),
        "{moved:?}"
    );
    let updates = d.actions("update");
    assert_eq!(updates.len(), 1, "one update, for v2: {updates:#?}");
    drop(d);
    let _ = node.docker(&["swarm", "leave", "--force"]);
}
