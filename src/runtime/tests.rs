//! The loop itself, with a probe for a mode: what wakes a pass, how a config edit, a
//! broken edit and SIGHUP reach the mode, and that shutdown joins what was spawned. No
//! engine: the modes' own passes are tested with fake engines where they live.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{self, LoadOptions, Loaded};
use crate::telemetry::Telemetry;

/// What the probe saw, shared with the test.
#[derive(Debug, Default)]
struct Seen {
    /// One entry per pass: the containers its wake named, sorted.
    passes: Vec<Vec<String>>,
    /// One entry per adopted config: the replica count of `web`.
    adopted: Vec<u32>,
}

/// A mode that records what the loop hands it; adopting a config whose `web` has
/// `refuse` replicas fails, as a mode that cannot use a config does.
struct Probe {
    seen: Arc<Mutex<Seen>>,
    replicas: u32,
    refuse: u32,
}

impl Mode for Probe {
    async fn start(&mut self, _cancel: &CancellationToken) {}

    fn adopt(&mut self, loaded: Loaded) -> Result<Adopted, String> {
        let replicas = loaded.project.services["web"].replicas;
        if replicas == self.refuse {
            return Err(format!("cannot run {replicas} replicas"));
        }
        self.seen.lock().unwrap().adopted.push(replicas);
        let changed = replicas != self.replicas;
        self.replicas = replicas;
        Ok(Adopted {
            changed,
            warnings: vec![format!("warned about {replicas}")],
        })
    }

    async fn pass(&mut self, wake: Wake) -> Option<Duration> {
        let mut changed: Vec<String> = wake.changed.into_iter().collect();
        changed.sort();
        self.seen.lock().unwrap().passes.push(changed);
        None
    }

    fn left_running(&self) -> &'static str {
        "probes"
    }
}

struct Fixture {
    dir: PathBuf,
    seen: Arc<Mutex<Seen>>,
    trigger: Arc<Trigger>,
    telemetry: Telemetry,
    reload: tokio::sync::watch::Sender<()>,
    cancel: CancellationToken,
    run: tokio::task::JoinHandle<()>,
    /// Set by a task the runtime was given, when it ends.
    joined: Arc<AtomicBool>,
    /// The notifications the loop sent.
    sent: Box<dyn Fn() -> Vec<crate::notify::Event> + Send>,
}

fn write(dir: &std::path::Path, replicas: &str) {
    let text = format!("services:\n  web:\n    image: busybox\n    scale: {replicas}\n");
    std::fs::write(dir.join("compose.yml"), text).unwrap();
}

/// A runtime over a probe, a compose file in its own directory checked every 50 ms, and
/// a resync of `resync`.
fn start(name: &str, resync: Duration) -> Fixture {
    start_with(name, resync, |dir| write(dir, "1"))
}

