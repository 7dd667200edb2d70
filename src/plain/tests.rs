//! Plain mode's passes over the in-memory engine: the exact engine calls drover makes for
//! what users do to their containers (a crash, a `docker kill`, a `docker rm`), for a
//! config edit, for an update that fails and rolls back, and for an engine answering 500.
//! The real-engine tests prove the same behaviours end to end; these pin the sequence.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::{LoadOptions, Loaded};
use crate::engine::connect::{ConnectArgs, Endpoint};
use crate::engine::fake::FakeEngine;
use crate::engine::{Client, Credentials, Engine, Kind};
use crate::nodes::{NodeHandle, NodeSpec};

const NODE: &str = "n1";

/// The calls that change something (reads left out), as the fake records them.
fn changes(calls: Vec<String>) -> Vec<String> {
    calls
        .into_iter()
        .filter(|c| {
            let verb = c.split_whitespace().next().unwrap_or("");
            !(verb.starts_with("list")
                || matches!(
                    verb,
                    "inspect" | "ping" | "info" | "events" | "registry-digest"
                ))
        })
        .map(|c| c.trim_end().to_string())
        .collect()
}

/// `yaml` as the project `name`'s compose file in `dir`, loaded.
fn load(dir: &std::path::Path, name: &str, yaml: &str) -> Loaded {
    std::fs::write(dir.join("compose.yml"), yaml).unwrap();
    config::load(&LoadOptions {
        files: vec![dir.join("compose.yml")],
        project_name: Some(name.into()),
        cwd: dir.to_path_buf(),
        ..Default::default()
    })
    .unwrap()
}

struct World {
    fake: Arc<FakeEngine>,
    plain: Plain,
    dir: PathBuf,
    name: String,
}

