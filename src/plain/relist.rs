//! A watched node's resync list, run beside the passes as an informer relists: the pass
//! that finds the resync due starts the list and goes on with the node's event-patched
//! view; a pass after the list ended takes it, patched with every container named on the
//! node since the list began (their events may be newer than what the list saw). A list of
//! a node of thousands of containers held the pass that ran it for up to a tenth of a
//! second, and every event that came meanwhile waited behind it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::engine::{Client, connect};
use crate::observe::{self, Snapshot};
use crate::runtime::Trigger;

/// A list's result: the node's containers, or why there are none (failed or late).
pub(super) type Listed = Result<Snapshot, String>;

/// The resync lists running, by node.
#[derive(Default)]
pub(super) struct Relists {
    running: HashMap<String, Running>,
    /// Woken when a list ends, so that a pass takes it at once. Without it (passes driven
    /// by hand), a pass takes the lists that ended before it.
    wake: Option<Arc<Trigger>>,
}

struct Running {
    task: JoinHandle<()>,
    result: Arc<Mutex<Option<Listed>>>,
    /// Containers named on the node since the list began.
    named: HashSet<String>,
}

impl Relists {
    pub(super) fn wake_with(&mut self, trigger: Arc<Trigger>) {
        self.wake = Some(trigger);
    }

    /// Whether a list of `node` runs (or ended and was not taken yet).
    pub(super) fn running(&self, node: &str) -> bool {
        self.running.contains_key(node)
    }

    /// Start listing `node` (its endpoint for the error line) within `deadline`.
    pub(super) fn start(
        &mut self,
        (node, endpoint, project): (&str, &connect::Endpoint, &str),
        engine: Client,
        deadline: Duration,
    ) {
        let result = Arc::new(Mutex::new(None));
        let (slot, wake) = (result.clone(), self.wake.clone());
        let (name, endpoint, project) = (node.to_string(), endpoint.clone(), project.to_string());
        let task = tokio::spawn(async move {
            let none = HashSet::new();
            let list: futures::future::BoxFuture<'_, _> =
                Box::pin(observe::snapshot(&engine, &name, &project, &none));
            let listed = match tokio::time::timeout(deadline, list).await {
                Ok(Ok(snapshot)) => Ok(snapshot),
                Ok(Err(e)) => Err(connect::explain(&endpoint, &e)),
                Err(_) => Err(super::pass::late(deadline)),
            };
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(listed);
            }
            if let Some(trigger) = wake {
                trigger.poke(None, "relisted");
            }
        });
        let named = HashSet::new();
        self.running.insert(
            node.to_string(),
            Running {
                task,
                result,
                named,
            },
        );
    }

    /// Note containers named on `node` while its list runs: they are inspected again
    /// when the list is taken.
    pub(super) fn named(&mut self, node: &str, ids: &HashSet<String>) {
        if let Some(r) = self.running.get_mut(node) {
            r.named.extend(ids.iter().cloned());
        }
    }

    /// `node`'s list, if it ended: what it found and the containers named since it began.
    pub(super) fn take(&mut self, node: &str) -> Option<(Listed, HashSet<String>)> {
        let ended = self.running.get(node)?.task.is_finished();
        if !ended {
            return None;
        }
        let r = self.running.remove(node)?;
        let listed = r.result.lock().ok().and_then(|mut s| s.take());
        let listed = listed.unwrap_or_else(|| Err("the list ended without an answer".into()));
        Some((listed, r.named))
    }

    /// Stop and forget `node`'s list (the node was let go, or is listed afresh).
    pub(super) fn forget(&mut self, node: &str) {
        if let Some(r) = self.running.remove(node) {
            r.task.abort();
        }
    }

    /// Wait until every running list ended (passes driven by hand).
    #[cfg(test)]
    pub(super) async fn settled(&mut self) {
        for r in self.running.values_mut() {
            if !r.task.is_finished() {
                let _ = (&mut r.task).await;
            }
        }
    }
}

impl Drop for Relists {
    fn drop(&mut self) {
        for r in self.running.values() {
            r.task.abort();
        }
    }
}
