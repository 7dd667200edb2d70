#![allow(dead_code)]
pub mod drover;

use std::sync::OnceLock;

/// Make sure the local engine answers (starting it when needed); its DOCKER_HOST.
pub fn local_engine() -> &'static str {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let root = env!("CARGO_MANIFEST_DIR");
        let ok = std::process::Command::new(format!("{root}/scripts/engine.sh"))
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "scripts/engine.sh could not provide a local engine");
    });
    "unix:///var/run/docker.sock"
}