impl World {
    /// Plain mode for project `name` from `yaml`, on one node backed by the fake; crash
    /// backoff starting at 300 ms.
    fn new(name: &str, yaml: &str) -> World {
        let dir = std::env::temp_dir().join(format!("drover-plain-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = Arc::new(FakeEngine::default());
        let args = ConnectArgs {
            host: Some("tcp://10.0.0.1:2375".into()),
            ..Default::default()
        };
        let spec = NodeSpec {
            name: NODE.into(),
            endpoint: Endpoint::resolve(&args, &Default::default()).unwrap(),
            labels: BTreeMap::new(),
            availability: Default::default(),
        };
        let settings = Settings {
            lease: None,
            credentials: Credentials::in_dir(&dir, "DOCKER_CONFIG"),
            backoff: BackoffConfig {
                initial: Duration::from_millis(300),
                max: Duration::from_secs(2),
                reset_after: Duration::from_secs(30),
            },
            ..Default::default()
        };
        let telemetry = Telemetry::new(name, Duration::from_secs(60), None);
        telemetry.add_node(NODE);
        let project = load(&dir, name, yaml).project;
        World {
            plain: Plain::new(
                vec![NodeHandle::fixed(spec, Client::from(fake.clone()))],
                project,
                settings,
                telemetry,
            ),
            fake,
            dir,
            name: name.into(),
        }
    }

    fn load(&self, yaml: &str) -> Loaded {
        load(&self.dir, &self.name, yaml)
    }

    /// One pass woken by `wake`; the calls that changed something, and when it asked to
    /// look again.
    async fn pass_with(&mut self, wake: Wake) -> (Vec<String>, Option<Duration>) {
        let next = Mode::pass(&mut self.plain, wake).await;
        (changes(self.fake.take_calls()), next)
    }

    async fn pass(&mut self) -> (Vec<String>, Option<Duration>) {
        self.pass_with(Wake::default()).await
    }

    /// Pass, waiting out each look-again the passes ask for up to 2 s, until a pass
    /// changes nothing and asks for no look within 2 s (at most 10 s); every change.
    async fn settle(&mut self) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut all = Vec::new();
        loop {
            let (calls, next) = self.pass().await;
            let quiet = calls.is_empty();
            all.extend(calls);
            let soon = next.filter(|d| *d <= Duration::from_secs(2));
            match soon {
                None if quiet => return all,
                _ => {}
            }
            assert!(tokio::time::Instant::now() < deadline, "no rest: {all:?}");
            tokio::time::sleep(soon.unwrap_or_default()).await;
        }
    }

    async fn id(&self, name: &str) -> String {
        self.fake.inspect_container(name).await.unwrap().id.unwrap()
    }

    async fn image(&self, name: &str) -> String {
        let c = self.fake.inspect_container(name).await.unwrap();
        c.config.unwrap().image.unwrap()
    }

    fn running(&self, name: &str) -> bool {
        self.fake.state_of(name) == Some("running")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const ONE: &str = "services:\n  web:\n    image: app:1\n";

#[tokio::test]
async fn the_first_pass_creates_the_network_and_the_replicas_and_the_next_does_nothing() {
    let mut w = World::new(
        "first",
        "services:\n  web:\n    image: app:1\n    scale: 2\n",
    );
    let calls = w.settle().await;
    assert_eq!(
        calls,
        [
            "create-network first_default",
            "create first-web-1",
            "start first-web-1",
            "create first-web-2",
            "start first-web-2",
        ]
    );
    assert_eq!(w.settle().await, Vec::<String>::new(), "nothing changed");
}

#[tokio::test]
async fn a_crash_is_restarted_then_backs_off_and_a_kill_is_not_a_crash() {
    let mut w = World::new("crash", ONE);
    w.settle().await;
    // The first crash: started again at once.
    w.fake.exit("crash-web-1", 1);
    assert_eq!(w.settle().await, ["start crash-web-1"]);
    // The second, right after: nothing now, a look again after the backoff delay.
    w.fake.exit("crash-web-1", 1);
    let (calls, next) = w.pass().await;
    assert_eq!(calls, Vec::<String>::new());
    let delay = next.expect("a look again when the delay is over");
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_millis(300),
        "{delay:?}"
    );
    tokio::time::sleep(delay).await;
    assert_eq!(w.settle().await, ["start crash-web-1"]);
    // Crashing again: the delay doubles.
    w.fake.exit("crash-web-1", 1);
    let (calls, next) = w.pass().await;
    assert_eq!(calls, Vec::<String>::new());
    let longer = next.unwrap();
    assert!(longer > Duration::from_millis(300), "{longer:?}");
    // `docker kill` during the wait: someone's doing, not a crash; started at once.
    w.fake.exit("crash-web-1", 0);
    w.fake.take_calls();
    let id = w.id("crash-web-1").await;
    let wake = Wake {
        changed: HashSet::from([id.clone()]),
        killed: HashSet::from([id]),
        ..Default::default()
    };
    let (calls, _) = w.pass_with(wake).await;
    assert_eq!(calls, ["start crash-web-1"]);
    assert!(w.running("crash-web-1"));
}

#[tokio::test]
async fn a_container_removed_by_someone_else_is_created_again_in_its_slot() {
    let mut w = World::new(
        "removed",
        "services:\n  web:\n    image: app:1\n    scale: 2\n",
    );
    w.settle().await;
    w.fake.remove_by_other("removed-web-2");
    assert_eq!(
        w.settle().await,
        ["create removed-web-2", "start removed-web-2"]
    );
    assert!(w.running("removed-web-1") && w.running("removed-web-2"));
}

#[tokio::test]
async fn a_config_edit_recreates_each_replica_in_turn_and_an_unchanged_one_nothing() {
    let two = "services:\n  web:\n    image: app:1\n    scale: 2\n    deploy: { update_config: { monitor: 1s } }\n";
    let mut w = World::new("edit", two);
    w.settle().await;
    let same = w.load(two);
    assert!(!w.plain.adopt(same).unwrap().changed);
    assert_eq!(w.settle().await, Vec::<String>::new());

    let edited = w.load(&two.replace("app:1", "app:2"));
    assert!(w.plain.adopt(edited).unwrap().changed);
    let calls = w.settle().await;
    // One replica at a time (update parallelism 1), stop first.
    assert_eq!(
        calls,
        [
            "stop edit-web-1",
            "remove edit-web-1",
            "create edit-web-1",
            "start edit-web-1",
            "stop edit-web-2",
            "remove edit-web-2",
            "create edit-web-2",
            "start edit-web-2",
        ]
    );
    assert_eq!(w.image("edit-web-1").await, "app:2");
    assert_eq!(w.image("edit-web-2").await, "app:2");
    assert_eq!(
        w.fake.names(),
        ["edit-web-1", "edit-web-2"],
        "old copies removed"
    );
}

#[tokio::test]
async fn an_update_whose_new_replica_crashes_rolls_back_to_the_previous_definition() {
    let yaml = "services:\n  web:\n    image: app:1\n    deploy:\n      update_config: { failure_action: rollback, monitor: 30s }\n";
    let mut w = World::new("rollback", yaml);
    w.settle().await;
    let edited = w.load(&yaml.replace("app:1", "app:2"));
    assert!(w.plain.adopt(edited).unwrap().changed);
    w.settle().await;
    assert_eq!(w.image("rollback-web-1").await, "app:2");
    // The new replica dies within its monitor window: the update failed.
    w.fake.exit("rollback-web-1", 1);
    let calls = w.settle().await;
    assert!(
        calls.iter().any(|c| c == "create rollback-web-1"),
        "recreated: {calls:?}"
    );
    assert_eq!(w.image("rollback-web-1").await, "app:1", "{calls:?}");
    assert!(w.running("rollback-web-1"));
    assert_eq!(w.plain.project.services["web"].image, "app:1");
    // The file still asks for app:2: loading it again keeps the rollback.
    let again = w.load(&yaml.replace("app:1", "app:2"));
    w.plain.adopt(again).unwrap();
    assert_eq!(w.settle().await, Vec::<String>::new());
    assert_eq!(w.image("rollback-web-1").await, "app:1");
}

#[tokio::test]
async fn an_engine_answering_500_is_retried_soon_and_creates_each_replica_once() {
    let mut w = World::new("fivehundred", ONE);
    w.fake.fail("create", Kind::Api(500), 2);
    let (calls, next) = w.pass().await;
    assert!(
        calls.contains(&"create fivehundred-web-1".to_string()),
        "{calls:?}"
    );
    assert_eq!(
        next,
        Some(Duration::from_millis(500)),
        "a failure looks again soon"
    );
    // The slot's next attempt waits out its backoff; then it is made once.
    let mut all = calls;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !w.running("fivehundred-web-1") {
        assert!(tokio::time::Instant::now() < deadline, "{all:?}");
        let (calls, next) = w.pass().await;
        all.extend(calls);
        tokio::time::sleep(next.unwrap_or(Duration::from_millis(50))).await;
    }
    let creates = all
        .iter()
        .filter(|c| *c == "create fivehundred-web-1")
        .count();
    assert_eq!(creates, 3, "two refused, one made: {all:?}");
    assert_eq!(w.fake.names(), ["fivehundred-web-1"]);
    // A list answering 500: the node is frozen for the pass, nothing is done there.
    w.fake.fail("list", Kind::Api(500), 1);
    w.fake.exit("fivehundred-web-1", 0);
    let (calls, _) = w.pass().await;
    assert_eq!(calls, Vec::<String>::new());
    assert_eq!(w.settle().await, ["start fivehundred-web-1"]);
}

/// What the notifications say: `event service reason`.
fn said(events: &[crate::notify::Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let mut s = format!(
                "{} {}",
                e.event.as_str(),
                e.service.as_deref().unwrap_or("-")
            );
            if let Some(r) = &e.reason {
                s.push(' ');
                s.push_str(r);
            }
            s
        })
        .collect()
}

#[tokio::test]
async fn an_update_rolled_back_and_a_replica_given_up_on_are_each_notified_once() {
    let yaml = "services:\n  web:\n    image: app:1\n    deploy:\n      update_config: { failure_action: rollback, monitor: 1s }\n  job:\n    image: job:1\n    deploy:\n      restart_policy: { condition: on-failure, max_attempts: 1 }\n";
    let mut w = World::new("notified", yaml);
    let (notifier, sent) = crate::notify::Notifier::recording();
    w.plain.notifier = notifier;
    w.settle().await;
    assert_eq!(
        said(&sent()),
        Vec::<String>::new(),
        "a first deploy says nothing"
    );

    // The job fails, is restarted once, fails again: given up on, said once.
    w.fake.exit("notified-job-1", 2);
    w.settle().await;
    w.fake.exit("notified-job-1", 2);
    w.settle().await;
    w.settle().await;
    assert_eq!(said(&sent()), ["gave-up job max-attempts"]);
    assert_eq!(sent()[0].slot, Some(1));
    assert_eq!(sent()[0].node.as_deref(), Some(NODE));

    let edited = w.load(&yaml.replace("app:1", "app:2"));
    assert!(w.plain.adopt(edited).unwrap().changed);
    w.settle().await;
    w.fake.exit("notified-web-1", 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while said(&sent()).len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            said(&sent())
        );
        let (_, next) = w.pass().await;
        tokio::time::sleep(
            next.unwrap_or(Duration::from_millis(100))
                .min(Duration::from_millis(300)),
        )
        .await;
    }
    w.settle().await;
    assert_eq!(
        said(&sent()),
        [
            "gave-up job max-attempts",
            "update-started web config-changed",
            "rollback web update-failed",
            "update-finished web rolled-back",
        ]
    );
    // Scale changes are the loop's (both modes): adopting a new count says nothing here.
    let scaled = w.load(&yaml.replace("image: app:1\n", "image: app:1\n    scale: 2\n"));
    w.plain.adopt(scaled).unwrap();
    w.settle().await;
    assert_eq!(said(&sent()).len(), 4);
}

