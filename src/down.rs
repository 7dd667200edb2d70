//! `drover down`: take a project down the way `docker compose down` does. Plain mode:
//! on every node, stop and remove the project's containers, then its networks, and with
//! `--volumes` its named volumes and the containers' anonymous ones (including those a
//! replacement took over from its predecessor, which the engine's own `rm -v` skips);
//! then the project's lease container. Swarm mode: the stack's services, then its
//! networks, secrets and configs, as `docker stack rm`. Only what carries the project's
//! labels is touched: external networks and volumes, and other containers, never.
//!
//! A running drover would create everything again: while one acts for the project (it
//! renewed the lease while we watched), `down` refuses unless forced, and says which
//! drover holds the lease. Forced, it takes the lease from that drover for its own time
//! ([`lease::Fence`]), so the drover stands by instead of racing the removal.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::config::Project;
use crate::engine::connect::{self, Endpoint};
use crate::engine::model::anonymous_volumes;
use crate::engine::{Client, Engine, EngineError, Filters, SwarmEngine};
use crate::labels::LABEL_PROJECT;
use crate::lease::{self, Standing};
use crate::nodes::NodeSpec;
use crate::swarm::convert::NAMESPACE;

/// What to take down besides containers and networks, and whether to go on while a
/// drover acts.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Also named volumes and the containers' anonymous volumes (`down --volumes`).
    pub volumes: bool,
    /// Go on while a drover acts for the project (it will create everything again).
    pub force: bool,
    /// How long to watch the lease for a renewal (half the holders' ttl at least).
    pub lease_watch: Duration,
    /// The holders' lease ttl: how long a holder whose lease was taken may still act.
    pub lease_ttl: Duration,
}

/// What `down` did, one line each, and what it could not do.
#[derive(Debug, Default)]
pub struct Report {
    pub done: Vec<String>,
    pub failed: Vec<String>,
}

impl Report {
    fn merge(&mut self, other: Report) {
        self.done.extend(other.done);
        self.failed.extend(other.failed);
    }
}

fn by_project(key: &str, project: &str) -> Filters {
    HashMap::from([("label".to_string(), vec![format!("{key}={project}")])])
}

/// Stops run at once, at most this many per node.
const PARALLEL: usize = 8;

/// Plain mode: the project on `nodes`. Refuses (an error naming the holder) while a drover
/// acts for the project, unless `opts.force`.
pub async fn plain(nodes: &[NodeSpec], project: &Project, opts: Options) -> Result<Report, String> {
    let mut report = Report::default();
    let mut engines = Vec::new();
    for spec in nodes {
        match connect::connect(&spec.endpoint).await {
            Ok(d) => engines.push((spec, Client::from(d))),
            Err(e) => report
                .failed
                .push(format!("node {}: {e}; nothing removed there", spec.name)),
        }
    }
    // The lease lives on every node (witnesses included): look at all of them at once.
    let looks = engines.iter().map(|(spec, client)| async move {
        let s = lease::standing(&**client, &project.name, opts.lease_watch).await;
        (*spec, client, s)
    });
    let mut standing = Vec::new();
    let mut unknown = Vec::new();
    for (spec, client, s) in futures::future::join_all(looks).await {
        match s {
            Ok(Standing::Acting { holder, .. }) if !opts.force => {
                return Err(format!(
                    "a drover acts for project {} (lease holder {holder}, on node {}): stop it first, or pass --force (it would create everything again)",
                    project.name, spec.name
                ));
            }
            Ok(s) => standing.push((client, s)),
            Err(e) => unknown.push(format!(
                "node {}: {}",
                spec.name,
                connect::explain(&spec.endpoint, &e)
            )),
        }
    }
    if standing.is_empty() && !opts.force {
        return Err(format!(
            "cannot check whether a drover acts for project {}: no node answered (pass --force to go on){}",
            project.name,
            if unknown.is_empty() {
                String::new()
            } else {
                format!("; {}", unknown.join("; "))
            }
        ));
    }
    // `--force` while a drover acts: take the lease from it first, so that it stops
    // creating what is being removed; hold it until done, then let it go.
    let acting = standing
        .iter()
        .any(|(_, s)| matches!(s, Standing::Acting { .. }));
    let fence = match acting {
        true => {
            // Above every term the lease containers carry, as `standing` just read them.
            let term = standing.iter().filter_map(|(_, s)| s.term()).max();
            let term = term.unwrap_or(0) + 1;
            Some(fence(&engines, &project.name, term, opts.lease_ttl, &mut report).await)
        }
        false => None,
    };
    // The holder may act for a ttl after its lease was taken: what it creates meanwhile
    // keeps a network in use, and is taken down again until then.
    let until = fence
        .is_some()
        .then(|| Instant::now() + opts.lease_ttl + Duration::from_secs(2));
    let downs = engines.iter().map(|(spec, client)| {
        node(
            client,
            &spec.name,
            &spec.endpoint,
            &project.name,
            opts,
            until,
        )
    });
    for r in futures::future::join_all(downs).await {
        report.merge(r);
    }
    match fence {
        Some(fence) => lift(fence, &project.name, &mut report).await,
        None => {
            for (client, s) in standing {
                remove_lease(&**client, &project.name, s, &mut report).await;
            }
        }
    }
    Ok(report)
}

