//! The files a load read or looked for, so the runtime watches exactly those: the Compose
//! files and the defaults looked up, files reached through `include` and `extends`, `.env`
//! and `--env-file` files, the services' `env_file`s and the scale file. A missing optional
//! file counts too: creating it changes the config.
//!
//! Collected per thread while [`tracked`] runs (a load is synchronous and runs on one
//! thread), so the readers deep in the loader need not pass a list around.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

thread_local! {
    static READS: RefCell<Option<BTreeSet<PathBuf>>> = const { RefCell::new(None) };
}

/// Note that the load read, or looked for, `path`.
pub(crate) fn note(path: &Path) {
    READS.with(|r| {
        if let Some(set) = r.borrow_mut().as_mut() {
            set.insert(path.to_path_buf());
        }
    });
}

/// Run `f`, returning what it returned and every path noted meanwhile.
pub(crate) fn tracked<T>(f: impl FnOnce() -> T) -> (T, Vec<PathBuf>) {
    let outer = READS.with(|r| r.borrow_mut().replace(BTreeSet::new()));
    let out = f();
    let noted = READS.with(|r| std::mem::replace(&mut *r.borrow_mut(), outer));
    (out, noted.unwrap_or_default().into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_only_while_tracked() {
        note(Path::new("/before"));
        let ((), files) = tracked(|| {
            note(Path::new("/b"));
            note(Path::new("/a"));
            note(Path::new("/b"));
        });
        assert_eq!(files, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        note(Path::new("/after"));
        let ((), files) = tracked(|| {});
        assert!(files.is_empty());
    }
}