const FOLLOW: &str = "services:\n  web:\n    image: app:1\n    pull_policy: every_1h\n    scale: 2\n    deploy:\n      update_config: { order: start-first, monitor: 1s, failure_action: rollback }\n";

/// The image each replica of `web` was created from, and its digest label.
fn digests(w: &World, project: &str) -> Vec<(String, String)> {
    (1..=2)
        .map(|n| {
            let name = format!("{project}-web-{n}");
            let labels = w.fake.labels_of(&name);
            let digest = labels
                .get(crate::labels::LABEL_IMAGE_DIGEST)
                .cloned()
                .unwrap_or_default();
            (w.fake.image_of(&name), digest)
        })
        .collect()
}

#[tokio::test]
async fn a_followed_tag_that_moves_rolls_every_replica_to_the_new_digest_start_first() {
    let mut w = World::new("follow", FOLLOW);
    let (notifier, sent) = crate::notify::Notifier::recording();
    w.plain.notifier = notifier;
    w.fake.push("app:1", "sha256:a");
    w.settle().await;
    let a = ("app:1@sha256:a".to_string(), "sha256:a".to_string());
    assert_eq!(digests(&w, "follow"), [a.clone(), a]);
    // Nothing moved: a reload asks the registry again and changes nothing.
    w.plain.adopt(w.load(FOLLOW)).unwrap();
    assert_eq!(w.settle().await, Vec::<String>::new(), "no pull, no change");

    w.fake.push("app:1", "sha256:b");
    w.plain.adopt(w.load(FOLLOW)).unwrap();
    let calls = w.settle().await;
    let b = ("app:1@sha256:b".to_string(), "sha256:b".to_string());
    assert_eq!(digests(&w, "follow"), [b.clone(), b], "{calls:?}");
    // start-first: each new copy is created before the old one is removed.
    let first_create = calls.iter().position(|c| c.starts_with("create")).unwrap();
    let first_remove = calls.iter().position(|c| c.starts_with("remove")).unwrap();
    assert!(first_create < first_remove, "{calls:?}");
    let status = w.plain.images.follow.get("web").unwrap().clone();
    assert_eq!(status.newest.as_deref(), Some("sha256:b"));
    assert_eq!(status.running.as_deref(), Some("sha256:b"));
    // Following the moved tag was said once to the webhooks.
    let followed: Vec<String> = said(&sent())
        .into_iter()
        .filter(|s| s.starts_with("image-followed"))
        .collect();
    assert_eq!(followed, ["image-followed web image-updated"]);
}

#[tokio::test]
async fn a_new_digest_that_crashes_is_rolled_back_and_not_tried_until_the_tag_moves() {
    let yaml = FOLLOW
        .replace("scale: 2", "scale: 1")
        .replace("monitor: 1s", "monitor: 30s");
    let mut w = World::new("refuse", &yaml);
    w.fake.push("app:1", "sha256:a");
    w.settle().await;
    w.fake.push("app:1", "sha256:b");
    w.plain.adopt(w.load(&yaml)).unwrap();
    w.settle().await;
    assert_eq!(w.image("refuse-web-1").await, "app:1@sha256:b");
    w.fake.exit("refuse-web-1", 1);
    w.settle().await;
    assert_eq!(w.image("refuse-web-1").await, "app:1@sha256:a");
    assert_eq!(
        w.plain.images.follow.get("web").unwrap().failed.as_deref(),
        Some("sha256:b")
    );
    // The tag still points at b: checked again, refused, nothing changes.
    w.plain.adopt(w.load(&yaml)).unwrap();
    assert_eq!(w.settle().await, Vec::<String>::new());
    assert_eq!(w.image("refuse-web-1").await, "app:1@sha256:a");
    // The tag moves on: the new digest is tried.
    w.fake.push("app:1", "sha256:c");
    w.plain.adopt(w.load(&yaml)).unwrap();
    w.settle().await;
    assert_eq!(w.image("refuse-web-1").await, "app:1@sha256:c");
}