/// Remove the lease containers `down --force` held, saying so in `report`.
async fn lift(fence: lease::Fence, project: &str, report: &mut Report) {
    let n = fence.len();
    let failed = fence.lift().await;
    let name = lease::container_name(project);
    if failed.is_empty() && n > 0 {
        report.done.push(format!("lease container {name} removed"));
    }
    for e in failed {
        report.failed.push(format!("lease container {name}: {e}"));
    }
}

/// Take the project's lease on every node that has one, under `term`, and renew it until
/// lifted.
async fn fence(
    engines: &[(&NodeSpec, Client)],
    project: &str,
    term: u64,
    ttl: Duration,
    report: &mut Report,
) -> lease::Fence {
    let mut fence = lease::Fence::new(term);
    for (spec, client) in engines {
        if let Err(e) = fence.take(client, project).await {
            report.failed.push(format!(
                "node {}: cannot take the lease from the drover that acts: {}",
                spec.name,
                connect::explain(&spec.endpoint, &e)
            ));
        }
    }
    fence.hold(lease::LeaseConfig { ttl });
    fence
}

/// Between two takes of a node while its network stays in use.
const AGAIN: Duration = Duration::from_millis(250);

/// One node: containers, then networks, then volumes.
async fn node(
    engine: &Client,
    name: &str,
    endpoint: &Endpoint,
    project: &str,
    opts: Options,
    until: Option<Instant>,
) -> Report {
    let mut r = Report::default();
    let say = |e: &EngineError| connect::explain(endpoint, e);
    // A drover whose lease was just taken (`--force`) may still create containers, and a
    // network with one attached cannot be removed: take what it created too, until then.
    loop {
        let listed = match engine
            .list_containers(by_project(LABEL_PROJECT, project))
            .await
        {
            Ok(l) => l,
            Err(e) => {
                r.failed.push(format!("node {name}: {}", say(&e)));
                return r;
            }
        };
        let removals = futures::stream::iter(listed)
            .map(|c| container(engine, name, c, opts.volumes))
            .buffer_unordered(PARALLEL)
            .collect::<Vec<_>>()
            .await;
        for (done, failed) in removals {
            r.done.extend(done);
            r.failed
                .extend(failed.map(|e| format!("node {name}: {}", say(&e))));
        }
        let mut nets = Report::default();
        networks(engine, name, project, &mut nets, &say).await;
        let busy = !nets.failed.is_empty();
        r.done.extend(nets.done);
        if !busy || until.is_none_or(|t| Instant::now() >= t) {
            r.failed.extend(nets.failed);
            break;
        }
        tokio::time::sleep(AGAIN).await;
    }
    if opts.volumes {
        volumes(engine, name, project, &mut r, &say).await;
    }
    r
}

/// Stop and remove one container; with `volumes`, its anonymous volumes too.
async fn container(
    engine: &Client,
    node: &str,
    c: crate::engine::model::ContainerSummary,
    volumes: bool,
) -> (Vec<String>, Option<EngineError>) {
    let id = c.id.unwrap_or_default();
    let label = c
        .names
        .and_then(|n| n.first().map(|n| n.trim_start_matches('/').to_string()))
        .unwrap_or_else(|| crate::engine::short_id(&id).to_string());
    let anonymous = anonymous_volumes(&c.mounts.unwrap_or_default());
    let gone = |r: Result<(), EngineError>| match r {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    };
    if let Err(e) = gone(engine.stop_container(&id).await) {
        return (Vec::new(), Some(e));
    }
    if let Err(e) = gone(engine.remove_container(&id, volumes).await) {
        return (Vec::new(), Some(e));
    }
    let mut done = vec![format!("container {label} removed (node {node})")];
    if volumes {
        for v in anonymous {
            match engine.remove_volume(&v.name).await {
                Ok(()) => done.push(format!(
                    "anonymous volume {} of {label} removed (node {node})",
                    crate::engine::short_id(&v.name)
                )),
                Err(e) if e.is_not_found() => {}
                Err(e) => return (done, Some(e)),
            }
        }
    }
    (done, None)
}

