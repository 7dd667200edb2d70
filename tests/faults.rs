//! Faults against real engines: drover killed mid-operation, engines restarted, event
//! streams cut or silent, API errors and stalls, a second drover, containers removed
//! behind drover's back and foreign look-alikes. After each: exactly the target, no slot
//! twice once settled, nothing without the project's label touched.
//!
//! Projects are named `it-flt-*`; nodes use indices 91..99.

#[path = "support/proxy.rs"]
mod proxy;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proxy::{Mode, Proxy};
use support::Node;
use support::drover::{Drover, Project, eventually, eventually_with};

const UP: Duration = Duration::from_secs(90);

fn web(replicas: u32) -> String {
    format!(
        r#"
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    deploy:
      replicas: {replicas}
"#
    )
}

/// Every container of the project (any state) by slot: each slot must appear once.
fn slots(p: &Project, service: &str) -> BTreeMap<u32, usize> {
    let mut by_slot = BTreeMap::new();
    for id in p.containers(Some(service), None) {
        let slot: u32 = p
            .inspect(&id, "{{index .Config.Labels \"drover.slot\"}}")
            .parse()
            .unwrap_or(0);
        *by_slot.entry(slot).or_default() += 1;
    }
    by_slot
}

fn assert_each_slot_once(p: &Project, service: &str, n: u32) {
    let s = slots(p, service);
    let want: BTreeMap<u32, usize> = (1..=n).map(|i| (i, 1)).collect();
    assert_eq!(s, want, "each of the {n} slots exactly once");
}

/// A foreign container: `docker run -d` with the given name and labels.
fn foreign(p: &Project, name: &str, labels: &[&str]) -> String {
    let _ = p.docker(&["rm", "-f", name]);
    let mut args = vec!["run", "-d", "--name", name];
    for l in labels {
        args.extend(["--label", l]);
    }
    args.extend(["drover-test/busybox:latest", "sleep", "86400"]);
    p.docker_ok(&args)
}

/// drover goes through the proxy (`DROVER_HOST`); the test's docker CLI goes straight to
/// the engine (`DOCKER_HOST`).
fn via(px: &Proxy) -> Vec<(String, String)> {
    vec![
        ("DOCKER_HOST".into(), support::local_engine().into()),
        ("DROVER_HOST".into(), px.host()),
    ]
}

/// What a user would notice changing on a container.
fn fingerprint(p: &Project, id: &str) -> String {
    p.inspect(
        id,
        "{{.Name}} {{.State.Status}} {{.State.StartedAt}} {{json .Config.Labels}}",
    )
}