#[tokio::test]
async fn a_tag_pulled_by_hand_then_a_reload_rolls_a_service_that_does_not_follow() {
    let yaml =
        "services:\n  web:\n    image: app:1\n    deploy: { update_config: { monitor: 1s } }\n";
    let mut w = World::new("manual", yaml);
    w.fake.add_local_digest("app:1", "sha256:a");
    w.settle().await;
    assert_eq!(
        w.fake.labels_of("manual-web-1")[crate::labels::LABEL_IMAGE_DIGEST],
        "sha256:a"
    );
    assert_eq!(w.image("manual-web-1").await, "app:1", "not pinned");
    // `docker pull app:1` by hand, then SIGHUP.
    w.fake.add_local_digest("app:1", "sha256:b");
    w.plain.adopt(w.load(yaml)).unwrap();
    let calls = w.settle().await;
    assert!(
        calls.iter().any(|c| c == "create manual-web-1"),
        "{calls:?}"
    );
    assert_eq!(w.image("manual-web-1").await, "app:1@sha256:b");
    assert!(
        !calls.iter().any(|c| c.starts_with("registry")),
        "a service that does not follow never asks the registry"
    );
}

impl World {
    /// Make the node one whose events reach the loop (the test delivers them through the
    /// wakes it passes), listed again every `resync`.
    fn watch(&mut self, resync: Duration) {
        let spec = NodeSpec {
            name: NODE.into(),
            endpoint: Endpoint::resolve(
                &ConnectArgs {
                    host: Some("tcp://10.0.0.1:2375".into()),
                    ..Default::default()
                },
                &Default::default(),
            )
            .unwrap(),
            labels: BTreeMap::new(),
            availability: Default::default(),
        };
        self.plain.nodes = vec![NodeHandle::fixed_watched(
            spec,
            Client::from(self.fake.clone()),
        )];
        self.plain.settings.resync_interval = resync;
    }

    /// A resync over two passes: the one woken by `wake` starts the node's list beside
    /// it, the next takes the list once it ended. Every call made, reads included.
    async fn resync_calls(&mut self, wake: Wake) -> Vec<String> {
        self.fake.take_calls();
        Mode::pass(&mut self.plain, wake).await;
        self.plain.relists.settled().await;
        Mode::pass(&mut self.plain, Wake::default()).await;
        self.fake
            .take_calls()
            .into_iter()
            .map(|c| c.trim_end().to_string())
            .collect()
    }

    /// One pass woken by `wake`; every call it made, reads included.
    async fn all_calls(&mut self, wake: Wake) -> Vec<String> {
        self.fake.take_calls();
        Mode::pass(&mut self.plain, wake).await;
        self.fake
            .take_calls()
            .into_iter()
            .map(|c| c.trim_end().to_string())
            .collect()
    }
}

