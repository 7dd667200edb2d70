//! A container's labels, with the ones drover reads on every pass parsed once, when the
//! container is observed. A planning pass asks each container for its project, service,
//! slot, term and revision several times; over 10,000 containers, hashing and parsing those
//! labels each time was a third of a pass. Only drover's own labels (`drover.*`) are kept:
//! compose's and the user's are written on the container for other tools and never read
//! back, and kept for every container they were a large part of drover's memory.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::labels::{
    LABEL_AMBASSADOR, LABEL_CONFIG_HASH, LABEL_GENERATION, LABEL_IMAGE_DIGEST, LABEL_MESH_ADDRESS,
    LABEL_PROJECT, LABEL_SERVICE, LABEL_SLOT, LABEL_TERM,
};

/// A container's `drover.*` labels, and the ones drover reads parsed once. Changed only
/// through [`Labels::insert`] and [`Labels::remove`], which keep the two in step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels {
    all: HashMap<String, String>,
    read: Read,
}

/// drover's labels, as [`crate::observe::Container`] reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Read {
    pub project: Option<String>,
    pub service: Option<String>,
    /// The slot, when it is a positive integer.
    pub slot: Option<u32>,
    pub generation: u64,
    pub term: u64,
    pub ambassador: Option<String>,
    pub mesh_address: Option<IpAddr>,
    pub config_hash: Option<String>,
    pub image_digest: Option<String>,
}

impl Read {
    fn from(all: &HashMap<String, String>) -> Read {
        let text = |k: &str| all.get(k).cloned();
        let number = |k: &str| all.get(k).and_then(|v| v.parse::<u64>().ok());
        Read {
            project: text(LABEL_PROJECT),
            service: text(LABEL_SERVICE),
            slot: all
                .get(LABEL_SLOT)
                .and_then(|s| s.parse::<u32>().ok())
                .filter(|n| *n > 0),
            generation: number(LABEL_GENERATION).unwrap_or(0),
            term: number(LABEL_TERM).unwrap_or(0),
            ambassador: text(LABEL_AMBASSADOR),
            mesh_address: all.get(LABEL_MESH_ADDRESS).and_then(|a| a.parse().ok()),
            config_hash: text(LABEL_CONFIG_HASH),
            image_digest: text(LABEL_IMAGE_DIGEST),
        }
    }
}

impl Labels {
    pub fn get(&self, key: &str) -> Option<&String> {
        self.all.get(key)
    }

    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        let old = self.all.insert(key, value);
        self.read = Read::from(&self.all);
        old
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let old = self.all.remove(key);
        self.read = Read::from(&self.all);
        old
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.all.iter()
    }

    pub(super) fn read(&self) -> &Read {
        &self.read
    }
}

impl From<HashMap<String, String>> for Labels {
    fn from(mut all: HashMap<String, String>) -> Labels {
        all.retain(|k, _| k.starts_with(DROVER));
        all.shrink_to_fit();
        let read = Read::from(&all);
        Labels { all, read }
    }
}

/// The prefix of the labels drover reads back.
const DROVER: &str = "drover.";

impl std::ops::Index<&str> for Labels {
    type Output = String;

    fn index(&self, key: &str) -> &String {
        &self.all[key]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(l.get(LABEL_TERM).map(String::as_str), Some("7"));
    }
}
