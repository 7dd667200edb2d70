use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config::autoscale::{COOLDOWN, SCALE_DOWN, SCALE_UP};
use crate::config::{ScaleTrigger, TriggerSource};

/// An HTTP server answering `{"n": N}` with the value of `n`, on a loopback port.
async fn serve(n: Arc<AtomicU64>) -> String {
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
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/")
}

fn spec(url: &str, max: u32, pinned: Option<u32>) -> Autoscale {
    Autoscale {
        min: 1,
        max,
        polling_interval: Duration::from_millis(50),
        scale_down_window: Duration::ZERO,
        scale_up_window: Duration::ZERO,
        tolerance: 0.1,
        cooldown: COOLDOWN,
        scale_up: SCALE_UP,
        scale_down: SCALE_DOWN,
        triggers: vec![ScaleTrigger {
            name: "n".into(),
            target: 10.0,
            activation: 0.0,
            timeout: Duration::from_secs(2),
            source: TriggerSource::Http {
                url: url.into(),
                pointer: "/n".into(),
                token: None,
            },
        }],
        pinned,
        floor: None,
    }
}

async fn until(a: &mut Autoscaler, what: &str, f: impl Fn(&Counts) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !f(&a.counts()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {:?}",
            a.counts()
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), a.changed()).await;
    }
}

#[tokio::test]
async fn targets_follow_the_trigger_a_pinned_service_is_left_alone_and_a_reload_rebounds() {
    let n = Arc::new(AtomicU64::new(30));
    let url = serve(n.clone()).await;
    let telemetry = Telemetry::new("as", Duration::from_secs(60), None);
    let specs = Specs {
        services: [
            ("api".to_string(), spec(&url, 5, None)),
            ("web".to_string(), spec(&url, 5, Some(2))),
        ]
        .into(),
        // No engine to count on: the files' counts.
        fallback: [("api".to_string(), 1), ("web".to_string(), 1)].into(),
    };
    let cancel = CancellationToken::new();
    let (mut a, task) =
        Autoscaler::spawn("as", specs.clone(), None, telemetry.clone(), cancel.clone());
    a.ready(Duration::from_secs(5)).await;
    // 30 / 10 per replica.
    until(&mut a, "api at 3", |c| c.get("api") == Some(&3)).await;
    assert!(
        !a.counts().contains_key("web"),
        "a pinned service has no target of the autoscaler's"
    );
    {
        let r = telemetry.lock();
        assert_eq!(r.autoscale["web"].pinned, Some(2));
        assert_eq!(r.autoscale["api"].triggers[0].value, Some(30.0));
        assert_eq!(
            r.autoscale_changes.get(&("api".to_string(), "up")),
            Some(&1)
        );
    }
    // A lower max moves the target into the new bounds at once.
    let mut lower = specs.clone();
    lower.services.get_mut("api").unwrap().max = 2;
    a.reload(lower);
    until(&mut a, "api at 2", |c| c.get("api") == Some(&2)).await;
    // The value drops: down to min (no window here).
    n.store(0, Ordering::SeqCst);
    until(&mut a, "api at 1", |c| c.get("api") == Some(&1)).await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_trigger_that_stops_answering_holds_and_is_counted() {
    let n = Arc::new(AtomicU64::new(40));
    let url = serve(n.clone()).await;
    let telemetry = Telemetry::new("as", Duration::from_secs(60), None);
    let mut s = spec(&url, 8, None);
    let specs = Specs {
        services: [("api".to_string(), s.clone())].into(),
        fallback: [("api".to_string(), 1)].into(),
    };
    let cancel = CancellationToken::new();
    let (mut a, _task) = Autoscaler::spawn("as", specs, None, telemetry.clone(), cancel.clone());
    until(&mut a, "api at 4", |c| c.get("api") == Some(&4)).await;
    // Point it at a port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    if let TriggerSource::Http { url, .. } = &mut s.triggers[0].source {
        *url = format!("http://127.0.0.1:{port}/");
    }
    a.reload(Specs {
        services: [("api".to_string(), s)].into(),
        fallback: [("api".to_string(), 1)].into(),
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let errors = telemetry
            .lock()
            .autoscale_errors
            .get(&("api".to_string(), "n".to_string()))
            .copied()
            .unwrap_or(0);
        if errors >= 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "errors counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.counts().get("api"), Some(&4), "held");
    let r = telemetry.lock();
    assert_eq!(r.autoscale["api"].limited_by, "error");
    assert!(r.autoscale["api"].triggers[0].error.is_some());
    assert!(
        r.autoscale["api"].last_poll.is_some(),
        "a poll without answers is a poll"
    );
    drop(r);
    cancel.cancel();
}

/// Replicas that cannot be counted until `ready` is set, then `n`.
struct Late {
    ready: std::sync::atomic::AtomicBool,
    n: u32,
}

impl Replicas for Late {
    fn count<'a>(&'a self, _service: &'a str) -> super::super::Reading<'a, u32> {
        Box::pin(async move {
            if self.ready.load(Ordering::SeqCst) {
                Ok(self.n)
            } else {
                Err("no engine is connected".into())
            }
        })
    }
    fn usage<'a>(
        &'a self,
        _service: &'a str,
    ) -> super::super::Reading<'a, Vec<crate::engine::model::Usage>> {
        Box::pin(async { Err("no stats".to_string()) })
    }
}

#[tokio::test]
async fn replicas_that_could_not_be_counted_at_start_are_counted_at_a_later_poll() {
    let n = Arc::new(AtomicU64::new(0));
    let url = serve(n.clone()).await;
    let telemetry = Telemetry::new("as", Duration::from_secs(60), None);
    let mut s = spec(&url, 8, None);
    s.scale_down_window = Duration::from_secs(60);
    let specs = Specs {
        services: [("api".to_string(), s)].into(),
        fallback: [("api".to_string(), 1)].into(),
    };
    let late = Arc::new(Late {
        ready: std::sync::atomic::AtomicBool::new(false),
        n: 5,
    });
    let cancel = CancellationToken::new();
    let (mut a, _task) =
        Autoscaler::spawn("as", specs, Some(late.clone()), telemetry, cancel.clone());
    a.ready(Duration::from_secs(5)).await;
    assert_eq!(
        a.counts().get("api"),
        Some(&1),
        "the files' count meanwhile"
    );
    late.ready.store(true, Ordering::SeqCst);
    // Counted: 5 running, and the window keeps them though the trigger says 0.
    until(&mut a, "api at 5", |c| c.get("api") == Some(&5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.counts().get("api"), Some(&5));
    cancel.cancel();
}