/// The wake an event stream of the node gives for `ids`.
fn named(ids: &[&str]) -> Wake {
    Wake {
        changed: ids.iter().map(|s| s.to_string()).collect(),
        origin: ids
            .iter()
            .map(|s| (s.to_string(), NODE.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn lists(calls: &[String]) -> usize {
    calls
        .iter()
        .filter(|c| c.starts_with("list label="))
        .count()
}

/// A watched node is listed once; then a pass reads only what its events name (one
/// inspect, no list), and a quiet pass calls nothing at all.
#[tokio::test]
async fn an_event_patches_what_was_observed_without_a_list() {
    let mut w = World::new(
        "patched",
        "services:\n  web:\n    image: app:1\n    scale: 3\n",
    );
    w.watch(Duration::from_secs(3600));
    let first = w.all_calls(Wake::default()).await;
    assert_eq!(lists(&first), 1, "{first:?}");
    w.settle().await;
    assert_eq!(w.all_calls(Wake::default()).await, Vec::<String>::new());

    let id = w.id("patched-web-2").await;
    w.fake.exit("patched-web-2", 1);
    let calls = w.all_calls(named(&[&id])).await;
    assert_eq!(lists(&calls), 0, "{calls:?}");
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("inspect")).count(),
        1,
        "{calls:?}"
    );
    assert!(
        calls.contains(&"start patched-web-2".to_string()),
        "{calls:?}"
    );
    assert!(w.running("patched-web-2"));
    // The networks and volumes listed for that start are kept: the next start lists
    // nothing at all (and plans once).
    let other = w.id("patched-web-1").await;
    w.fake.exit("patched-web-1", 1);
    let calls = w.all_calls(named(&[&other])).await;
    assert!(
        calls.contains(&"start patched-web-1".to_string()),
        "{calls:?}"
    );
    assert!(!calls.iter().any(|c| c.starts_with("list")), "{calls:?}");

    // Removed by someone else: the event's inspect finds nothing, the slot is filled again.
    let id = w.id("patched-web-3").await;
    w.fake.remove_by_other("patched-web-3");
    let calls = w.all_calls(named(&[&id])).await;
    assert_eq!(lists(&calls), 0, "{calls:?}");
    assert!(
        calls.iter().any(|c| c.starts_with("create patched-web-3")),
        "{calls:?}"
    );
    assert!(w.running("patched-web-3"));
}

/// An event the loop never heard of is not seen by patching; the node's next list (its
/// stream reopened, or its resync due) sees it and the slot is repaired.
#[tokio::test]
async fn a_missed_event_is_corrected_by_the_next_list() {
    let mut w = World::new(
        "missed",
        "services:\n  web:\n    image: app:1\n    scale: 2\n",
    );
    w.watch(Duration::from_secs(3600));
    w.settle().await;
    w.fake.exit("missed-web-1", 1);
    assert_eq!(w.all_calls(Wake::default()).await, Vec::<String>::new());
    assert!(!w.running("missed-web-1"));

    // The stream reopened: the node is listed and the exit found.
    let relist = Wake {
        relist: HashSet::from([NODE.to_string()]),
        ..Default::default()
    };
    let calls = w.all_calls(relist).await;
    assert_eq!(lists(&calls), 1, "{calls:?}");
    assert!(
        calls.contains(&"start missed-web-1".to_string()),
        "{calls:?}"
    );

    // Its resync: once the interval has passed the node is listed, whatever the events
    // say, and each pass asks to be woken for it.
    w.plain.settings.resync_interval = Duration::from_millis(300);
    w.plain.due.clear();
    let calls = w.resync_calls(Wake::default()).await;
    assert_eq!(lists(&calls), 1, "no resync planned: listed now: {calls:?}");
    w.fake.exit("missed-web-2", 1);
    let next = w.plain.next_list().expect("a list is due");
    assert!(next <= Duration::from_millis(300), "{next:?}");
    tokio::time::sleep(next).await;
    let calls = w.resync_calls(Wake::default()).await;
    assert_eq!(lists(&calls), 1, "{calls:?}");
    assert!(
        calls.contains(&"start missed-web-2".to_string()),
        "{calls:?}"
    );
}

/// The networks and volumes a start needs are listed once: those drover creates are
/// written into what it keeps, and a resync (which lists containers only) keeps them. A
/// restart after either lists neither again (over 50 nodes, the first restart on each
/// node and every restart after a resync used to list them and plan twice).
#[tokio::test]
async fn a_resync_keeps_the_networks_and_volumes_a_start_needs() {
    let mut w = World::new(
        "keepinfra",
        "services:\n  web:\n    image: app:1\n    scale: 2\n    volumes: [data:/data]\nvolumes:\n  data: {}\n",
    );
    w.watch(Duration::from_secs(3600));
    w.settle().await;
    // The network and volume it created are kept: a restart lists neither.
    let id = w.id("keepinfra-web-2").await;
    w.fake.exit("keepinfra-web-2", 1);
    let calls = w.all_calls(named(&[&id])).await;
    assert!(
        calls.contains(&"start keepinfra-web-2".to_string()),
        "{calls:?}"
    );
    assert!(!calls.iter().any(|c| c.starts_with("list-")), "{calls:?}");
    w.plain.settings.resync_interval = Duration::from_secs(60);
    w.plain.due.clear();
    let calls = w.resync_calls(Wake::default()).await;
    assert_eq!(lists(&calls), 1, "the resync ran: {calls:?}");
    // The list agrees with what the events kept: no service is planned again.
    let changed = w.plain.named.as_ref().and_then(|n| n.by_service());
    assert_eq!(changed, Some(crate::plan::Named::new()));
    let id = w.id("keepinfra-web-1").await;
    w.fake.exit("keepinfra-web-1", 1);
    let calls = w.all_calls(named(&[&id])).await;
    assert!(
        calls.contains(&"start keepinfra-web-1".to_string()),
        "{calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("list-networks") || c.starts_with("list-volumes")),
        "listed again: {calls:?}"
    );
    assert!(w.running("keepinfra-web-1"));
}

/// A resync list runs beside the passes, as an informer relists: a pass does not wait for
/// a slow list, events that come meanwhile are acted on at once, and the list, once it
/// ended, is taken patched with what was named since it began: a container removed while
/// the list was out is not kept from the list's older view, and its replacement is.
#[tokio::test]
async fn a_slow_resync_list_holds_no_event_back_and_is_taken_patched() {
    let mut w = World::new(
        "beside",
        "services:\n  web:\n    image: app:1\n    scale: 2\n",
    );
    w.watch(Duration::from_secs(3600));
    w.settle().await;
    w.plain.settings.resync_interval = Duration::from_secs(60);
    let (one, old) = (w.id("beside-web-1").await, w.id("beside-web-2").await);
    w.fake.stall_verb("list", Some(Duration::from_secs(2)));
    w.plain.due.clear();
    w.fake.take_calls();
    Mode::pass(&mut w.plain, Wake::default()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while !seen.iter().any(|c: &String| c.starts_with("list label=")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no resync list: {seen:?}"
        );
        tokio::task::yield_now().await;
        seen.extend(w.fake.take_calls());
    }
    // While the list is out, web-1 exits and web-2 is removed: acted on at once.
    w.fake.exit("beside-web-1", 1);
    w.fake.remove_by_other("beside-web-2");
    let calls = tokio::time::timeout(Duration::from_secs(1), w.all_calls(named(&[&one, &old])))
        .await
        .expect("the pass waited for the resync list");
    assert!(
        calls.contains(&"start beside-web-1".to_string()),
        "{calls:?}"
    );
    assert!(
        calls.iter().any(|c| c.starts_with("create beside-web-2")),
        "{calls:?}"
    );
    let new = w.id("beside-web-2").await;
    // The list ends and is taken: what was named since it began is inspected again.
    w.plain.relists.settled().await;
    let calls = w.all_calls(Wake::default()).await;
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("start") || c.starts_with("create")),
        "{calls:?}"
    );
    let kept: Vec<&str> = w.plain.last[NODE]
        .containers
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert!(
        kept.contains(&new.as_str()) && !kept.contains(&old.as_str()),
        "{kept:?}"
    );
    assert!(w.running("beside-web-1") && w.running("beside-web-2"));
    assert!(
        w.plain
            .next_list()
            .is_some_and(|d| d > Duration::from_secs(30))
    );
}

/// A watched node's resync list fails (a large node under load answers late): the node
/// stays up on its event-patched view, an event in the same pass is acted on, and the
/// list is tried again half an interval later instead of at every pass.
#[tokio::test]
async fn a_failed_resync_keeps_the_node_on_its_patched_view() {
    let mut w = World::new(
        "resync",
        "services:\n  web:\n    image: app:1\n    scale: 2\n",
    );
    w.watch(Duration::from_secs(3600));
    w.settle().await;
    w.plain.settings.resync_interval = Duration::from_secs(60);
    w.plain.due.clear();
    let id = w.id("resync-web-1").await;
    w.fake.exit("resync-web-1", 1);
    w.fake.fail("list", Kind::Api(500), 1);
    let calls = w.resync_calls(named(&[&id])).await;
    assert_eq!(lists(&calls), 1, "the resync was tried: {calls:?}");
    assert!(
        calls.contains(&"start resync-web-1".to_string()),
        "the node was not frozen: {calls:?}"
    );
    assert!(w.running("resync-web-1"));
    let next = w.plain.next_list().expect("a resync planned");
    assert!(
        next > Duration::from_secs(20) && next <= Duration::from_secs(30),
        "{next:?}"
    );
    assert_eq!(lists(&w.all_calls(Wake::default()).await), 0);
}

/// Two fixed nodes on fakes, listed in the file: a global service runs on each; a reload
/// drains n2 (its replicas move to n1, its agent goes), then removes it from the list
/// (let go once it holds nothing).
#[tokio::test]
async fn a_reload_drains_a_node_and_a_removed_node_is_let_go_once_empty() {
    membership(false).await;
}

