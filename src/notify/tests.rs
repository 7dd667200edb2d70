use std::sync::Mutex;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A webhook receiver on a local port: answers each request with the next status of
/// `answers` (then `then`), after `delay`, and records every request's body.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Receiver {
    async fn start(answers: &[u16], then: u16, delay: Duration) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/hooks/T0k3n-secret?key=abc",
            listener.local_addr().unwrap()
        );
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(VecDeque::from(answers.to_vec())));
        let seen = bodies.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (seen, answers) = (seen.clone(), answers.clone());
                tokio::spawn(async move {
                    let Some(body) = read_request(&mut conn).await else {
                        return;
                    };
                    let status = answers.lock().unwrap().pop_front().unwrap_or(then);
                    seen.lock()
                        .unwrap()
                        .push(serde_json::from_str(&body).unwrap());
                    tokio::time::sleep(delay).await;
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
        Receiver { url, bodies }
    }

    fn ids(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect()
    }

    fn target(&self, events: &[Kind]) -> Target {
        let hook = webhook(events);
        Target::new(&hook, &self.url, "test").unwrap()
    }
}

/// One request's body (headers up to the blank line, then content-length bytes).
async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Some(String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string());
            }
        }
    }
}

fn webhook(events: &[Kind]) -> Webhook {
    Webhook {
        name: "ops".into(),
        url: UrlSource::Env("UNUSED".into()),
        events: if events.is_empty() {
            Kind::ALL.into_iter().collect()
        } else {
            events.iter().copied().collect()
        },
        timeout: Some(Duration::from_secs(5)),
    }
}

