//! The lease task against fake engines: several fakes are several nodes; failures and
//! stalls are injected per node.

use super::*;
use crate::engine::connect::Transport;
use crate::engine::fake::FakeEngine;
use crate::engine::{Kind, model::RestartPolicy};
use tokio::task::JoinHandle;

/// One drover's lease task over `fakes` (one node each), as `holder`; no scope, so a
/// holder never reads as exited (every holder here has this process's pid).
struct Drover {
    handle: LeaseHandle,
    task: JoinHandle<()>,
    cancel: CancellationToken,
    telemetry: Telemetry,
}

fn drover(fakes: &[Arc<FakeEngine>], holder: &str, ttl: Duration) -> Drover {
    let (tx, rx) = watch::channel(None);
    let handle = LeaseHandle::new(rx, 1);
    let telemetry = Telemetry::new("p", Duration::from_secs(60), None);
    let setup = task::Setup {
        project: "p".into(),
        holder: holder.into(),
        scope: None,
        images: vec!["img".into()],
        credentials: Credentials::in_dir("/nonexistent", "a test"),
        config: LeaseConfig { ttl },
        telemetry: telemetry.clone(),
        tx,
        observed: handle.observed.clone(),
    };
    let nodes = fakes
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let client = Client::from(f.clone());
            LeaseNode {
                name: format!("n{i}"),
                endpoint: Endpoint::new(Transport::Tcp(format!("n{i}:2375"))),
                engine: Box::pin(async move { Some(client) }),
            }
        })
        .collect();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(task::Task::new(setup).run(nodes, cancel.clone()));
    Drover {
        handle,
        task,
        cancel,
        telemetry,
    }
}

fn fakes(n: usize) -> Vec<Arc<FakeEngine>> {
    (0..n).map(|_| Arc::new(FakeEngine::default())).collect()
}

/// The lease container on `fake`: id, holder, term, restart policy.
async fn lease_on(fake: &FakeEngine) -> Option<(String, String, u64, RestartPolicy)> {
    let c = fake.inspect_container(&container_name("p")).await.ok()?;
    let labels = c.config.unwrap().labels.unwrap();
    let policy = c.host_config.unwrap().restart_policy.unwrap();
    Some((
        c.id.unwrap(),
        labels[LABEL_HOLDER].clone(),
        labels[LABEL_LEASE_TERM].parse().unwrap(),
        policy,
    ))
}

async fn holders(fakes: &[Arc<FakeEngine>]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for f in fakes {
        out.push(lease_on(f).await.map(|l| l.1));
    }
    out
}

