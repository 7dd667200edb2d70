//! The broken-config corpus (`tests/fixtures/broken/`): every file makes `drover check`
//! exit 1 with one located line naming the problem, without a panic, within a second of
//! CPU and bounded memory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What each file's error must say (besides `compose.yml`).
const EXPECT: &[(&str, &str)] = &[
    ("absurd-replicas.yml", "at most 10000"),
    (
        "bad-constraint.yml",
        "compose.yml:6:23: services.web.deploy.placement.constraints[0]",
    ),
    ("bad-duration.yml", "update_config.delay"),
    ("bad-indent.yml", "compose.yml:4:"),
    (
        "bad-service-name.yml",
        "compose.yml:2:3: services.web/../x: a service name",
    ),
    ("bad-variable-name.yml", "services.web.image"),
    ("billion-laughs.yml", "too large or too complex"),
    ("cycle.yml", "dependency cycle"),
    ("deep-anchor-chain.yml", "too large or too complex"),
    ("deep-block-nesting.yml", "compose.yml:"),
    ("deep-flow-nesting.yml", "recursion limit"),
    (
        "duplicate-host-port.yml",
        "compose.yml:4:13: services.web.ports[0]: host port 8080/tcp would be published by each of the 2 replicas",
    ),
    ("duplicate-key.yml", "duplicate"),
    (
        "duplicate-port-across-services.yml",
        "compose.yml:4:13: services.web.ports[0]: host port 8080/tcp is already published by services.api.ports[0]",
    ),
    ("empty.yml", "no services"),
    ("fractional-scale.yml", "services.web.scale"),
    ("image-a-mapping.yml", "services.web.image"),
    ("laughs-in-merge-keys.yml", "too large or too complex"),
    ("missing-env-file.yml", "services.web.env_file"),
    ("missing-variable.yml", "IMAGE"),
    ("negative-replicas.yml", "non-negative"),
    ("non-utf8.yml", "compose.yml:5:17: the file is not UTF-8"),
    ("not-a-mapping.yml", "expected a map"),
    ("nul-byte.yml", "services.web.image"),
    ("overflowing-replicas.yml", "services.web.deploy.replicas"),
    ("port-out-of-range.yml", "services.web.ports[0]"),
    ("ports-a-word.yml", "services.web.ports"),
    ("self-dependency.yml", "dependency cycle"),
    ("services-a-list.yml", "expected a map"),
    ("tabs.yml", "tabs"),
    ("unclosed-flow.yml", "compose.yml:1:"),
    ("unclosed-variable.yml", "services.web.image"),
    ("undefined-alias.yml", "compose.yml:4:"),
    ("unknown-dependency.yml", "no such service"),
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken")
}

/// `drover check` on `compose` (bytes) in a fresh directory, limited to 1 s of CPU and
/// 1 GiB of address space (the kernel kills it past either).
fn check_bytes(name: &str, compose: &[u8]) -> Output {
    let dir = std::env::temp_dir().join(format!("drover-bad-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yml"), compose).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -t 1 && ulimit -v 1048576 && exec \"$0\" check")
        .arg(env!("CARGO_BIN_EXE_drover"))
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// The one error line, after checking exit status 1, no panic and nothing else said.
fn one_error(name: &str, out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{name} panicked:\n{err}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{name}: exit {:?} (killed past 1 s of CPU or 1 GiB?)\n{err}",
        out.status
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("warning:")).collect();
    assert_eq!(lines.len(), 1, "{name}: one line expected:\n{err}");
    assert!(
        lines[0].starts_with("error: compose.yml"),
        "{name}: the error names the file first: {}",
        lines[0]
    );
    lines[0].to_string()
}

#[test]
fn every_broken_config_is_one_located_line_and_exit_1() {
    let mut listed: Vec<String> = std::fs::read_dir(corpus())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    let expected: Vec<String> = EXPECT.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(listed, expected, "every corpus file has an expectation");
    for (file, says) in EXPECT {
        let bytes = std::fs::read(corpus().join(file)).unwrap();
        let out = check_bytes(file, &bytes);
        let line = one_error(file, &out);
        assert!(line.contains(says), "{file}: expected {says:?} in: {line}");
        assert!(line.len() < 1000, "{file}: one readable line: {line}");
    }
}

#[test]
fn a_huge_file_is_refused_before_it_is_parsed() {
    let mut text = String::from("services:\n  web:\n    image: busybox\n    labels:\n");
    for i in 0..200_000 {
        text.push_str(&format!("      k{i}: v{i}\n"));
    }
    let out = check_bytes("huge", text.as_bytes());
    let line = one_error("huge", &out);
    assert!(line.contains("at most"), "{line}");
    // One long line without a newline: the same.
    let line = format!("x-junk: {}\n", "a".repeat(8 << 20));
    let out = check_bytes("longline", line.as_bytes());
    one_error("longline", &out);
}

#[test]
fn absurd_scale_flags_are_refused_too() {
    let dir = std::env::temp_dir().join(format!("drover-bad-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yml"), "services:\n  web:\n    image: x\n").unwrap();
    std::fs::write(dir.join("scale.yml"), "web: 1000000\n").unwrap();
    for args in [
        &["check", "--scale", "web=99999"][..],
        &["check", "--scale-file", "scale.yml"][..],
        &["check", "--scale", "web=-1"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(args)
            .current_dir(&dir)
            .env_clear()
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.trim().is_empty(), "{args:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ports_that_can_coexist_are_accepted() {
    for (name, compose) in [
        // One replica per host port, or the engine picks one per replica.
        (
            "one-replica",
            "services:\n  web:\n    image: x\n    ports: [\"8080:80\"]\n",
        ),
        (
            "ephemeral",
            "services:\n  web:\n    image: x\n    ports: [\"80\"]\n    scale: 3\n",
        ),
        // Different protocols or addresses do not clash.
        (
            "protocols",
            "services:\n  a:\n    image: x\n    ports: [\"53:53/udp\"]\n  b:\n    image: x\n    ports: [\"53:53/tcp\"]\n",
        ),
        (
            "addresses",
            "services:\n  a:\n    image: x\n    ports: [\"127.0.0.1:80:80\"]\n  b:\n    image: x\n    ports: [\"127.0.0.2:80:80\"]\n",
        ),
        // A service scaled to zero binds nothing.
        (
            "scaled-to-zero",
            "services:\n  a:\n    image: x\n    ports: [\"80:80\"]\n  b:\n    image: x\n    ports: [\"80:80\"]\n    scale: 0\n",
        ),
        // Swarm publishes a port once for the whole swarm.
        (
            "swarm",
            "services:\n  web:\n    image: x\n    ports: [\"8080:80\"]\n    deploy: {replicas: 3}\nx-drover: {mode: swarm}\n",
        ),
    ] {
        let out = check_bytes(name, compose.as_bytes());
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Before the mode is known (auto: Swarm if the engine is a manager), a warning.
    let out = check_bytes(
        "auto",
        b"services:\n  web:\n    image: x\n    ports: [\"8080:80\"]\n    scale: 2\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: compose.yml:4:13: services.web.ports[0]: host port 8080/tcp")
            && err.contains("unless it runs in Swarm mode"),
        "{err}"
    );
}
