//! One duration syntax for the command line's flags and the Compose files: compose's
//! (Go durations plus days and weeks: `1h30m`, `1.5m`, `500ms`, `2d`), no bare numbers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use drover::config::{self, LoadOptions};

fn dir(name: &str, compose: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drover-config-durations-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yml"), compose).unwrap();
    dir
}

fn load(name: &str, compose: &str) -> Result<config::Loaded, String> {
    let cwd = dir(name, compose);
    config::load(&LoadOptions {
        cwd,
        files: vec![PathBuf::from("compose.yml")],
        env: HashMap::new(),
        ..LoadOptions::default()
    })
    .map_err(|e| e.to_string())
}

fn backoff_max(name: &str, value: &str) -> Result<Option<Duration>, String> {
    let text =
        format!("services:\n  web:\n    image: busybox\nx-drover:\n  backoff:\n    max: {value}\n");
    load(name, &text).map(|l| l.settings.backoff.max)
}

#[test]
fn files_take_compose_durations() {
    assert_eq!(
        backoff_max("f1", "1.5m").unwrap(),
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        backoff_max("f2", "1h30m").unwrap(),
        Some(Duration::from_secs(5400))
    );
    assert_eq!(
        backoff_max("f3", "2d").unwrap(),
        Some(Duration::from_secs(2 * 86_400))
    );
    let e = backoff_max("f4", "1day").unwrap_err();
    assert!(
        e.starts_with("compose.yml:6:10: x-drover.backoff.max: expected a duration"),
        "{e}"
    );
    // Compose refuses a number without a unit, written as a number or as text.
    let e = backoff_max("f5", "30").unwrap_err();
    assert!(e.contains("needs a unit"), "{e}");
    let e = load(
        "f6",
        "services:\n  web:\n    image: busybox\n    stop_grace_period: \"10\"\n",
    )
    .unwrap_err();
    assert!(
        e.starts_with("compose.yml:4:24: services.web.stop_grace_period: expected a duration"),
        "{e}"
    );
}

/// `drover run` with one duration flag, against a file that does not exist: a flag it
/// refuses ends in a usage error (exit 2) before the file is read; a flag it takes gets
/// as far as the missing file (exit 1).
fn run_with(flag: &str, value: &str) -> (i32, String) {
    let cwd = dir(&format!("flag{}", flag.len() * 7 + value.len()), "");
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(&cwd)
        .env_clear()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args([
            "--log-format",
            "json",
            "-f",
            "missing.yml",
            "run",
            flag,
            value,
        ])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn flags_take_the_same_durations_as_files() {
    for (flag, value) in [
        ("--backoff-max", "1.5m"),
        ("--resync-interval", "1h30m"),
        ("--watchdog", "90s"),
        ("--lease-ttl", "2d"),
        ("--backoff-initial", "500ms"),
    ] {
        let (code, err) = run_with(flag, value);
        assert_eq!(code, 1, "{flag} {value}: {err}");
        assert!(err.contains("missing.yml"), "{flag} {value}: {err}");
    }
    for (flag, value) in [
        ("--resync-interval", "1day"),
        ("--backoff-max", "30"),
        ("--watchdog", "1h 30m"),
    ] {
        let (code, err) = run_with(flag, value);
        assert_eq!(code, 2, "{flag} {value} was accepted: {err}");
        assert!(err.contains("expected a duration"), "{err}");
    }
}