#[test]
fn two_drovers_started_together_never_double_and_the_standby_takes_over() {
    let p = Project::new("it-flt-lease", &web(4));
    let mut a = p.run(&[]);
    let mut b = p.run(&[]);
    // Sample while both start: never more than 4 containers of the service.
    let end = Instant::now() + Duration::from_secs(60);
    let mut max_seen = 0;
    loop {
        let n = p.containers(Some("web"), None).len();
        max_seen = max_seen.max(n);
        if p.running("web") == 4 || Instant::now() > end {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    a.assert_alive();
    b.assert_alive();
    assert_eq!(p.running("web"), 4);
    assert!(max_seen <= 4, "saw {max_seen} containers for 4 slots");
    let holders: Vec<&Drover> = [&a, &b]
        .into_iter()
        .filter(|d| !d.actions("lease-acquired").is_empty())
        .collect();
    assert_eq!(holders.len(), 1, "exactly one drover holds the lease");
    let (holder, standby) = if a.actions("lease-acquired").is_empty() {
        (&mut b, &mut a)
    } else {
        (&mut a, &mut b)
    };
    assert!(
        standby.actions("create").is_empty(),
        "the standby never acted:\n{}",
        standby.logs().join("\n")
    );
    eventually_with(standby, UP, "the standby says it waits", |d| {
        !d.actions("lease-wait").is_empty()
    });
    // Kill the holder without a chance to release, and give the standby work to do.
    holder.child.kill().unwrap();
    holder.child.wait().unwrap();
    let killed = Instant::now();
    let victim = p.containers(Some("web"), Some("running"))[0].clone();
    p.docker_ok(&["rm", "-f", &victim]);
    eventually_with(standby, UP, "standby takes the lease", |d| {
        !d.actions("lease-acquired").is_empty()
    });
    // Same machine, holder's pid gone: taken over at once, without the fencing delay.
    assert_eq!(
        standby.actions("lease-takeover")[0]["reason"],
        "holder-exited",
        "{}",
        standby.logs().join("\n")
    );
    assert_eq!(standby.actions("lease-acquired")[0]["delay_ms"], 0);
    let took = killed.elapsed();
    eventually_with(standby, UP, "standby restores 4", |_| p.running("web") == 4);
    assert_eq!(standby.actions("lease-acquired").len(), 1);
    assert_each_slot_once(&p, "web", 4);
    eprintln!("takeover after SIGKILL of the holder: {took:?}");
}

#[test]
fn a_frozen_holder_is_replaced_and_stops_acting_once_resumed() {
    let p = Project::new("it-flt-frozen", &web(2));
    let mut a = p.run(&["--lease-ttl", "2s"]);
    eventually_with(&mut a, UP, "2 web running", |_| p.running("web") == 2);
    let mut b = p.run(&["--lease-ttl", "2s"]);
    eventually_with(&mut b, UP, "b stands by", |d| {
        !d.actions("lease-wait").is_empty()
    });
    // A holder that hangs (its pid still exists): only the lease's silence tells.
    a.signal("STOP");
    let frozen = std::time::Instant::now();
    let victim = p.containers(Some("web"), Some("running"))[0].clone();
    p.docker_ok(&["rm", "-f", &victim]);
    eventually_with(&mut b, UP, "b takes over", |d| {
        !d.actions("lease-acquired").is_empty()
    });
    // Until b may act: the lease's silence, then its fencing delay (creating the
    // replacement is the engine's time, not the takeover's).
    let delay = b.actions("lease-acquired")[0]["delay_ms"].as_u64().unwrap();
    let took = frozen.elapsed() + Duration::from_millis(delay);
    eventually_with(&mut b, UP, "b restores 2", |_| p.running("web") == 2);
    assert_eq!(b.actions("lease-takeover")[0]["reason"], "not-renewed");
    assert!(
        took < Duration::from_secs(10),
        "takeover took {took:?}:\n{}",
        b.logs().join("\n")
    );
    // Resumed, the old holder finds its lease gone and never acts again, even with work
    // to do.
    let creates = a.actions("create").len();
    a.signal("CONT");
    eventually_with(&mut a, UP, "a notices", |d| {
        !d.actions("lease-lost").is_empty() || !d.actions("lease-wait").is_empty()
    });
    let victim = p.containers(Some("web"), Some("running"))[0].clone();
    p.docker_ok(&["rm", "-f", &victim]);
    eventually_with(&mut b, UP, "b restores 2 again", |_| p.running("web") == 2);
    assert_eq!(
        a.actions("create").len(),
        creates,
        "{}",
        a.logs().join("\n")
    );
    assert_each_slot_once(&p, "web", 2);
    eprintln!("takeover from a frozen holder (ttl 2s): {took:?}");
}

#[test]
fn a_released_lease_is_taken_without_waiting() {
    let p = Project::new("it-flt-release", &web(1));
    let mut a = p.run(&[]);
    eventually_with(&mut a, UP, "web running", |_| p.running("web") == 1);
    a.signal("TERM");
    assert!(a.wait_exit(Duration::from_secs(3)).is_some());
    assert_eq!(
        a.actions("lease-released").len(),
        1,
        "{}",
        a.logs().join("\n")
    );
    let mut b = p.run(&[]);
    eventually_with(&mut b, UP, "lease acquired", |d| {
        !d.actions("lease-acquired").is_empty()
    });
    assert_eq!(b.actions("lease-acquired")[0]["delay_ms"], 0);
}

#[test]
fn sigkill_in_the_middle_of_a_scale_up_to_30_is_finished_from_the_labels() {
    let p = Project::new("it-flt-kill30", &web(30));
    let mut d = p.run(&["--parallel", "2"]);
    eventually_with(&mut d, UP, "scale-up under way", |_| {
        p.containers(Some("web"), None).len() >= 6
    });
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let mid = p.containers(Some("web"), None).len();
    assert!(mid < 30, "killed too late to test anything ({mid})");
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "30 running", |_| p.running("web") == 30);
    assert_each_slot_once(&p, "web", 30);
}

const ROLLING: &str = r#"
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "VERSION"]
    stop_signal: SIGKILL
    deploy:
      replicas: 4
      update_config: { monitor: 1s }
