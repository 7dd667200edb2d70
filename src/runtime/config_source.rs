//! The config source both modes share: it knows every file the last load read or looked
//! for (see `config::load_tracked`), notices when one of them changes (a watch on their
//! directories, polling every `--watch-interval` as the fallback) or when asked to (the
//! `drover` command sends a [`Reload`] on SIGHUP: the library installs no signal handlers),
//! and loads again. What to do with a new config, or with an invalid one, is the caller's.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tracing::debug;

use crate::config::{self, ConfigError, LoadOptions, Loaded};

/// Requests to load the config again whatever the files say: each value sent on the
/// matching `watch::Sender` is one request (the `drover` command sends one per SIGHUP).
pub type Reload = watch::Receiver<()>;

/// Why the config is being loaded again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// A file the config depends on changed (or appeared, or went away).
    Files,
    /// Asked through [`Reload`] (SIGHUP): load again whatever the files say.
    Hangup,
}

/// The contents of every file the config depends on. Contents, not times: editors and
/// config tools rename a new file into place, which a watch on the file itself misses.
#[derive(Debug, Default, PartialEq, Eq)]
struct Fingerprint(Vec<(PathBuf, Option<Vec<u8>>)>);

impl Fingerprint {
    fn take(paths: &[PathBuf]) -> Fingerprint {
        Fingerprint(
            paths
                .iter()
                .map(|p| (p.clone(), std::fs::read(p).ok()))
                .collect(),
        )
    }
}

/// Loads the config and says when it must be loaded again.
pub struct ConfigSource {
    load: LoadOptions,
    paths: Vec<PathBuf>,
    files: Fingerprint,
    poll: Option<tokio::time::Interval>,
    dirs_changed: Arc<Notify>,
    watcher: Option<notify::RecommendedWatcher>,
    hangup: Reload,
}

impl ConfigSource {
    /// Start from the first load. A zero `watch_interval` means no watching at all:
    /// `reload` (SIGHUP) only.
    pub fn new(
        load: LoadOptions,
        loaded: &Loaded,
        watch_interval: Duration,
        reload: Reload,
    ) -> Self {
        let poll = (!watch_interval.is_zero()).then(|| {
            let mut i = tokio::time::interval(watch_interval);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        let mut source = ConfigSource {
            load,
            paths: Vec::new(),
            files: Fingerprint::default(),
            poll,
            dirs_changed: Arc::new(Notify::new()),
            watcher: None,
            hangup: reload,
        };
        source.follow(loaded.files.clone(), Some(loaded));
        source
    }

    /// The options every load uses.
    pub fn options(&self) -> &LoadOptions {
        &self.load
    }

    /// Wait until the config must be loaded again.
    pub async fn changed(&mut self) -> Why {
        let watching = self.poll.is_some();
        loop {
            let hangup = async {
                // Nobody left to ask (the sender is gone): wait on the files only.
                if self.hangup.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let poll = async {
                match self.poll.as_mut() {
                    Some(p) => {
                        p.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let dirs = self.dirs_changed.clone();
            tokio::select! {
                _ = hangup => return Why::Hangup,
                _ = poll => {}
                _ = dirs.notified(), if watching => {}
            }
            let now = Fingerprint::take(&self.paths);
            if now != self.files {
                self.files = now;
                return Why::Files;
            }
        }
    }

    /// Load again. Whatever the outcome, the files this load read are the ones watched
    /// from now on (a broken file is watched until it is fixed).
    pub fn load(&mut self) -> Result<Loaded, ConfigError> {
        let (loaded, files) = config::load_tracked(&self.load);
        self.follow(files, loaded.as_ref().ok());
        loaded
    }

    /// Watch `files`, plus the secret and config files of `loaded` (their content is sent
    /// to Swarm, and a changed one must roll the services that use it).
    fn follow(&mut self, mut files: Vec<PathBuf>, loaded: Option<&Loaded>) {
        if let Some(l) = loaded {
            let p = &l.project;
            files.extend(
                p.secrets
                    .values()
                    .chain(p.configs.values())
                    .filter_map(|f| f.file.as_ref().map(PathBuf::from)),
            );
        }
        files.sort();
        files.dedup();
        if files == self.paths {
            self.files = Fingerprint::take(&self.paths);
            return;
        }
        self.paths = files;
        self.files = Fingerprint::take(&self.paths);
        if self.poll.is_some() {
            self.watcher = watch_dirs(&self.paths, self.dirs_changed.clone());
        }
    }
}

/// A watcher on the directories of `paths` that pokes `changed` on any change there;
/// `None` when the platform refuses (polling still covers it).
fn watch_dirs(paths: &[PathBuf], changed: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        // Only writes, creations, renames and removals: drover's own reads of the files
        // (open, close) are events too, and reacting to them would loop.
        if e.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            changed.notify_one();
        }
    })
    .ok()?;
    let dirs: BTreeSet<PathBuf> = paths
        .iter()
        .filter_map(|p| p.parent().map(|d| d.to_path_buf()))
        .map(|d| {
            if d.as_os_str().is_empty() {
                ".".into()
            } else {
                d
            }
        })
        .collect();
    for d in dirs {
        if let Err(e) = watcher.watch(&d, notify::RecursiveMode::NonRecursive) {
            debug!(dir = %d.display(), error = %e, "cannot watch the config directory; polling only");
        }
    }
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reload_request_wakes_it_and_no_sender_means_files_only() {
        let dir = std::env::temp_dir().join(format!("drover-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("compose.yml");
        std::fs::write(&file, "services:\n  web:\n    image: busybox\n").unwrap();
        let load = LoadOptions {
            files: vec![file.clone()],
            project_name: Some("source".into()),
            cwd: dir.clone(),
            ..Default::default()
        };
        let loaded = config::load(&load).unwrap();
        // No watching: only a request (SIGHUP in the command) wakes it.
        let (tx, rx) = watch::channel(());
        let mut source = ConfigSource::new(load, &loaded, Duration::ZERO, rx);
        tx.send_replace(());
        let why = tokio::time::timeout(Duration::from_secs(2), source.changed()).await;
        assert_eq!(why.ok(), Some(Why::Hangup));
        // Once seen, a request is not seen again; and with the sender gone, nothing wakes it.
        drop(tx);
        let quiet = tokio::time::timeout(Duration::from_millis(200), source.changed()).await;
        assert!(quiet.is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
