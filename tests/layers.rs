//! The modules' imports go one way (docs/architecture.md): each module of `src/` may
//! import only the modules before it in `LAYERS`. A new import that points back up the
//! chain fails here, with the file that made it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Lowest first.
const LAYERS: &[&str] = &[
    "telemetry",
    "labels",
    "mesh",
    "engine",
    "config",
    "spec",
    "observe",
    "plan",
    "execute",
    "lease",
    "notify",
    "autoscale",
    "runtime",
    "nodes",
    "plain",
    "swarm",
    "preview",
    "down",
];

fn sources(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            sources(&e.unwrap().path(), out);
        }
    } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// The modules of drover a file names as `crate::X`.
fn imports(file: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut found = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let name: String = text[i + 7..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

#[test]
fn each_module_imports_only_the_ones_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for (rank, module) in LAYERS.iter().enumerate() {
        let mut files = Vec::new();
        let dir = src.join(module);
        sources(&dir, &mut files);
        sources(&src.join(format!("{module}.rs")), &mut files);
        assert!(!files.is_empty(), "no source for module {module}");
        for file in files {
            for name in imports(&file) {
                let Some(at) = LAYERS.iter().position(|l| *l == name) else {
                    continue;
                };
                if at > rank {
                    problems.push(format!(
                        "{} imports {name}, which sits above {module}",
                        file.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_module_is_placed() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(m) = line
            .strip_prefix("pub mod ")
            .and_then(|l| l.strip_suffix(';'))
        {
            assert!(LAYERS.contains(&m), "module {m} is missing from LAYERS");
        }
    }
}
