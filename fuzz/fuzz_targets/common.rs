//! A scratch project directory per fuzzing process, and one load through the public API.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use drover::config::{self, LoadOptions};

pub fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("drover-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// Load `compose` (and `.env` when given) as `drover check` would. Errors are fine;
/// panics, hangs and runaway memory are what the fuzzer looks for.
pub fn load(compose: &[u8], dotenv: Option<&[u8]>) {
    let d = dir();
    std::fs::write(d.join("compose.yml"), compose).unwrap();
    match dotenv {
        Some(e) => std::fs::write(d.join(".env"), e).unwrap(),
        None => {
            let _ = std::fs::remove_file(d.join(".env"));
        }
    }
    let env: HashMap<String, String> = [
        ("SET", "value"),
        ("EMPTY", ""),
        ("DOLLAR", "$HOME"),
        ("NESTED", "${SET}"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let opts = LoadOptions {
        project_name: Some("fuzz".into()),
        env,
        cwd: d.clone(),
        ..Default::default()
    };
    if let Ok(loaded) = config::load(&opts) {
        // What `check` prints must be producible from whatever loaded.
        let _ = config::to_yaml(&loaded.project);
    }
}