"#;

#[test]
fn sigkill_in_the_middle_of_a_rolling_update_is_finished_from_the_labels() {
    let p = Project::new("it-flt-killroll", &ROLLING.replace("VERSION", "86400"));
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "4 running", |_| p.running("web") == 4);
    let old_hash = p.inspect(
        &p.containers(Some("web"), None)[0],
        "{{index .Config.Labels \"drover.config-hash\"}}",
    );
    p.write("compose.yml", &ROLLING.replace("VERSION", "86401"));
    let updated = |p: &Project| {
        p.containers(Some("web"), Some("running"))
            .iter()
            .filter(|id| {
                p.inspect(id, "{{index .Config.Labels \"drover.config-hash\"}}") != old_hash
            })
            .count()
    };
    eventually_with(&mut d, UP, "first replica updated", |_| updated(&p) >= 1);
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    assert!(updated(&p) < 4, "killed too late");
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "all 4 updated and running", |_| {
        updated(&p) == 4 && p.running("web") == 4
    });
    assert_each_slot_once(&p, "web", 4);
}

#[test]
fn removed_while_down_are_recreated_and_look_alikes_are_never_touched() {
    let p = Project::new("it-flt-behind", &web(3));
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "3 running", |_| p.running("web") == 3);
    d.signal("TERM");
    assert!(d.wait_exit(Duration::from_secs(3)).is_some());
    // Behind drover's back: two replicas gone.
    let ids = p.containers(Some("web"), None);
    p.docker_ok(&["rm", "-f", &ids[0], &ids[1]]);
    // Look-alikes: a slot's future name with partial labels, another project's labels,
    // compose's labels for this project, and one holding the name of slot 4.
    let name = &p.name;
    let partial = foreign(
        &p,
        &format!("{name}-web-7"),
        &["drover.service=web", "drover.slot=7"],
    );
    let other = foreign(
        &p,
        &format!("{name}-other-web-1"),
        &[
            "drover.project=it-flt-someone-else",
            "drover.service=web",
            "drover.slot=1",
        ],
    );
    let compose = foreign(
        &p,
        &format!("{name}-web-9"),
        &[
            &format!("com.docker.compose.project={name}"),
            "com.docker.compose.service=web",
            "com.docker.compose.container-number=9",
        ],
    );
    let squatter = foreign(&p, &format!("{name}-web-4"), &[]);
    p.docker_ok(&["stop", "-t", "0", &squatter]);
    let before: Vec<String> = [&partial, &other, &compose, &squatter]
        .iter()
        .map(|id| fingerprint(&p, id))
        .collect();
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "3 running again", |_| p.running("web") == 3);
    assert_each_slot_once(&p, "web", 3);
    // Scale to 4: slot 4's name is taken by a foreign container; the create fails, named.
    p.write("compose.yml", &web(4));
    eventually_with(&mut d, UP, "the name conflict reported", |d| {
        d.logs()
            .iter()
            .any(|l| l.contains("\"level\":\"ERROR\"") && l.contains(&format!("{name}-web-4")))
    });
    // Then scale to 0: only our own go.
    p.write("compose.yml", &web(0));
    eventually_with(&mut d, UP, "scaled to 0", |_| {
        p.containers(Some("web"), None).is_empty()
    });
    let after: Vec<String> = [&partial, &other, &compose, &squatter]
        .iter()
        .map(|id| fingerprint(&p, id))
        .collect();
    assert_eq!(before, after, "foreign containers untouched");
    for id in [&partial, &other, &compose, &squatter] {
        let _ = p.docker(&["rm", "-f", id]);
    }
}

