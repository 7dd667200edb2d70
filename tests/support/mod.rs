//! Helpers for integration tests against real Docker engines.
//!
//! - [`local_engine`]: the machine's engine on its unix socket, started once per test
//!   process by `scripts/engine.sh` (which also builds the offline test image).
//! - [`Node`]: an extra engine in its own network namespace, reached over TCP+TLS, wrapping
//!   `scripts/node.sh`; destroyed when dropped (also when the test panics).
//! - [`registry::Registry`]: a private registry with basic auth, one per test.
//! - [`docker`], [`wait_until`], [`drover_bin`], [`unique_name`]: small conveniences.
//!
//! Tests in one binary run in parallel: give every node its own name and index (each test
//! file owns a range of indices, see the file's header), and every project a
//! [`unique_name`].
#![allow(dead_code)] // each test binary uses a different subset

pub mod drover;
pub mod registry;
pub mod webhook;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The offline image every engine (local and nodes) has: static busybox, `sleep 86400`.
pub const TEST_IMAGE: &str = "drover-test/busybox:latest";

/// The repository's root (for scripts and fixtures).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The path of the `drover` binary built for these tests.
pub fn drover_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drover"))
}

/// Make sure the local engine answers and has [`TEST_IMAGE`] (runs `scripts/engine.sh` once
/// per test process); returns its DOCKER_HOST, e.g. `unix:///var/run/docker.sock`.
pub fn local_engine() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let out = Command::new(repo_root().join("scripts/engine.sh"))
            .output()
            .expect("cannot run scripts/engine.sh");
        assert!(
            out.status.success(),
            "scripts/engine.sh failed:\n{}",
            text(&out)
        );
        let socket =
            std::env::var("DROVER_TEST_SOCKET").unwrap_or_else(|_| "/var/run/docker.sock".into());
        format!("unix://{socket}")
    })
}

/// One raw Engine API request over the local engine's unix socket, for what the CLI
/// will not do (it refuses a second network of the same name, the API of 20.10 does not):
/// returns the status code and the body.
pub fn engine_request(method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let socket = local_engine().trim_start_matches("unix://");
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("engine socket");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, body.to_string())
}

/// The environment that points the docker CLI (or drover) at the local engine.
pub fn local_env() -> Vec<(String, String)> {
    vec![("DOCKER_HOST".into(), local_engine().into())]
}

