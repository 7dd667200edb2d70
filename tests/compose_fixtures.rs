//! The Compose fixture suite: each directory of `tests/fixtures/compose/` loads to the
//! normalized project in its `expected.json` (what `drover check --format json` prints,
//! with the fixture's directory written `<dir>` and the config hash left out).
//!
//! After a deliberate change, regenerate with `UPDATE_EXPECT=1 cargo test --test
//! compose_fixtures` and review the diff.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use drover::config::{self, LoadOptions};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose")
}

/// The normalized project of a fixture directory as the golden files hold it.
fn normalized(dir: &Path, files: &[&str], env: &[(&str, &str)], profiles: &[&str]) -> Value {
    let o = LoadOptions {
        cwd: dir.to_path_buf(),
        files: files.iter().map(PathBuf::from).collect(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("HOME".to_string(), "/home/tester".to_string())])
            .collect::<HashMap<_, _>>(),
        profiles: profiles.iter().map(|p| p.to_string()).collect(),
        ..LoadOptions::default()
    };
    let loaded = config::load(&o).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut v = serde_json::to_value(&loaded.project).unwrap();
    for s in v["services"].as_object_mut().unwrap().values_mut() {
        s.as_object_mut().unwrap().remove("config_hash");
    }
    let text = v.to_string().replace(&dir.display().to_string(), "<dir>");
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["warnings"] = Value::from(
        loaded
            .warnings
            .iter()
            .map(|w| w.replace(&dir.display().to_string(), "<dir>"))
            .collect::<Vec<_>>(),
    );
    v
}

fn check(case: &str, files: &[&str], env: &[(&str, &str)], profiles: &[&str], golden: &str) {
    let dir = root().join(case);
    let got = normalized(&dir, files, env, profiles);
    let path = dir.join(golden);
    let pretty = serde_json::to_string_pretty(&got).unwrap() + "\n";
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, &pretty).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_EXPECT=1 writes it)", path.display()));
    let want: Value = serde_json::from_str(&want).unwrap();
    if got != want {
        panic!(
            "{case}: normalized project differs from {golden}; got:\n{pretty}\n\
             (UPDATE_EXPECT=1 rewrites it after a deliberate change)"
        );
    }
}

#[test]
fn every_mapped_key() {
    check("keys", &[], &[], &[], "expected.json");
}

#[test]
fn extends_same_file_and_other_file() {
    check("extends", &[], &[], &[], "expected.json");
}

#[test]
fn include_with_its_own_env_and_paths() {
    check("include", &[], &[], &[], "expected.json");
}

#[test]
fn override_file_rules_and_profiles() {
    check("multi", &[], &[], &[], "expected.json");
    check(
        "multi",
        &[],
        &[("COMPOSE_PROFILES", "debug")],
        &[],
        "expected-debug.json",
    );
    // The flag wins over COMPOSE_PROFILES.
    check(
        "multi",
        &[],
        &[("COMPOSE_PROFILES", "other")],
        &["debug"],
        "expected-debug.json",
    );
}

#[test]
fn interpolation_forms() {
    check("interp", &[], &[], &[], "expected.json");
}

#[test]
fn depends_on_conditions() {
    check("depends", &[], &[], &[], "expected.json");
}