#[test]
fn a_cut_event_stream_and_a_silent_one_are_noticed_without_the_resync() {
    let socket = support::local_engine().trim_start_matches("unix://");
    let px = Proxy::start(socket);
    let env = via(&px);
    let p = Project::on("it-flt-events", &web(2), env);
    // No resync to fall back on: only the events (and their recovery) can notice.
    let mut d = p.run(&["--resync-interval", "1h", "--watchdog", "2s"]);
    eventually_with(&mut d, UP, "2 running", |_| p.running("web") == 2);
    eventually(UP, "an event stream open", || px.event_streams() >= 1);

    // Cut: the connection carrying the stream is closed; the rest stays up.
    assert!(px.cut_events() >= 1);
    let victim = p.containers(Some("web"), Some("running"))[0].clone();
    p.docker_ok(&["rm", "-f", &victim]);
    let t = Instant::now();
    eventually_with(
        &mut d,
        Duration::from_secs(20),
        "recreated after a cut",
        |_| p.running("web") == 2,
    );
    eprintln!("cut stream: replica back after {:?}", t.elapsed());

    // Silent: the stream stays open but nothing more arrives on it.
    eventually(UP, "a new event stream open", || px.event_streams() >= 1);
    assert!(px.silence_events() >= 1);
    let victim = p.containers(Some("web"), Some("running"))[0].clone();
    p.docker_ok(&["rm", "-f", &victim]);
    let t = Instant::now();
    eventually_with(
        &mut d,
        Duration::from_secs(20),
        "recreated after the watchdog",
        |_| p.running("web") == 2,
    );
    eprintln!("silent stream: replica back after {:?}", t.elapsed());
    assert_each_slot_once(&p, "web", 2);
}

#[test]
fn an_engine_answering_500s_then_stalling_then_recovering() {
    let socket = support::local_engine().trim_start_matches("unix://");
    let px = Proxy::start(socket);
    let env = via(&px);
    let p = Project::on("it-flt-errors", &web(3), env);
    let mut d = p.run(&["--resync-interval", "2s", "--watchdog", "2s"]);
    eventually_with(&mut d, UP, "3 running", |_| p.running("web") == 3);
    let plain: Vec<_> = d
        .events()
        .into_iter()
        .filter(|e| e["level"] == "WARN" && e["reason"] == "plaintext")
        .collect();
    assert_eq!(
        plain.len(),
        1,
        "plaintext tcp is warned about once at start"
    );
    let bystander = foreign(&p, "it-flt-errors-bystander", &[]);
    let before = fingerprint(&p, &bystander);

    for mode in [Mode::Error500, Mode::Stall, Mode::Refuse] {
        px.set_mode(mode);
        // Meanwhile a replica disappears.
        let victim = p.containers(Some("web"), Some("running"))[0].clone();
        p.docker_ok(&["rm", "-f", &victim]);
        std::thread::sleep(Duration::from_secs(4));
        d.assert_alive();
        assert_eq!(p.running("web"), 2, "{mode:?}: nothing can be done yet");
        px.set_mode(Mode::Pass);
        let t = Instant::now();
        eventually_with(&mut d, UP, &format!("recovered after {mode:?}"), |_| {
            p.running("web") == 3
        });
        eprintln!("{mode:?}: back to 3 {:?} after recovery", t.elapsed());
        assert_each_slot_once(&p, "web", 3);
    }
    assert_eq!(fingerprint(&p, &bystander), before);
    let _ = p.docker(&["rm", "-f", &bystander]);
}

#[test]
fn the_engine_restarted_while_containers_are_created() {
    let node = Node::start("flt-restart", 91);
    let p = Project::on("it-flt-engine", &web(16), node.env());
    let mut d = p.run(&["--parallel", "2"]);
    eventually_with(&mut d, UP, "creation under way", |_| {
        p.containers(Some("web"), None).len() >= 3
    });
    node.stop();
    node.restart();
    eventually_with(&mut d, UP, "16 running", |_| p.running("web") == 16);
    assert_each_slot_once(&p, "web", 16);
}