fn fast() -> Retry {
    Retry {
        attempts: 3,
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn counted(t: &Telemetry, result: &'static str) -> u64 {
    t.lock()
        .notifications
        .get(&("ops".to_string(), result))
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_500_then_a_200_delivers_the_event_once_after_one_retry() {
    let r = Receiver::start(&[500], 200, Duration::ZERO).await;
    let t = Telemetry::new("p", Duration::from_secs(60), None);
    let cancel = CancellationToken::new();
    let n = spawn(vec![r.target(&[])], "p", &t, fast(), &cancel);
    n.notifier.send(Event::scale("web", 1, 3));
    until("sent", || counted(&t, "sent") == 1).await;
    let ids = r.ids();
    assert_eq!(ids.len(), 2, "one retry: {ids:?}");
    assert_eq!(ids[0], ids[1], "the same event, the same id");
    let body = r.bodies.lock().unwrap()[1].clone();
    assert_eq!(body["event"], "scale");
    assert_eq!(body["project"], "p");
    assert_eq!(body["service"], "web");
    assert_eq!(body["desired"], 3);
    assert_eq!(counted(&t, "failed"), 0);
    cancel.cancel();
}

#[tokio::test]
async fn events_go_in_order_each_once_while_an_earlier_one_is_retried() {
    let r = Receiver::start(&[500, 503], 200, Duration::ZERO).await;
    let t = Telemetry::new("p", Duration::from_secs(60), None);
    let cancel = CancellationToken::new();
    let n = spawn(vec![r.target(&[])], "p", &t, fast(), &cancel);
    for i in 1..=3 {
        n.notifier.send(Event::scale("web", i, i + 1));
    }
    until("three sent", || counted(&t, "sent") == 3).await;
    let ids = r.ids();
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert!(ids[0] == ids[1] && ids[1] == ids[2], "{ids:?}");
    let mut distinct = ids.clone();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        3,
        "each event sent until taken, then never again"
    );
    let desired: Vec<u64> = r.bodies.lock().unwrap()[2..]
        .iter()
        .map(|b| b["desired"].as_u64().unwrap())
        .collect();
    assert_eq!(desired, [2, 3, 4], "in the order sent");
    cancel.cancel();
}

#[tokio::test]
async fn attempts_are_bounded_and_a_refusal_is_not_repeated() {
    let r = Receiver::start(&[500, 500, 500, 404], 200, Duration::ZERO).await;
    let t = Telemetry::new("p", Duration::from_secs(60), None);
    let cancel = CancellationToken::new();
    let n = spawn(vec![r.target(&[])], "p", &t, fast(), &cancel);
    n.notifier.send(Event::node_up("n1"));
    n.notifier.send(Event::node_up("n2"));
    n.notifier.send(Event::node_up("n3"));
    until("two failed, one sent", || {
        counted(&t, "failed") == 2 && counted(&t, "sent") == 1
    })
    .await;
    let nodes: Vec<String> = r
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| b["node"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(nodes, ["n1", "n1", "n1", "n2", "n3"]);
    let metrics = crate::telemetry::metrics::render(&t);
    assert!(
        metrics
            .contains(r#"drover_notifications_total{project="p",webhook="ops",result="failed"} 2"#),
        "{metrics}"
    );
    cancel.cancel();
}

#[tokio::test]
async fn a_slow_webhook_times_out_and_the_error_never_names_the_url() {
    let r = Receiver::start(&[], 200, Duration::from_secs(30)).await;
    let t = Telemetry::new("p", Duration::from_secs(60), None);
    let cancel = CancellationToken::new();
    let mut target = r.target(&[]);
    target.timeout = Duration::from_millis(100);
    let n = spawn(vec![target], "p", &t, fast(), &cancel);
    n.notifier.send(Event::node_up("n1"));
    until("failed", || counted(&t, "failed") == 1).await;
    assert_eq!(r.ids().len(), 3, "three attempts");

    // Nothing listens: the connection error is worded without the URL.
    let url: hyper::Uri = "http://user:pw@127.0.0.1:9/hooks/T0k3n?key=abc"
        .parse()
        .unwrap();
    let text = format!(
        "error sending request for url ({url}): connect to 127.0.0.1:9 failed; path /hooks/T0k3n?key=abc"
    );
    let clean = deliver::redact(&text, &url);
    for part in ["T0k3n", "pw@", "key=abc"] {
        assert!(!clean.contains(part), "{clean}");
    }
    cancel.cancel();
}

#[tokio::test]
async fn each_webhook_gets_the_events_it_asked_for() {
    let all = Receiver::start(&[], 200, Duration::ZERO).await;
    let scale = Receiver::start(&[], 200, Duration::ZERO).await;
    let t = Telemetry::new("p", Duration::from_secs(60), None);
    let cancel = CancellationToken::new();
    let mut only = scale.target(&[Kind::Scale]);
    only.name = "scale-only".into();
    let n = spawn(vec![all.target(&[]), only], "p", &t, fast(), &cancel);
    n.notifier
        .send(Event::node_down("n1", "unreachable", "no answer to a ping"));
    n.notifier.send(Event::scale("web", 2, 1));
    until("both", || all.ids().len() == 2 && scale.ids().len() == 1).await;
    assert_eq!(scale.bodies.lock().unwrap()[0]["event"], "scale");
    cancel.cancel();
}

#[tokio::test]
async fn shutdown_flushes_what_is_queued() {
    let r = Receiver::start(&[], 200, Duration::ZERO).await;
    let t = Telemetry::new("p", Duration::from_secs(60), None);
    let cancel = CancellationToken::new();
    let n = spawn(vec![r.target(&[])], "p", &t, Retry::default(), &cancel);
    n.notifier.send(Event::update_started("web", 2));
    n.notifier.send(Event::update_finished("web", 2, false));
    cancel.cancel();
    let joined =
        tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(n.tasks)).await;
    assert!(joined.is_ok(), "the sender ends once flushed");
    assert_eq!(r.ids().len(), 2);
}

#[test]
fn a_full_queue_drops_the_oldest_and_counts_it() {
    let t = Telemetry::new("p", Duration::from_secs(60), None);
    t.add_webhook("ops");
    let q = Arc::new(Queue {
        name: "ops".into(),
        events: Kind::ALL.into_iter().collect(),
        items: Mutex::new(VecDeque::new()),
        ready: tokio::sync::Notify::new(),
        cap: 2,
    });
    let n = Notifier {
        inner: Some(Arc::new(Inner {
            project: "p".into(),
            queues: vec![q.clone()],
            boot: "b".into(),
            seq: AtomicU64::new(1),
            telemetry: t.clone(),
        })),
    };
    for i in 1..=4 {
        n.send(Event::scale("web", i, i + 1));
    }
    let left: Vec<String> = q.lock().iter().map(|e| e.id.clone()).collect();
    assert_eq!(left, ["b-3", "b-4"]);
    assert_eq!(t.lock().notifications_dropped["ops"], 2);
    let metrics = crate::telemetry::metrics::render(&t);
    assert!(
        metrics.contains(r#"drover_notifications_dropped_total{project="p",webhook="ops"} 2"#),
        "{metrics}"
    );
    // No webhooks: sending does nothing.
    Notifier::default().send(Event::node_up("n1"));
}

#[test]
fn backoff_doubles_with_jitter_up_to_the_cap() {
    let r = Retry {
        attempts: 5,
        initial: Duration::from_millis(400),
        max: Duration::from_secs(2),
    };
    for (failed, full) in [(1, 400), (2, 800), (3, 1600), (4, 2000), (9, 2000)] {
        let d = r.delay(failed).as_millis() as u64;
        assert!(
            (full / 2..=full).contains(&d),
            "after {failed} failures: {d} ms, expected {}..={full}",
            full / 2
        );
    }
}

#[test]
fn the_url_is_read_from_its_file_or_variable_and_never_quoted() {
    let dir = std::env::temp_dir().join(format!("drover-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hook");
    std::fs::write(&file, "https://hooks.example/T0k3n\n").unwrap();
    let mut hook = webhook(&[]);
    hook.url = UrlSource::File(file.clone());
    let t = Target::resolve(&hook).unwrap();
    assert_eq!(t.url.to_string(), "https://hooks.example/T0k3n");
    assert_eq!(t.name, "ops");

    std::fs::write(&file, "hooks.example/T0k3n\n").unwrap();
    let e = Target::resolve(&hook).unwrap_err();
    assert!(!e.contains("T0k3n"), "{e}");
    assert!(
        e.contains("does not hold an http:// or https:// URL"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let e = Target::resolve(&hook).unwrap_err();
    assert!(
        e.starts_with("x-drover.notify webhook ops: cannot read the file"),
        "{e}"
    );

    hook.url = UrlSource::Env("DROVER_TEST_NO_SUCH_VARIABLE".into());
    let e = Target::resolve(&hook).unwrap_err();
    assert_eq!(
        e,
        "x-drover.notify webhook ops: the environment variable DROVER_TEST_NO_SUCH_VARIABLE (url_env) is not set"
    );
}

#[test]
fn the_payload_has_the_stable_fields_and_leaves_out_what_does_not_apply() {
    let mut e = Event::gave_up("worker", 2, "n1", Some(3));
    e.id = "x-1".into();
    e.project = "p".into();
    e.time = "2026-01-02T03:04:05.000Z".into();
    assert_eq!(
        serde_json::to_value(&e).unwrap(),
        serde_json::json!({
            "id": "x-1",
            "event": "gave-up",
            "project": "p",
            "service": "worker",
            "node": "n1",
            "slot": 2,
            "reason": "max-attempts",
            "time": "2026-01-02T03:04:05.000Z",
            "message": "worker replica 2 keeps failing (exit code 3): left exited, no more restarts"
        })
    );
    let f = Event::image_followed("web", "nginx:1", Some("sha256:ab"));
    assert_eq!(f.event, Kind::ImageFollowed);
    assert_eq!(f.image.as_deref(), Some("nginx:1"));
    assert_eq!(
        Event::rollback("web", Some(2), "update-failed").actual,
        Some(2)
    );
}
