//! Taking the lease from a drover that acts, for a command that must not race it
//! (`drover down --force`). On each node where the project has a lease container, the
//! holder's container is removed by id and one held by this process is created in its
//! place, under a term above every term seen: the holder's next renewal there finds its
//! container gone, and on seeing the higher term it stops acting at once. This process
//! renews its containers as a holder does, so a standing-by drover does not take them
//! while the command works, and removes them when it is done: the drover then takes the
//! lease again at once. If this process dies meanwhile, a drover on the same machine sees
//! its pid gone and takes over at once; elsewhere, after `stale_after`.

use tokio_util::sync::CancellationToken;

use super::{
    LeaseConfig, Seen, container_body, container_name, holder_id, own_scope, renewal, seen_in,
};
use crate::engine::{Client, Engine, EngineError};

/// How many times a take is tried when a drover recreates its container in between.
const ATTEMPTS: usize = 5;

/// Lease containers this process took ([`Fence::take`]), renewed until [`Fence::lift`].
pub struct Fence {
    holder: String,
    term: u64,
    held: Vec<(Client, String)>,
    renewing: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Fence {
    /// A fence that takes lease containers under `term` (above every term seen).
    pub fn new(term: u64) -> Fence {
        Fence {
            holder: holder_id(),
            term,
            held: Vec::new(),
            renewing: None,
        }
    }

    /// Take `project`'s lease container on `engine` from whoever holds it. False when
    /// there is none to take (no lease container, or a foreign container of that name).
    pub async fn take(&mut self, engine: &Client, project: &str) -> Result<bool, EngineError> {
        let scope = own_scope();
        for _ in 0..ATTEMPTS {
            let (id, image) = match engine.inspect_container(&container_name(project)).await {
                Err(e) if e.is_not_found() => return Ok(false),
                Err(e) => return Err(e),
                Ok(c) => {
                    let image = c.image.clone().unwrap_or_default();
                    match seen_in(c, project) {
                        Seen::Foreign | Seen::Absent => return Ok(false),
                        Seen::Held { id, holder, .. } if holder == self.holder => {
                            self.held.push((engine.clone(), id));
                            return Ok(true);
                        }
                        Seen::Held { id, .. } | Seen::Released { id, .. } => (id, image),
                    }
                }
            };
            match engine.remove_container(&id, false).await {
                Err(e) if !e.is_not_found() && !e.is_conflict() => return Err(e),
                _ => {}
            }
            let body = container_body(project, &self.holder, scope.as_deref(), self.term, image);
            match engine
                .create_container(&container_name(project), None, body)
                .await
            {
                Ok(id) => {
                    self.held.push((engine.clone(), id));
                    return Ok(true);
                }
                // The drover created its own again in between: look again.
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(EngineError::new(
            crate::engine::Kind::Conflict,
            format!(
                "the lease container {} was created again {ATTEMPTS} times while it was being taken",
                container_name(project)
            ),
        ))
    }

    /// Renew what was taken every `config`'s interval, until [`Fence::lift`].
    pub fn hold(&mut self, config: LeaseConfig) {
        let stop = CancellationToken::new();
        let held = self.held.clone();
        let token = stop.clone();
        // At least twice a second: a drover whose ttl is shorter than the one given here
        // must still see renewals well within its `stale_after`.
        let every = config.interval().min(std::time::Duration::from_millis(500));
        let task = tokio::spawn(async move {
            let mut counter = 0;
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                counter += 1;
                for (engine, id) in &held {
                    let _ =
                        tokio::time::timeout(every, engine.update_container(id, renewal(counter)))
                            .await;
                }
            }
        });
        self.renewing = Some((stop, task));
    }

    /// How many nodes' lease containers are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Stop renewing and remove what was taken; the errors, one per node that failed.
    pub async fn lift(mut self) -> Vec<EngineError> {
        if let Some((stop, task)) = self.renewing.take() {
            stop.cancel();
            let _ = task.await;
        }
        let mut failed = Vec::new();
        for (engine, id) in std::mem::take(&mut self.held) {
            match engine.remove_container(&id, false).await {
                Err(e) if !e.is_not_found() => failed.push(e),
                _ => {}
            }
        }
        failed
    }
}
