//! A container's labels, with the ones drover reads on every pass parsed once, when the
//! container is observed. A planning pass asks each container for its project, service,
//! slot, term and revision several times; over 10,000 containers, hashing and parsing those
//! labels each time was a third of a pass. Only drover's own labels (`drover.*`) are kept:
//! compose's and the user's are written on the container for other tools and never read
//! back, and kept for every container they were a large part of drover's memory.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use crate::labels::{
    LABEL_AMBASSADOR, LABEL_CONFIG_HASH, LABEL_GENERATION, LABEL_IMAGE_DIGEST, LABEL_MESH_ADDRESS,
    LABEL_PROJECT, LABEL_SERVICE, LABEL_SLOT, LABEL_TERM,
};

/// A container's `drover.*` labels, and the ones drover reads parsed once. Changed only
/// through [`Labels::insert`] and [`Labels::remove`], which keep the two in step. Keys and
/// values are interned (see [`intern`]): thousands of containers share a project's few
/// names, hashes and numbers, and a scan over them stays in the cache.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels {
    /// By key, in key order.
    all: Vec<(Arc<str>, Arc<str>)>,
    read: Read,
}

/// drover's labels, as [`crate::observe::Container`] reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Read {
    pub project: Option<Arc<str>>,
    pub service: Option<Arc<str>>,
    /// The slot, when it is a positive integer.
    pub slot: Option<u32>,
    pub generation: u64,
    pub term: u64,
    pub ambassador: Option<Arc<str>>,
    pub mesh_address: Option<IpAddr>,
    pub config_hash: Option<Arc<str>>,
    pub image_digest: Option<Arc<str>>,
}

impl Read {
    fn from(labels: &Labels) -> Read {
        let text = |k: &str| labels.find(k).ok().map(|i| labels.all[i].1.clone());
        let number = |k: &str| labels.get(k).and_then(|v| v.parse::<u64>().ok());
        Read {
            project: text(LABEL_PROJECT),
            service: text(LABEL_SERVICE),
            slot: labels
                .get(LABEL_SLOT)
                .and_then(|s| s.parse::<u32>().ok())
                .filter(|n| *n > 0),
            generation: number(LABEL_GENERATION).unwrap_or(0),
            term: number(LABEL_TERM).unwrap_or(0),
            ambassador: text(LABEL_AMBASSADOR),
            mesh_address: labels.get(LABEL_MESH_ADDRESS).and_then(|a| a.parse().ok()),
            config_hash: text(LABEL_CONFIG_HASH),
            image_digest: text(LABEL_IMAGE_DIGEST),
        }
    }
}

impl Labels {
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.all.binary_search_by(|(k, _)| (**k).cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).ok().map(|i| &*self.all[i].1)
    }

    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        let value = intern(&value);
        let old = match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.all[i].1, value).to_string()),
            Err(i) => {
                self.all.insert(i, (intern(&key), value));
                None
            }
        };
        self.read = Read::from(self);
        old
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let old = self
            .find(key)
            .ok()
            .map(|i| self.all.remove(i).1.to_string());
        self.read = Read::from(self);
        old
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.all.iter().map(|(k, v)| (&**k, &**v))
    }

    pub(super) fn read(&self) -> &Read {
        &self.read
    }
}

impl From<HashMap<String, String>> for Labels {
    fn from(all: HashMap<String, String>) -> Labels {
        let mut all: Vec<(Arc<str>, Arc<str>)> = all
            .iter()
            .filter(|(k, _)| k.starts_with(DROVER))
            .map(|(k, v)| (intern(k), intern(v)))
            .collect();
        all.sort();
        let mut labels = Labels {
            all,
            read: Read::default(),
        };
        labels.read = Read::from(&labels);
        labels
    }
}

/// The prefix of the labels drover reads back.
const DROVER: &str = "drover.";

impl std::ops::Index<&str> for Labels {
    type Output = str;

    fn index(&self, key: &str) -> &str {
        match self.get(key) {
            Some(v) => v,
            None => panic!("no label {key}"),
        }
    }
}

/// One shared copy of `s` for every container label that says it. Copies no container
/// holds any more are dropped whenever the pool has doubled since it was last swept, so
/// it stays the size of what the observed containers say.
pub(super) fn intern(s: &str) -> Arc<str> {
    static POOL: OnceLock<Mutex<(HashSet<Arc<str>>, usize)>> = OnceLock::new();
    let pool = POOL.get_or_init(|| Mutex::new((HashSet::new(), 0)));
    let mut guard = pool.lock().unwrap_or_else(|e| e.into_inner());
    let (set, swept) = &mut *guard;
    if let Some(a) = set.get(s) {
        return a.clone();
    }
    if set.len() >= (*swept * 2).max(4096) {
        set.retain(|a| Arc::strong_count(a) > 1);
        *swept = set.len();
    }
    let a: Arc<str> = Arc::from(s);
    set.insert(a.clone());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_that_say_the_same_share_one_copy() {
        let labels = || {
            Labels::from(HashMap::from([(
                LABEL_SERVICE.to_string(),
                "shared-web".to_string(),
            )]))
        };
        let (a, b) = (labels(), labels());
        let (a, b) = (a.read().service.clone(), b.read().service.clone());
        assert!(Arc::ptr_eq(&a.unwrap(), &b.unwrap()));
    }

    #[test]
    fn drovers_labels_are_read_once_and_follow_every_change() {
        let mut l = Labels::from(HashMap::from([
            (LABEL_PROJECT.to_string(), "p".to_string()),
            (LABEL_SLOT.to_string(), "0".to_string()),
            (LABEL_TERM.to_string(), "7".to_string()),
            ("com.docker.compose.project".to_string(), "p".to_string()),
        ]));
        assert_eq!(
            l.get("com.docker.compose.project"),
            None,
            "only drover's own are kept"
        );
        assert_eq!(l.read().project.as_deref(), Some("p"));
        assert_eq!(l.read().slot, None, "a slot is a positive integer");
        assert_eq!(l.read().term, 7);
        l.insert(LABEL_SLOT.into(), "3".into());
        assert_eq!(l.read().slot, Some(3));
        l.remove(LABEL_PROJECT);
        assert_eq!(l.read().project, None);
        assert_eq!(l.get(LABEL_TERM), Some("7"));
    }
}