/// The same over watched nodes (observed from what was kept, patched with what each pass
/// did; no events delivered): the drain and the removal come out the same, and the node
/// let go leaves no list due behind (a wake for it would come at once, every pass).
#[tokio::test]
async fn a_reload_drains_and_lets_go_a_watched_node_the_same() {
    let plain = membership(true).await;
    assert!(!plain.due.contains_key("n2"));
    assert!(!plain.last.contains_key("n2"));
    let next = plain.next_list().expect("n1's resync");
    assert!(next > Duration::from_secs(1), "{next:?}");
}

async fn membership(watched: bool) -> Plain {
    let name = "membership";
    let dir = std::env::temp_dir().join(format!(
        "drover-plain-{name}-{watched}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = |n2: &str| {
        format!(
            "services:
  agent:
    image: img
    deploy: {{ mode: global }}
  web:
    image: img
    deploy:
      replicas: 2
      update_config: {{ monitor: 0s }}
x-drover:
  nodes:
    - {{ name: n1, host: tcp://10.0.0.1:2375 }}
{n2}"
        )
    };
    let both = yaml("    - { name: n2, host: tcp://10.0.0.2:2375 }\n");
    let fakes = [
        Arc::new(FakeEngine::default()),
        Arc::new(FakeEngine::default()),
    ];
    let handles = fixed_nodes(&fakes, watched);
    let telemetry = Telemetry::new(name, Duration::from_secs(60), None);
    let loaded = load(&dir, name, &both);
    let settings = Settings {
        lease: None,
        credentials: Credentials::in_dir(&dir, "DOCKER_CONFIG"),
        ..Default::default()
    };
    let mut plain = Plain::new(handles, loaded.project, settings, telemetry.clone());
    plain.membership.listed = true;
    settle_all(&mut plain).await;
    let on = |i: usize, prefix: &str| {
        fakes[i]
            .names()
            .iter()
            .filter(|n| n.starts_with(prefix))
            .count()
    };
    assert_eq!(
        (on(0, "membership-agent"), on(1, "membership-agent")),
        (1, 1)
    );
    assert_eq!(fakes[1].names(), ["membership-agent-2", "membership-web-2"]);

    let drained = load(
        &dir,
        name,
        &yaml("    - { name: n2, host: tcp://10.0.0.2:2375, availability: drain }\n"),
    );
    assert!(Mode::adopt(&mut plain, drained).unwrap().changed);
    settle_all(&mut plain).await;
    assert!(fakes[1].names().is_empty(), "{:?}", fakes[1].names());
    assert_eq!(on(0, "membership-web"), 2);
    let status = crate::telemetry::status::snapshot(&telemetry);
    let n2 = status.nodes.iter().find(|n| n.name == "n2").unwrap();
    assert_eq!(n2.availability.as_deref(), Some("drain"));

    // Back to active, then removed from the list: drained again, then let go.
    assert!(
        Mode::adopt(&mut plain, load(&dir, name, &both))
            .unwrap()
            .changed
    );
    settle_all(&mut plain).await;
    assert_eq!(fakes[1].names(), ["membership-agent-2"]);
    assert!(
        Mode::adopt(&mut plain, load(&dir, name, &yaml("")))
            .unwrap()
            .changed
    );
    settle_all(&mut plain).await;
    assert!(fakes[1].names().is_empty());
    assert_eq!(plain.nodes.len(), 1, "n2 let go");
    assert!(
        crate::telemetry::status::snapshot(&telemetry)
            .nodes
            .iter()
            .all(|n| n.name != "n2")
    );
    // The environment's engine instead of the list: refused, the last config kept.
    let one = load(&dir, name, "services:\n  web:\n    image: img\n");
    assert!(Mode::adopt(&mut plain, one).is_err());
    plain
}

/// Under an HA lease, a drover that sees most nodes down holds their replicas where they
/// were (it is more likely cut off itself); one node down, or no HA lease, and they move.
#[tokio::test]
async fn with_most_nodes_down_under_an_ha_lease_nothing_moves_and_with_one_the_replicas_do() {
    for ha in [true, false] {
        let name = format!("disrupted-{ha}");
        let dir = std::env::temp_dir().join(format!("drover-plain-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = "services:
  web:
    image: img
    deploy: { replicas: 3 }
x-drover:
  nodes:
    - { name: n1, host: tcp://10.0.0.1:2375 }
    - { name: n2, host: tcp://10.0.0.2:2375 }
    - { name: n3, host: tcp://10.0.0.3:2375 }
";
        let fakes: Vec<Arc<FakeEngine>> = (0..3).map(|_| Arc::new(FakeEngine::default())).collect();
        let (handles, switches): (Vec<NodeHandle>, Vec<_>) = fixed_nodes(&fakes, false)
            .into_iter()
            .zip(&fakes)
            .map(|(h, fake)| NodeHandle::switchable(h.config.clone(), Client::from(fake.clone())))
            .unzip();
        let telemetry = Telemetry::new(&name, Duration::from_secs(60), None);
        let settings = Settings {
            lease: None,
            credentials: Credentials::in_dir(&dir, "DOCKER_CONFIG"),
            ..Default::default()
        };
        let loaded = load(&dir, &name, yaml);
        let mut plain = Plain::new(handles, loaded.project, settings, telemetry);
        if ha {
            plain = plain.under(crate::lease::LeaseHandle::always_over(3));
        }
        plain.membership.listed = true;
        settle_all(&mut plain).await;
        let on: Vec<usize> = fakes.iter().map(|f| f.names().len()).collect();
        assert_eq!(on, [1, 1, 1], "ha {ha}");
        let down = |i: usize, up: bool| switches[i].send_modify(|s| set_up(s, up));
        down(1, false);
        down(2, false);
        settle_all(&mut plain).await;
        let on_n1 = fakes[0].names().len();
        if ha {
            assert_eq!(
                on_n1, 1,
                "two of three down under an HA lease: nothing moves"
            );
        } else {
            assert_eq!(
                on_n1, 3,
                "no HA lease: the replicas move to the node that is up"
            );
        }
        // One node back: a majority answers, n3's replica moves.
        down(1, true);
        settle_all(&mut plain).await;
        let total: usize = fakes[..2].iter().map(|f| f.names().len()).sum();
        assert_eq!(
            total,
            3,
            "ha {ha}: {:?} {:?}",
            fakes[0].names(),
            fakes[1].names()
        );
    }
}

/// Two nodes and a witness: one node down is a minority of the lease's three nodes, so its
/// replicas move; the witness down as well, and nothing moves.
#[tokio::test]
async fn with_a_witness_one_node_down_still_moves_its_replicas() {
    let name = "witnessed";
    let dir = std::env::temp_dir().join(format!("drover-plain-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = "services:
  web:
    image: img
    deploy: { replicas: 2 }
x-drover:
  nodes:
    - { name: n1, host: tcp://10.0.0.1:2375 }
    - { name: n2, host: tcp://10.0.0.2:2375 }
";
    let fakes: Vec<Arc<FakeEngine>> = (0..3).map(|_| Arc::new(FakeEngine::default())).collect();
    let (mut handles, switches): (Vec<NodeHandle>, Vec<_>) = fixed_nodes(&fakes, false)
        .into_iter()
        .zip(&fakes)
        .map(|(h, fake)| NodeHandle::switchable(h.config.clone(), Client::from(fake.clone())))
        .unzip();
    let witness = handles.split_off(2);
    let settings = Settings {
        lease: None,
        credentials: Credentials::in_dir(&dir, "DOCKER_CONFIG"),
        ..Default::default()
    };
    let telemetry = Telemetry::new(name, Duration::from_secs(60), None);
    let loaded = load(&dir, name, yaml);
    let mut plain = Plain::new(handles, loaded.project, settings, telemetry)
        .under(crate::lease::LeaseHandle::always_over(3));
    plain.witnesses = witness;
    plain.membership.listed = true;
    settle_all(&mut plain).await;
    assert_eq!((fakes[0].names().len(), fakes[1].names().len()), (1, 1));
    switches[2].send_modify(|s| set_up(s, false));
    switches[1].send_modify(|s| set_up(s, false));
    settle_all(&mut plain).await;
    assert_eq!(
        fakes[0].names().len(),
        1,
        "n2 and the witness down: nothing moves"
    );
    switches[2].send_modify(|s| set_up(s, true));
    settle_all(&mut plain).await;
    assert_eq!(
        fakes[0].names().len(),
        2,
        "only n2 down: its replica moves to n1"
    );
}

/// A cut-off leader sees one node down a moment before the other (one of three: not a
/// disruption), with its lease still counting from renewals sent before the cut. The down
/// node's replica moves only once the lease shows a majority granted a renewal sent after
/// the node was found down.
#[tokio::test]
async fn a_down_node_keeps_its_replicas_until_a_majority_confirms_the_lease_after_it() {
    let name = "unconfirmed";
    let dir = std::env::temp_dir().join(format!("drover-plain-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = "services:
  web:
    image: img
    deploy: { replicas: 3 }
x-drover:
  nodes:
    - { name: n1, host: tcp://10.0.0.1:2375 }
    - { name: n2, host: tcp://10.0.0.2:2375 }
    - { name: n3, host: tcp://10.0.0.3:2375 }
";
    let fakes: Vec<Arc<FakeEngine>> = (0..3).map(|_| Arc::new(FakeEngine::default())).collect();
    let (handles, switches): (Vec<NodeHandle>, Vec<_>) = fixed_nodes(&fakes, false)
        .into_iter()
        .zip(&fakes)
        .map(|(h, fake)| NodeHandle::switchable(h.config.clone(), Client::from(fake.clone())))
        .unzip();
    let settings = Settings {
        lease: None,
        credentials: Credentials::in_dir(&dir, "DOCKER_CONFIG"),
        ..Default::default()
    };
    let now = Instant::now();
    let validity = |confirmed: Instant| crate::lease::Validity {
        from: now,
        until: now + Duration::from_secs(3600),
        term: 1,
        confirmed,
    };
    let (lease, renewed) = crate::lease::LeaseHandle::settable_over(3, validity(now));
    let telemetry = Telemetry::new(name, Duration::from_secs(60), None);
    let loaded = load(&dir, name, yaml);
    let mut plain = Plain::new(handles, loaded.project, settings, telemetry).under(lease);
    plain.membership.listed = true;
    settle_all(&mut plain).await;
    let on = |f: &[Arc<FakeEngine>]| f.iter().map(|f| f.names().len()).collect::<Vec<_>>();
    assert_eq!(on(&fakes), [1, 1, 1]);
    switches[2].send_modify(|s| set_up(s, false));
    let again = Mode::pass(&mut plain, Wake::default()).await;
    assert!(
        again.is_some_and(|d| d <= Duration::from_millis(100)),
        "{again:?}"
    );
    settle_all(&mut plain).await;
    assert_eq!(
        on(&fakes[..2]),
        [1, 1],
        "the lease last confirmed before n3 was found down: nothing moves"
    );
    renewed.send_replace(Some(validity(Instant::now())));
    settle_all(&mut plain).await;
    assert_eq!(
        on(&fakes[..2]).iter().sum::<usize>(),
        3,
        "a majority answered after n3 went down: its replica moves"
    );
}

/// A switchable node's status going down (found down now) or up.
fn set_up(s: &mut crate::nodes::NodeStatus, up: bool) {
    s.up = up;
    s.down_at = (!up).then(Instant::now);
}

/// Ten passes: enough for any of the moves above to finish.
async fn settle_all(plain: &mut Plain) {
    for _ in 0..10 {
        Mode::pass(plain, Wake::default()).await;
    }
}

/// Nodes `n1`, `n2`... (at 10.0.0.1, 10.0.0.2...) on the fakes, always up; `watched`: as
/// nodes whose events reach the loop (kept and patched between lists).
fn fixed_nodes(fakes: &[Arc<FakeEngine>], watched: bool) -> Vec<NodeHandle> {
    fakes
        .iter()
        .enumerate()
        .map(|(i, fake)| {
            let args = ConnectArgs {
                host: Some(format!("tcp://10.0.0.{}:2375", i + 1)),
                ..Default::default()
            };
            let spec = NodeSpec {
                name: format!("n{}", i + 1),
                endpoint: Endpoint::resolve(&args, &Default::default()).unwrap(),
                labels: BTreeMap::new(),
                availability: Default::default(),
            };
            let engine = Client::from(fake.clone());
            if watched {
                NodeHandle::fixed_watched(spec, engine)
            } else {
                NodeHandle::fixed(spec, engine)
            }
        })
        .collect()
}

/// A node found down while an action on it hangs (a partitioned engine answers nothing
/// until its timeouts, 20 s and more): the action is abandoned at once, counts for no
/// backoff, and the next pass places the replica on a node that answers.
#[tokio::test]
async fn an_action_on_a_node_found_down_meanwhile_is_abandoned_and_the_replica_moves() {
    let name = "abandoned";
    let dir = std::env::temp_dir().join(format!("drover-plain-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = "services:
  web:
    image: img
    deploy: { replicas: 2 }
x-drover:
  nodes:
    - { name: n1, host: tcp://10.0.0.1:2375 }
    - { name: n2, host: tcp://10.0.0.2:2375 }
";
    let fakes: Vec<Arc<FakeEngine>> = (0..2).map(|_| Arc::new(FakeEngine::default())).collect();
    let (handles, switches): (Vec<NodeHandle>, Vec<_>) = fixed_nodes(&fakes, false)
        .into_iter()
        .zip(&fakes)
        .map(|(h, fake)| NodeHandle::switchable(h.config.clone(), Client::from(fake.clone())))
        .unzip();
    let settings = Settings {
        lease: None,
        credentials: Credentials::in_dir(&dir, "DOCKER_CONFIG"),
        ..Default::default()
    };
    let telemetry = Telemetry::new(name, Duration::from_secs(60), None);
    let loaded = load(&dir, name, yaml);
    let mut plain = Plain::new(handles, loaded.project, settings, telemetry.clone());
    plain.membership.listed = true;
    settle_all(&mut plain).await;
    let on = |f: &[Arc<FakeEngine>]| f.iter().map(|f| f.names().len()).collect::<Vec<_>>();
    assert_eq!(on(&fakes), [1, 1]);
    // n2's replica is removed, and n2's creates hang from now on.
    let lost = fakes[1].names()[0].clone();
    fakes[1].remove_by_other(&lost);
    fakes[1].stall_verb("create", Some(Duration::from_secs(600)));
    let switch = switches[1].clone();
    let down = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        switch.send_modify(|s| set_up(s, false));
    });
    let started = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(30),
        Mode::pass(&mut plain, Wake::default()),
    )
    .await
    .expect("the pass does not wait on the hung create");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    down.await.unwrap();
    let status = crate::telemetry::status::snapshot(&telemetry);
    let web = status.services.iter().find(|s| s.name == "web").unwrap();
    assert_ne!(web.state.as_deref(), Some("crash-loop"), "{web:?}");
    settle_all(&mut plain).await;
    assert_eq!(on(&fakes[..1]), [2], "the replica runs on n1");
}

/// A patch that takes one container away and brings another in leaves the node as many
/// containers as before: its containers are classified again all the same (in debug builds
/// the planner checks the groups kept for a node against its snapshot), and the plan sees
/// both: the removed replica is created again, the copy started by hand is removed.
#[tokio::test]
async fn a_patch_that_removes_one_container_and_adds_another_is_planned_from_both() {
    use crate::engine::model::ContainerCreateBody;
    use crate::labels::{LABEL_PROJECT, LABEL_SERVICE, LABEL_SLOT};
    let mut w = World::new(
        "swap",
        "services:\n  web:\n    image: app:1\n    scale: 2\n  db:\n    image: app:1\n",
    );
    w.watch(Duration::from_secs(3600));
    w.settle().await;
    let gone = w.id("swap-web-2").await;
    w.fake.remove_by_other("swap-web-2");
    let labels = [
        (LABEL_PROJECT, "swap"),
        (LABEL_SERVICE, "db"),
        (LABEL_SLOT, "2"),
    ];
    let body = ContainerCreateBody {
        image: Some("app:1".into()),
        labels: Some(labels.map(|(k, v)| (k.to_string(), v.to_string())).into()),
        ..Default::default()
    };
    let copy = w
        .fake
        .create_container("by-hand", None, body)
        .await
        .unwrap();
    w.fake.start_container(&copy).await.unwrap();
    w.fake.take_calls();
    let calls = w.all_calls(named(&[&gone, &copy])).await;
    assert_eq!(lists(&calls), 0, "{calls:?}");
    let made = |c: &str| calls.iter().any(|x| x == c);
    assert!(
        made("create swap-web-2") && made("start swap-web-2"),
        "{calls:?}"
    );
    assert!(made("remove by-hand"), "{calls:?}");
}

/// A resync list that agrees with the view the events kept may give its containers in
/// another order (an engine promises none): the groups kept for the node are positions in
/// its snapshot, and are taken again (in debug builds the planner checks them), so a crash
/// after it restarts the one replica and creates nothing.
#[tokio::test]
async fn a_resync_in_another_order_keeps_each_replica_in_its_service() {
    let mut w = World::new(
        "order",
        "services:\n  web:\n    image: app:1\n    scale: 3\n  db:\n    image: app:1\n    scale: 2\n",
    );
    w.watch(Duration::from_secs(3600));
    w.settle().await;
    for (reversed, crashed) in [(true, "order-web-2"), (false, "order-db-1")] {
        w.fake.reverse_lists(reversed);
        w.plain.settings.resync_interval = Duration::from_secs(60);
        w.plain.due.clear();
        let calls = w.resync_calls(Wake::default()).await;
        assert_eq!(lists(&calls), 1, "the resync ran: {calls:?}");
        let id = w.id(crashed).await;
        w.fake.exit(crashed, 1);
        let calls = changes(w.all_calls(named(&[&id])).await);
        assert_eq!(calls, [format!("start {crashed}")]);
    }
}
