//! Executor scenarios against the in-memory engine: the exact calls each makes, and what
//! the engine holds after.

use std::collections::HashMap;

use super::{Executor, Outcome, Volumes};
use crate::config::{LoadOptions, Project, load};
use crate::engine::fake::FakeEngine;
use crate::engine::{Credentials, Kind};
use crate::plan::{Action, Reason};

/// A `DOCKER_CONFIG` without a `config.json`: no logins.
fn no_credentials() -> Credentials {
    Credentials::in_dir("/nonexistent/drover-test", "DOCKER_CONFIG")
}

/// `web` on an image that declares `VOLUME /data`, one replica per slot.
fn project() -> Project {
    let dir = std::env::temp_dir().join(format!(
        "drover-execute-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("compose.yml"),
        "services:\n  web:\n    image: db\n    environment: { V: \"1\" }\n",
    )
    .unwrap();
    let loaded = load(&LoadOptions {
        cwd: dir.clone(),
        project_name: Some("demo".into()),
        ..Default::default()
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    loaded.project
}

fn run(engine: FakeEngine, project: &Project, actions: &[Action]) -> (FakeEngine, Vec<Outcome>) {
    run_with(engine, project, actions, &no_credentials())
}

fn run_with(
    engine: FakeEngine,
    project: &Project,
    actions: &[Action],
    credentials: &Credentials,
) -> (FakeEngine, Vec<Outcome>) {
    let nodes = HashMap::from([("n1".to_string(), engine)]);
    let executor = Executor {
        nodes: &nodes,
        project,
        parallel: 1,
        credentials,
        term: None,
        gone: None,
        digests: Default::default(),
    };
    let mut outcomes = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(executor.execute(actions, |o| outcomes.push(o)));
    let engine = nodes.into_values().next().unwrap();
    (engine, outcomes)
}

fn create(slot: u32) -> Action {
    Action::create("web", slot, "n1", Reason::Missing)
}

fn with(engine: FakeEngine, project: &Project, action: Action) -> (FakeEngine, Outcome) {
    let (engine, mut outcomes) = run(engine, project, &[action]);
    (engine, outcomes.remove(0))
}

/// The first replica, created and started; returns its id and its anonymous volume.
fn first(project: &Project) -> (FakeEngine, String, String) {
    let (engine, o) = with(
        FakeEngine::with_image_volumes(&["/data"]),
        project,
        create(1),
    );
    assert_eq!(o.error, None);
    assert_eq!(
        engine.take_calls(),
        vec!["inspect image db", "create demo-web-1 ", "start demo-web-1"]
    );
    let id = engine_id(&engine, "demo-web-1");
    let volume = volume_of(&engine, "demo-web-1");
    (engine, id, volume)
}

fn engine_id(engine: &FakeEngine, name: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let c = rt
        .block_on(crate::engine::Engine::inspect_container(engine, name))
        .unwrap();
    engine.take_calls();
    c.id.unwrap()
}

fn volume_of(engine: &FakeEngine, name: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let c = rt
        .block_on(crate::engine::Engine::inspect_container(engine, name))
        .unwrap();
    engine.take_calls();
    c.mounts.unwrap()[0].name.clone().unwrap()
}

fn recreate(id: &str, to: &str) -> Action {
    Action::recreate("web", 1, "n1", id, to, Reason::ConfigChanged)
}

#[test]
fn a_recreate_hands_the_anonymous_volume_to_the_new_container_before_removing_the_old() {
    let p = project();
    let (engine, id, volume) = first(&p);
    let (engine, o) = with(engine, &p, recreate(&id, "n1"));
    assert_eq!(o.error, None);
    assert_eq!(o.volumes, Volumes::TakenOver(1));
    let aside = format!("demo-web-1-old-{}", &id[..12]);
    let v = &volume[..12];
    assert_eq!(
        engine.take_calls(),
        vec![
            "inspect demo-web-1".to_string(),
            "stop demo-web-1".into(),
            "inspect demo-web-1".into(),
            format!("rename demo-web-1 {aside}"),
            "inspect image db".into(),
            format!("create demo-web-1 /data={v}"),
            "start demo-web-1".into(),
            format!("stop {aside}"),
            format!("remove {aside}"),
            format!("remove-volume {v}"),
        ]
    );
    assert!(engine.volume_exists(&volume), "the new container holds it");
    assert_eq!(engine.names(), vec!["demo-web-1"]);
    assert_eq!(engine.mounts("demo-web-1"), vec![format!("/data={v}")]);
}

#[test]
fn a_failed_create_leaves_the_old_copy_and_its_volume_for_the_next_pass() {
    let p = project();
    let (engine, id, volume) = first(&p);
    engine.fail_next("create", Kind::Api(500));
    let (engine, o) = with(engine, &p, recreate(&id, "n1"));
    assert!(o.error.is_some());
    let aside = format!("demo-web-1-old-{}", &id[..12]);
    assert_eq!(
        engine.names(),
        vec![aside],
        "stopped, moved aside, not removed"
    );
    assert!(engine.volume_exists(&volume));
    assert!(!engine.take_calls().iter().any(|c| c.starts_with("remove")));
}

#[test]
fn a_slot_removed_for_good_takes_a_volume_it_took_over_with_it() {
    let p = project();
    let (engine, id, volume) = first(&p);
    let (engine, _) = with(engine, &p, recreate(&id, "n1"));
    let new = engine_id(&engine, "demo-web-1");
    engine.take_calls();
    let remove = Action::remove("web", 1, "n1", new, Reason::ScaleDown);
    let (engine, o) = with(engine, &p, remove);
    assert_eq!(o.volumes, Volumes::Removed(1));
    assert!(!engine.volume_exists(&volume), "leaked");
    assert!(engine.names().is_empty());
}

#[test]
fn a_move_to_another_node_cannot_carry_the_volume() {
    let p = project();
    let (engine, id, volume) = first(&p);
    let nodes = HashMap::from([
        ("n1".to_string(), engine),
        ("n2".to_string(), FakeEngine::with_image_volumes(&["/data"])),
    ]);
    let credentials = no_credentials();
    let executor = Executor {
        nodes: &nodes,
        project: &p,
        parallel: 1,
        term: None,
        credentials: &credentials,
        gone: None,
        digests: Default::default(),
    };
    let mut outcomes = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(executor.execute(&[recreate(&id, "n2")], |o| outcomes.push(o)));
    assert_eq!(outcomes[0].error, None);
    assert_eq!(outcomes[0].volumes, Volumes::Removed(1));
    assert!(!nodes["n1"].volume_exists(&volume));
    assert_eq!(nodes["n2"].names(), vec!["demo-web-1"]);
    // A fresh anonymous volume from the image, nothing handed over.
    assert_eq!(
        nodes["n2"].take_calls(),
        vec!["inspect image db", "create demo-web-1 ", "start demo-web-1"]
    );
}

#[test]
fn a_pull_logs_in_to_the_images_registry_and_a_broken_login_fails_that_pull_only() {
    let p = project();
    let dir = std::env::temp_dir().join(format!("drover-execute-creds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // `db` is Docker Hub's: its login is under Hub's key. (`alice:pw-1` in base64.)
    std::fs::write(
        dir.join("config.json"),
        r#"{"auths": {"https://index.docker.io/v1/": {"auth": "YWxpY2U6cHctMQ=="}}}"#,
    )
    .unwrap();
    let credentials = Credentials::in_dir(&dir, "DOCKER_CONFIG");
    let engine = FakeEngine::default();
    engine.require_images();
    let (engine, o) = run_with(engine, &p, &[create(1)], &credentials);
    assert_eq!(o[0].error, None);
    assert_eq!(engine.pulled_as(), [("db".into(), Some("alice".into()))]);

    std::fs::write(
        dir.join("config.json"),
        r#"{"auths": {"x": {"auth": "YWxpY2U6cHctMQ=="#,
    )
    .unwrap();
    let engine = FakeEngine::default();
    engine.require_images();
    engine.add_image("other");
    let (engine, o) = run_with(engine, &p, &[create(1)], &credentials);
    let e = o[0].error.clone().unwrap();
    assert!(
        e.starts_with(&format!(
            "pull db: cannot read registry credentials from {}",
            dir.join("config.json").display()
        )),
        "{e}"
    );
    assert!(
        !e.contains('\n') && !e.contains("YWxp") && !e.contains("pw-1"),
        "{e}"
    );
    assert!(engine.pulled_as().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_image_is_pulled_and_the_create_tried_again() {
    let p = project();
    let engine = FakeEngine::default();
    engine.require_images();
    let (engine, o) = with(engine, &p, create(1));
    assert_eq!(o.error, None);
    assert_eq!(
        engine.take_calls(),
        vec![
            "inspect image db",
            "create demo-web-1 ",
            "pull db",
            "inspect image db",
            "create demo-web-1 ",
            "start demo-web-1"
        ]
    );
    assert_eq!(engine.state_of("demo-web-1"), Some("running"));
}

/// Each node has its own actions in flight: a node whose engine answers slowly holds none
/// of another node's actions back.
#[test]
fn a_slow_node_holds_no_other_nodes_actions_back() {
    let project = project();
    let slow = FakeEngine::default();
    slow.stall_verb("create", Some(std::time::Duration::from_millis(200)));
    let nodes = HashMap::from([
        ("n1".to_string(), slow),
        ("n2".to_string(), FakeEngine::default()),
    ]);
    let credentials = no_credentials();
    let executor = Executor {
        nodes: &nodes,
        project: &project,
        parallel: 2,
        credentials: &credentials,
        term: None,
        gone: None,
        digests: Default::default(),
    };
    let actions: Vec<Action> = (1..=4)
        .map(create)
        .chain([Action::create("web", 5, "n2", Reason::Missing)])
        .collect();
    let mut done = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(executor.execute(&actions, |o| {
        assert!(o.error.is_none(), "{:?}", o.error);
        done.push(o.action.node.clone());
    }));
    assert_eq!(done, ["n2", "n1", "n1", "n1", "n1"]);
}

#[test]
fn a_node_is_asked_for_an_images_digest_once_for_all_the_replicas_an_execution_creates() {
    let p = project();
    let engine = FakeEngine::default();
    engine.add_local_digest("db", "sha256:d");
    let (engine, outcomes) = run(engine, &p, &[create(1), create(2), create(3)]);
    assert!(outcomes.iter().all(|o| o.error.is_none()), "{outcomes:?}");
    let asked = |calls: Vec<String>| calls.iter().filter(|c| *c == "inspect image db").count();
    assert_eq!(asked(engine.take_calls()), 1);
    for slot in 1..=3 {
        let labels = engine.labels_of(&format!("demo-web-{slot}"));
        assert_eq!(labels[crate::labels::LABEL_IMAGE_DIGEST], "sha256:d");
    }
    // The next execution (the next pass) asks again: the image may have been pulled since.
    engine.add_local_digest("db", "sha256:e");
    let (engine, _) = run(engine, &p, &[create(4)]);
    assert_eq!(asked(engine.take_calls()), 1);
    let labels = engine.labels_of("demo-web-4");
    assert_eq!(labels[crate::labels::LABEL_IMAGE_DIGEST], "sha256:e");
}