async fn networks(
    engine: &Client,
    node: &str,
    project: &str,
    r: &mut Report,
    say: &impl Fn(&EngineError) -> String,
) {
    match engine
        .list_networks(by_project(LABEL_PROJECT, project))
        .await
    {
        Ok(list) => {
            for n in list {
                let (Some(id), Some(name)) = (n.id, n.name) else {
                    continue;
                };
                match engine.remove_network(&id).await {
                    Ok(()) => r.done.push(format!("network {name} removed (node {node})")),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => r
                        .failed
                        .push(format!("node {node}: network {name}: {}", say(&e))),
                }
            }
        }
        Err(e) => r.failed.push(format!("node {node}: {}", say(&e))),
    }
}

async fn volumes(
    engine: &Client,
    node: &str,
    project: &str,
    r: &mut Report,
    say: &impl Fn(&EngineError) -> String,
) {
    match engine
        .list_volumes(by_project(LABEL_PROJECT, project))
        .await
    {
        Ok(list) => {
            for v in list {
                match engine.remove_volume(&v.name).await {
                    Ok(()) => r
                        .done
                        .push(format!("volume {} removed (node {node})", v.name)),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => r
                        .failed
                        .push(format!("node {node}: volume {}: {}", v.name, say(&e))),
                }
            }
        }
        Err(e) => r.failed.push(format!("node {node}: {}", say(&e))),
    }
}

/// The lease container goes last: while it exists, a drover started meanwhile waits.
async fn remove_lease(engine: &dyn Engine, project: &str, s: Standing, r: &mut Report) {
    let id = match s {
        Standing::Absent => return,
        Standing::Released { id, .. }
        | Standing::Acting { id, .. }
        | Standing::Silent { id, .. } => id,
    };
    match engine.remove_container(&id, false).await {
        Ok(()) => r.done.push(format!(
            "lease container {} removed",
            lease::container_name(project)
        )),
        Err(e) if e.is_not_found() => {}
        Err(e) => r.failed.push(format!(
            "lease container {}: {}",
            lease::container_name(project),
            e
        )),
    }
}

/// Swarm mode: the stack's services, then its networks, secrets and configs.
pub async fn swarm(
    manager: &dyn SwarmEngine,
    endpoint: &Endpoint,
    project: &str,
) -> Result<Report, String> {
    let say = |e: EngineError| connect::explain(endpoint, &e);
    let mine = |labels: Option<&HashMap<String, String>>| {
        labels.and_then(|l| l.get(NAMESPACE)).map(String::as_str) == Some(project)
    };
    let mut r = Report::default();
    let services = manager
        .list_services(Some(&format!("{project}_")))
        .await
        .map_err(say)?;
    for s in services {
        let spec = s.spec.unwrap_or_default();
        let (Some(id), Some(name)) = (s.id, spec.name) else {
            continue;
        };
        if !mine(spec.labels.as_ref()) {
            continue;
        }
        match manager.delete_service(&id).await {
            Ok(()) => r.done.push(format!("service {name} removed")),
            Err(e) if e.is_not_found() => {}
            Err(e) => r.failed.push(format!("service {name}: {}", say(e))),
        }
    }
    for n in manager.list_networks().await.map_err(say)? {
        let (Some(id), Some(name)) = (n.id, n.name) else {
            continue;
        };
        if mine(n.labels.as_ref()) {
            let removed = remove_network_when_free(manager, &id).await;
            remove_swarm_object(&mut r, "network", &name, removed, &say);
        }
    }
    for s in manager.list_secrets().await.map_err(say)? {
        let spec = s.spec.unwrap_or_default();
        if let (Some(id), Some(name)) = (s.id, spec.name)
            && mine(spec.labels.as_ref())
        {
            remove_swarm_object(
                &mut r,
                "secret",
                &name,
                manager.delete_secret(&id).await,
                &say,
            );
        }
    }
    for c in manager.list_configs().await.map_err(say)? {
        let spec = c.spec.unwrap_or_default();
        if let (Some(id), Some(name)) = (c.id, spec.name)
            && mine(spec.labels.as_ref())
        {
            remove_swarm_object(
                &mut r,
                "config",
                &name,
                manager.delete_config(&id).await,
                &say,
            );
        }
    }
    Ok(r)
}

/// Swarm detaches a network from a removed service's tasks only as they shut down: try
/// again for a while, as the tasks stop.
async fn remove_network_when_free(manager: &dyn SwarmEngine, id: &str) -> Result<(), EngineError> {
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match manager.remove_network(id).await {
            Err(e) if !e.is_not_found() && tokio::time::Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            r => return r,
        }
    }
}

fn remove_swarm_object(
    r: &mut Report,
    kind: &str,
    name: &str,
    result: Result<(), EngineError>,
    say: &impl Fn(EngineError) -> String,
) {
    match result {
        Ok(()) => r.done.push(format!("{kind} {name} removed")),
        Err(e) if e.is_not_found() => {}
        Err(e) => r.failed.push(format!("{kind} {name}: {}", say(e))),
    }
}