/// Wait until `cond` holds, checking every few milliseconds; fail after `deadline`.
async fn until<F: Future<Output = bool>>(what: &str, deadline: Duration, cond: impl Fn() -> F) {
    let end = Instant::now() + deadline;
    while !cond().await {
        assert!(Instant::now() < end, "not within {deadline:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn acquired(h: &mut LeaseHandle, deadline: Duration) {
    tokio::time::timeout(deadline, h.acquired())
        .await
        .expect("lease acquired in time");
}

fn counter(p: &RestartPolicy) -> i64 {
    p.maximum_retry_count.unwrap_or(0)
}

#[tokio::test]
async fn one_drover_takes_every_node_with_term_one() {
    let nodes = fakes(3);
    let mut a = drover(&nodes, "a", Duration::from_millis(400));
    acquired(&mut a.handle, Duration::from_secs(2)).await;
    assert_eq!(a.handle.term(), Some(1));
    until("a holds all three", Duration::from_secs(2), || async {
        holders(&nodes).await == [Some("a".into()), Some("a".into()), Some("a".into())]
    })
    .await;
    for n in &nodes {
        assert_eq!(lease_on(n).await.unwrap().2, 1);
    }
    let status = crate::telemetry::status::snapshot(&a.telemetry);
    let lease = status.lease.expect("the lease in /status");
    assert_eq!(lease.leader.as_deref(), Some("a"));
    assert_eq!((lease.term, lease.nodes, lease.majority), (Some(1), 3, 2));
    assert_eq!(lease.granted, ["n0", "n1", "n2"]);
    assert_eq!(lease.standby, None);
    let metrics = crate::telemetry::metrics::render(&a.telemetry);
    assert!(
        metrics.contains("drover_lease_term{project=\"p\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("drover_lease_grants{project=\"p\"} 3"));
    assert!(metrics.contains("drover_lease_granted{project=\"p\",node=\"n1\"} 1"));
    // Released on shutdown, on every node.
    a.cancel.cancel();
    a.task.await.unwrap();
    assert!(!a.handle.held());
    for n in &nodes {
        assert_eq!(
            lease_on(n).await.unwrap().3.name,
            Some(RestartPolicyNameEnum::NO)
        );
    }
}

#[tokio::test]
async fn two_drovers_never_act_at_once_and_the_second_takes_over_a_hung_first() {
    let nodes = fakes(3);
    let ttl = Duration::from_millis(400);
    let mut a = drover(&nodes, "a", ttl);
    let mut b = drover(&nodes, "b", ttl);
    // Sampled while both start and run: never both.
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        assert!(!(a.handle.held() && b.handle.held()), "both act");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (leader, follower) = if a.handle.held() {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert!(leader.handle.held(), "one of them acts");
    let old_term = leader.handle.term().unwrap();
    let status = crate::telemetry::status::snapshot(&follower.telemetry);
    let why = status.lease.unwrap().standby.unwrap();
    assert!(why.starts_with("another drover leads"), "{why}");
    // The leader hangs: no renewal, no release.
    leader.task.abort();
    let hung = Instant::now();
    let mut was = leader.handle.clone();
    loop {
        assert!(
            !(was.held() && follower.handle.held()),
            "the follower acts while the hung leader's lease still counts"
        );
        if follower.handle.held() {
            break;
        }
        assert!(hung.elapsed() < Duration::from_secs(5), "no takeover");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = hung.elapsed();
    let config = LeaseConfig { ttl };
    assert!(
        took < config.stale_after() + config.interval() * 3,
        "takeover took {took:?}"
    );
    let new_term = follower.handle.term().unwrap();
    assert!(new_term > old_term, "{new_term} > {old_term}");
    was.lost().await;
}

#[tokio::test]
async fn one_node_that_stalls_or_fails_costs_nothing_two_cost_the_lease() {
    let nodes = fakes(3);
    let ttl = Duration::from_millis(400);
    let mut a = drover(&nodes, "a", ttl);
    acquired(&mut a.handle, Duration::from_secs(2)).await;
    until("a holds all three", Duration::from_secs(2), || async {
        holders(&nodes)
            .await
            .iter()
            .all(|h| h.as_deref() == Some("a"))
    })
    .await;
    // Node 0 answers nothing for a long while; nodes 1 and 2 are renewed on time.
    nodes[0].stall(Some(Duration::from_secs(30)));
    let before = counter(&lease_on(&nodes[1]).await.unwrap().3);
    let end = Instant::now() + ttl * 4;
    while Instant::now() < end {
        assert!(a.handle.held(), "a keeps acting with two of three");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = counter(&lease_on(&nodes[1]).await.unwrap().3);
    assert!(
        after - before >= 10,
        "renewals on the others go on every ttl/4: {before} -> {after}"
    );
    // A second node fails every request: a stops acting within the ttl.
    nodes[1].fail("*", Kind::Unreachable, u32::MAX);
    let failing = Instant::now();
    tokio::time::timeout(ttl * 2, a.handle.lost())
        .await
        .expect("a stops acting");
    assert!(failing.elapsed() <= ttl + Duration::from_millis(50));
    // Node 1 back: a acts again with its grants (same containers, same term).
    nodes[1].clear_failures();
    nodes[1].take_calls();
    acquired(&mut a.handle, Duration::from_secs(3)).await;
    assert_eq!(a.handle.term(), Some(1));
}

#[tokio::test]
async fn a_higher_term_on_a_project_container_stops_the_leader_at_once() {
    let nodes = fakes(1);
    let mut a = drover(&nodes, "a", Duration::from_secs(2));
    acquired(&mut a.handle, Duration::from_secs(2)).await;
    assert_eq!(a.handle.term(), Some(1));
    a.handle.saw_term(1);
    assert!(a.handle.held(), "its own term is no reason");
    a.handle.saw_term(2);
    assert!(!a.handle.held(), "at once");
    assert_eq!(a.handle.term(), None);
    tokio::time::timeout(Duration::from_millis(50), a.handle.lost())
        .await
        .expect("lost() says so at once");
    // The task lets the lease go, and campaigns again above term 2.
    until("a new campaign above 2", Duration::from_secs(5), || async {
        lease_on(&nodes[0]).await.is_some_and(|l| l.2 == 3)
    })
    .await;
    acquired(&mut a.handle, Duration::from_secs(5)).await;
    assert_eq!(a.handle.term(), Some(3));
}

#[tokio::test]
async fn on_one_node_a_second_holder_waits_while_the_first_renews() {
    let nodes = fakes(1);
    let ttl = Duration::from_millis(400);
    let mut a = drover(&nodes, "a", ttl);
    acquired(&mut a.handle, Duration::from_secs(2)).await;
    let (id, who, _, _) = lease_on(&nodes[0]).await.unwrap();
    assert_eq!(who, "a");
    let b = drover(&nodes, "b", ttl);
    let config = LeaseConfig { ttl };
    let enough = 2 * config.stale_after().as_millis() / config.interval().as_millis();
    until("a renews", Duration::from_secs(10), || async {
        counter(&lease_on(&nodes[0]).await.unwrap().3) >= enough as i64
    })
    .await;
    assert!(a.handle.held() && !b.handle.held());
    let (still, who, _, _) = lease_on(&nodes[0]).await.unwrap();
    assert_eq!((still, who.as_str()), (id, "a"), "the same container, a's");
}

#[tokio::test]
async fn on_one_node_a_released_lease_is_taken_at_once() {
    let nodes = fakes(1);
    let ttl = Duration::from_secs(2);
    let mut a = drover(&nodes, "a", ttl);
    acquired(&mut a.handle, Duration::from_secs(5)).await;
    let mut b = drover(&nodes, "b", ttl);
    until("b looks", Duration::from_secs(5), || async {
        nodes[0]
            .take_calls()
            .iter()
            .any(|c| c.starts_with("inspect"))
    })
    .await;
    a.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), a.task)
        .await
        .expect("a ends on cancel")
        .unwrap();
    assert!(!a.handle.held());
    let released = Instant::now();
    acquired(&mut b.handle, Duration::from_secs(5)).await;
    let took = released.elapsed();
    assert!(took < ttl / 2, "no wait for silence nor fencing: {took:?}");
    let (_, who, term, _) = lease_on(&nodes[0]).await.unwrap();
    assert_eq!((who.as_str(), term), ("b", 2));
}

#[tokio::test]
async fn a_removed_lease_container_is_taken_anew_after_the_next_renewal() {
    let nodes = fakes(1);
    let ttl = Duration::from_millis(400);
    let mut a = drover(&nodes, "a", ttl);
    acquired(&mut a.handle, Duration::from_secs(2)).await;
    let (old, _, _, _) = lease_on(&nodes[0]).await.unwrap();
    nodes[0].take_calls();
    nodes[0].remove_by_other(&container_name("p"));
    // The grant is gone at the next renewal (a 404) ...
    until(
        "a renewal meets the removal",
        Duration::from_secs(2),
        || async {
            nodes[0]
                .take_calls()
                .iter()
                .any(|c| c.starts_with("update"))
        },
    )
    .await;
    // ... and a free node is taken again (nobody else holds it).
    until("a new lease container", Duration::from_secs(2), || async {
        lease_on(&nodes[0])
            .await
            .is_some_and(|l| l.0 != old && l.1 == "a")
    })
    .await;
    acquired(&mut a.handle, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_fence_takes_the_lease_from_a_leader_until_lifted() {
    let nodes = fakes(3);
    let ttl = Duration::from_millis(400);
    let mut a = drover(&nodes, "a", ttl);
    acquired(&mut a.handle, Duration::from_secs(2)).await;
    let term = a.handle.term().unwrap();
    let mut fence = Fence::new(term + 1);
    for n in &nodes {
        assert!(fence.take(&Client::from(n.clone()), "p").await.unwrap());
    }
    fence.hold(LeaseConfig { ttl });
    // The leader stops acting within a ttl, and does not act again while the fence holds,
    // well past its stale_after.
    until("a stops acting", ttl * 2, || async { !a.handle.held() }).await;
    let end = Instant::now() + LeaseConfig { ttl }.stale_after() * 3;
    while Instant::now() < end {
        assert!(!a.handle.held(), "acts while fenced");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for n in &nodes {
        let (_, holder, t, _) = lease_on(n).await.unwrap();
        assert_ne!(holder, "a");
        assert_eq!(t, term + 1);
    }
    assert!(fence.lift().await.is_empty());
    acquired(&mut a.handle, Duration::from_secs(2)).await;
    assert!(
        a.handle.term().unwrap() > term + 1,
        "a term above the fence's"
    );
    a.cancel.cancel();
    a.task.await.unwrap();
}

#[tokio::test]
async fn a_fence_takes_nothing_where_there_is_no_lease() {
    let nodes = fakes(1);
    let mut fence = Fence::new(1);
    assert!(
        !fence
            .take(&Client::from(nodes[0].clone()), "p")
            .await
            .unwrap()
    );
    assert!(fence.is_empty());
    assert!(lease_on(&nodes[0]).await.is_none());
}
