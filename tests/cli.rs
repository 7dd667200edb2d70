//! The command line without an engine: `check` validates and prints, errors are one
//! located line, unsupported keys are one warning.

use std::process::{Command, Output};

fn check(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // An engine address that cannot answer: check must not need one.
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .arg("check")
        .args(args)
        .output()
        .unwrap()
}

fn project(name: &str, compose: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("drover-cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yml"), compose).unwrap();
    dir
}

#[test]
fn a_wrong_value_is_one_line_with_file_line_column_and_key_path() {
    let dir = project(
        "bad",
        "services:\n  web:\n    image: busybox\n    deploy:\n      replicas: three\n",
    );
    let out = check(&dir, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("compose.yml:5:17: services.web.deploy.replicas:"),
        "{err}"
    );
    assert!(err.contains("integer"), "{err}");
}

#[test]
fn an_unsupported_key_is_one_warning_and_the_file_still_loads() {
    let dir = project(
        "warn",
        "services:\n  web:\n    image: busybox\n    blkio_config: {weight: 300}\n    x-note: ignored\n",
    );
    let out = check(&dir, &["--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("services.web.blkio_config"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "drover-cli-warn");
    assert_eq!(v["services"]["web"]["replicas"], 1);
}

#[test]
fn scale_flag_and_interpolation_reach_the_desired_state() {
    let dir = project(
        "interp",
        "services:\n  web:\n    image: ${IMAGE:-busybox}\n    scale: 2\n",
    );
    std::fs::write(dir.join(".env"), "IMAGE=drover-test/busybox:latest\n").unwrap();
    let out = check(&dir, &["--format", "json", "--scale", "web=5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["services"]["web"]["image"], "drover-test/busybox:latest");
    assert_eq!(v["services"]["web"]["replicas"], 5);
}

#[test]
fn a_missing_required_variable_names_it() {
    let dir = project(
        "required",
        "services:\n  web:\n    image: busybox\n    environment:\n      TOKEN: ${TOKEN:?set TOKEN}\n",
    );
    let out = check(&dir, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("compose.yml:5:"), "{err}");
    assert!(err.contains("TOKEN"), "{err}");
}

#[test]
fn compose_override_and_compose_file_are_read_like_compose() {
    let dir = project(
        "override",
        "services:\n  web:\n    image: busybox\n    scale: 2\n",
    );
    std::fs::write(
        dir.join("compose.override.yml"),
        "services:\n  web:\n    image: drover-test/busybox:latest\n",
    )
    .unwrap();
    let out = check(&dir, &["--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["services"]["web"]["image"], "drover-test/busybox:latest");
    assert_eq!(v["services"]["web"]["replicas"], 2);

    std::fs::write(
        dir.join("other.yml"),
        "services:\n  api:\n    image: busybox\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(&dir)
        .env_clear()
        .env("COMPOSE_FILE", "compose.yml:other.yml")
        .args(["check", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["services"]["api"]["image"], "busybox");
    assert_eq!(
        v["services"]["web"]["image"], "busybox",
        "no override with COMPOSE_FILE"
    );
}

fn drover(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn connection_flags_work_before_and_after_the_subcommand() {
    let dir = project("connect-flags", "services:\n  web:\n    image: busybox\n");
    for args in [
        &["-H", "unix:///drover-flag.sock", "plan"][..],
        &["plan", "-H", "unix:///drover-flag.sock"],
        &["run", "--host", "unix:///drover-flag.sock"],
        &[
            "plan",
            "--tlsverify",
            "-H",
            "tcp://127.0.0.1:1",
            "--tlscacert",
            "/nonexistent/ca.pem",
        ],
    ] {
        let out = drover(&dir, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(!err.contains("unexpected argument"), "{args:?}: {err}");
        // The flag wins over DOCKER_HOST, wherever it is written.
        assert!(!err.contains("nonexistent.sock"), "{args:?}: {err}");
        assert!(
            err.contains("drover-flag.sock") || err.contains("TLS is on (--tlsverify)"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn help_speaks_to_users() {
    let out = drover(&std::env::temp_dir(), &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        help.starts_with("Keeps a Compose project's services at their target replica counts"),
        "{help}"
    );
    for internal in ["flattened", "Endpoint::resolve", "main"] {
        assert!(!help.contains(internal), "{internal}: {help}");
    }
}