/// Run the `docker` CLI with `host_env` (e.g. [`Node::env`]) replacing any DOCKER_* variables
/// of the test process.
pub fn docker<K: AsRef<str>, V: AsRef<str>>(host_env: &[(K, V)], args: &[&str]) -> Output {
    let mut cmd = Command::new("docker");
    for var in [
        "DOCKER_HOST",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
        "DOCKER_CONTEXT",
        "DOCKER_API_VERSION",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in host_env {
        cmd.env(k.as_ref(), v.as_ref());
    }
    cmd.args(args).output().expect("cannot run docker")
}

/// [`docker`], panicking with its output unless it succeeds; returns trimmed stdout.
pub fn docker_ok<K: AsRef<str>, V: AsRef<str>>(host_env: &[(K, V)], args: &[&str]) -> String {
    let out = docker(host_env, args);
    assert!(
        out.status.success(),
        "docker {} failed:\n{}",
        args.join(" "),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Poll `f` until it returns true; panic naming `what` if `deadline` passes first.
pub fn wait_until(deadline: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        if f() {
            return;
        }
        if start.elapsed() >= deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(pause.min(deadline.saturating_sub(start.elapsed())));
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// A name no other test (in this or another process) uses: `{prefix}-{pid}-{n}`.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// stdout and stderr of a finished command, for failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run `scripts/node.sh` with `args`, panicking with its output on failure.
pub fn node_sh(args: &[&str]) -> String {
    let out = Command::new(repo_root().join("scripts/node.sh"))
        .args(args)
        .output()
        .expect("cannot run scripts/node.sh");
    assert!(
        out.status.success(),
        "scripts/node.sh {} failed:\n{}",
        args.join(" "),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An extra Docker engine in network namespace `drover-{name}`, listening with TLS on
/// `tcp://10.231.{index}.2:2376` and on the unix socket `/run/drover-{name}.sock`, with
/// [`TEST_IMAGE`] loaded. Destroyed (containers, data, namespace) when dropped.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub index: u8,
    /// `tcp://10.231.{index}.2:2376`: TLS with client certificates.
    pub host: String,
    /// The same engine over its unix socket (no TLS), for setup and inspection.
    pub socket: PathBuf,
    /// DOCKER_CERT_PATH for this node: ca.pem, cert.pem, key.pem.
    pub cert_dir: PathBuf,
}

impl Node {
    /// Start a fresh node (an old one of the same name is destroyed first).
    pub fn start(name: &str, index: u8) -> Node {
        Self::start_with_labels(name, index, &[])
    }

    /// [`Node::start`] with engine labels (`dockerd --label k=v`, shown in `/info`).
    pub fn start_with_labels(name: &str, index: u8, labels: &[(&str, &str)]) -> Node {
        local_engine();
        node_sh(&["destroy", name]);
        let index_s = index.to_string();
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["start", name, &index_s];
        for l in &labels {
            args.extend(["--label", l.as_str()]);
        }
        node_sh(&args);
        let env: HashMap<String, String> = node_sh(&["env", name])
            .lines()
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        Node {
            name: name.to_string(),
            index,
            host: env["DOCKER_HOST"].clone(),
            socket: PathBuf::from(format!("/run/drover-{name}.sock")),
            cert_dir: PathBuf::from(&env["DOCKER_CERT_PATH"]),
        }
    }

    /// DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH for reaching this node over TLS.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("DOCKER_HOST".into(), self.host.clone()),
            ("DOCKER_TLS_VERIFY".into(), "1".into()),
            (
                "DOCKER_CERT_PATH".into(),
                self.cert_dir.display().to_string(),
            ),
        ]
    }

    /// [`Node::env`] as a map (the shape `Endpoint::resolve` takes).
    pub fn env_map(&self) -> HashMap<String, String> {
        self.env().into_iter().collect()
    }

    /// `unix:///run/drover-{name}.sock`.
    pub fn unix_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The node's address that is served but not in its certificate (name-mismatch tests).
    pub fn unlisted_host(&self) -> String {
        format!("tcp://10.231.{}.3:2376", self.index)
    }

    /// Run the docker CLI against this node over its unix socket.
    pub fn docker(&self, args: &[&str]) -> Output {
        docker(&[("DOCKER_HOST", self.unix_host())], args)
    }

    /// [`Node::docker`], panicking unless it succeeds; returns trimmed stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        docker_ok(&[("DOCKER_HOST", self.unix_host())], args)
    }

    /// Whether the engine answers on its socket.
    pub fn answers(&self) -> bool {
        self.docker(&["version"]).status.success()
    }

    /// Crash the whole node: kill -9 dockerd, containerd, shims and containers.
    pub fn kill(&self) {
        node_sh(&["kill", &self.name]);
    }

    /// Stop the engine cleanly (SIGTERM; it stops its containers first).
    pub fn stop(&self) {
        node_sh(&["stop", &self.name]);
    }

    /// Start the engine again with the same flags (after [`Node::stop`] or [`Node::kill`]).
    pub fn restart(&self) {
        node_sh(&["restart", &self.name]);
    }

    /// Cut the node off: new connections fail with "no route to host", open ones hang.
    pub fn partition(&self) {
        node_sh(&["partition", &self.name]);
    }

    /// Undo [`Node::partition`].
    pub fn heal(&self) {
        node_sh(&["heal", &self.name]);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let out = Command::new(repo_root().join("scripts/node.sh"))
            .args(["destroy", &self.name])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("destroying node {} failed:\n{}", self.name, text(&o)),
            Err(e) => eprintln!("cannot run scripts/node.sh destroy {}: {e}", self.name),
        }
    }
}