/// [`start`] over the compose file `compose` writes.
fn start_with(name: &str, resync: Duration, compose: impl FnOnce(&std::path::Path)) -> Fixture {
    let dir = std::env::temp_dir().join(format!("drover-runtime-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    compose(&dir);
    let load = LoadOptions {
        files: vec![dir.join("compose.yml")],
        project_name: Some(name.into()),
        cwd: dir.clone(),
        ..Default::default()
    };
    let loaded = config::load(&load).unwrap();
    let (reload, rx) = tokio::sync::watch::channel(());
    let cancel = CancellationToken::new();
    let (notifier, sent) = crate::notify::Notifier::recording();
    let telemetry = Telemetry::new(name, Duration::from_secs(60), None);
    let trigger = Arc::new(Trigger::default());
    let joined = Arc::new(AtomicBool::new(false));
    let task = {
        let (cancel, joined) = (cancel.child_token(), joined.clone());
        tokio::spawn(async move {
            cancel.cancelled().await;
            // Ends a little after the cancellation: only a join waits for this.
            tokio::time::sleep(Duration::from_millis(100)).await;
            joined.store(true, Ordering::SeqCst);
        })
    };
    let parts = Parts {
        project: name.into(),
        source: ConfigSource::new(load, &loaded, Duration::from_millis(50), rx),
        trigger: trigger.clone(),
        lease: Lease::none(),
        resync,
        telemetry: telemetry.clone(),
        tasks: vec![task],
        notifier,
        replicas: None,
    };
    let seen = Arc::new(Mutex::new(Seen::default()));
    let probe = Probe {
        seen: seen.clone(),
        replicas: 1,
        refuse: 7,
    };
    let runtime = Runtime::new(probe, parts, &loaded, &[]);
    let run = tokio::spawn(runtime.run(cancel.clone()));
    Fixture {
        dir,
        seen,
        trigger,
        telemetry,
        reload,
        cancel,
        run,
        joined,
        sent: Box::new(sent),
    }
}

impl Fixture {
    /// Wait (at most 5 s) until `cond` holds for what the probe saw.
    async fn until(&self, what: &str, cond: impl Fn(&Seen) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if cond(&self.seen.lock().unwrap()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: {:?}",
                self.seen.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn passes(&self) -> usize {
        self.seen.lock().unwrap().passes.len()
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.run)
            .await
            .expect("the loop ends promptly on cancel")
            .unwrap();
        assert!(
            self.joined.load(Ordering::SeqCst),
            "shutdown joins the spawned tasks"
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_pass_runs_at_start_and_for_each_event_with_the_containers_it_named() {
    let f = start("wake", Duration::from_secs(600));
    assert!(!f.telemetry.lock().acting, "not acting before the start");
    f.until("a first pass", |s| s.passes.len() == 1).await;
    assert!(
        f.telemetry.lock().acting,
        "acting under the (always held) lease"
    );
    f.trigger.poke(Some("c2"), "die");
    f.trigger.poke(Some("c1"), "destroy");
    // Each event wakes a pass; events that come together may share one.
    f.until("passes for the events", |s| {
        let named: Vec<&String> = s.passes[1..].iter().flatten().collect();
        named.contains(&&"c1".to_string()) && named.contains(&&"c2".to_string())
    })
    .await;
    f.stop().await;
}

#[tokio::test]
async fn the_resync_passes_again_with_no_event() {
    let f = start("resync", Duration::from_millis(100));
    f.until("three passes", |s| s.passes.len() >= 3).await;
    assert!(f.seen.lock().unwrap().passes.iter().all(|p| p.is_empty()));
    f.stop().await;
}

#[tokio::test]
async fn an_edit_is_adopted_and_passed_and_a_broken_or_refused_one_keeps_the_last_good() {
    let f = start("edit", Duration::from_secs(600));
    f.until("a first pass", |s| s.passes.len() == 1).await;
    write(&f.dir, "3");
    f.until("the edit adopted and passed", |s| {
        s.adopted == vec![3] && s.passes.len() == 2
    })
    .await;
    // A file that does not load: nothing adopted, the failure recorded.
    std::fs::write(f.dir.join("compose.yml"), "services: [\n").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while f.telemetry.lock().reload_failures == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reload failure recorded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A config the mode refuses: the same.
    write(&f.dir, "7");
    while f.telemetry.lock().reload_failures < 2 {
        assert!(tokio::time::Instant::now() < deadline, "refusal recorded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(f.seen.lock().unwrap().adopted, vec![3]);
    // Fixed: adopted, and the failure cleared.
    write(&f.dir, "2");
    f.until("the fix adopted", |s| s.adopted == vec![3, 2])
        .await;
    assert_eq!(f.telemetry.lock().reload_error, None);
    // Each adopted change of the replica target notified once; refused ones not at all.
    let scaled: Vec<String> = (f.sent)().iter().map(|e| e.message.clone()).collect();
    assert_eq!(scaled, ["web scaled from 1 to 3", "web scaled from 3 to 2"]);
    f.stop().await;
}

#[tokio::test]
async fn an_edit_that_changes_nothing_passes_not_and_sighup_loads_again() {
    let f = start("same", Duration::from_secs(600));
    f.until("a first pass", |s| s.passes.len() == 1).await;
    // Same content, other bytes: loaded and adopted, but the mode says nothing changed.
    std::fs::write(
        f.dir.join("compose.yml"),
        "services:\n  web:\n    image: busybox\n    scale: 1 # same\n",
    )
    .unwrap();
    f.until("the edit adopted", |s| s.adopted == vec![1]).await;
    // SIGHUP loads again though no file changed; each load is one adoption.
    f.reload.send_replace(());
    f.until("loaded again on SIGHUP", |s| s.adopted == vec![1, 1])
        .await;
    // The edit woke no pass; SIGHUP does (the operator asked for a look).
    f.until("one pass for the SIGHUP", |s| s.passes.len() == 2)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(f.passes(), 2, "no pass besides the first and the SIGHUP's");
    f.stop().await;
}

/// An HTTP server answering `{"n": N}` on a loopback port, N as `n` says now.
async fn serve(n: Arc<std::sync::atomic::AtomicU64>) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let v = n.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let body = format!("{{\"n\": {v}}}");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn the_autoscalers_targets_reach_the_mode_wake_a_pass_and_are_notified() {
    let n = Arc::new(std::sync::atomic::AtomicU64::new(30));
    let addr = serve(n.clone()).await;
    let f = start_with("autoscale", Duration::from_secs(600), |dir| {
        let text = format!(
            "x-drover:\n  autoscale:\n    web:\n      max: 5\n      polling_interval: 100ms\n      \
             scale_down_window: 0s\n      triggers: [{{ type: http, url: \"http://{addr}/\", \
             pointer: /n, target: 10 }}]\nservices:\n  web:\n    image: busybox\n    scale: 1\n"
        );
        std::fs::write(dir.join("compose.yml"), text).unwrap();
    });
    // 30 / 10: the mode is handed 3 replicas, and a pass follows.
    f.until("3 replicas handed over", |s| s.adopted.contains(&3))
        .await;
    let passes = f.passes();
    n.store(10, Ordering::SeqCst);
    f.until("1 replica handed over, and a pass", |s| {
        s.adopted.last() == Some(&1) && s.passes.len() > passes
    })
    .await;
    let scaled: Vec<String> = (f.sent)().iter().map(|e| e.message.clone()).collect();
    assert!(
        scaled.starts_with(&[
            "web scaled from 1 to 3".to_string(),
            "web scaled from 3 to 1".to_string()
        ]),
        "{scaled:?}"
    );
    // An edit of the file keeps the autoscaler's target, not the file's count.
    let text = std::fs::read_to_string(f.dir.join("compose.yml")).unwrap();
    n.store(40, Ordering::SeqCst);
    f.until("4 replicas handed over", |s| s.adopted.last() == Some(&4))
        .await;
    let before = f.seen.lock().unwrap().adopted.len();
    std::fs::write(
        f.dir.join("compose.yml"),
        text.replace("scale: 1", "scale: 2"),
    )
    .unwrap();
    f.until("the edit adopted", |s| s.adopted.len() > before)
        .await;
    let after = f.seen.lock().unwrap().adopted[before..].to_vec();
    assert!(after.iter().all(|r| *r == 4), "{after:?}");
    f.stop().await;
}
