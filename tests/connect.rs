//! Connecting to real engines: the local socket, TLS nodes, and every failure a user can
//! meet, each reported as one line that says what to fix.
//!
//! Node indices 41..49 belong to this file.

mod support;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use drover::engine::connect::{ConnectArgs, ConnectError, Endpoint, ErrorKind, connect};
use support::{Node, node_sh, wait_until};

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn connect_env(env: &HashMap<String, String>) -> Result<bollard::Docker, ConnectError> {
    let ep = Endpoint::resolve(&ConnectArgs::default(), env)?;
    connect(&ep).await
}

async fn connect_err(env: &HashMap<String, String>) -> ConnectError {
    match connect_env(env).await {
        Ok(_) => panic!("connecting with {env:?} should fail"),
        Err(e) => {
            eprintln!("connect error: {e}");
            e
        }
    }
}

/// A directory of its own under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(support::unique_name(prefix));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn api(v: &str) -> (usize, usize) {
    let (a, b) = v.split_once('.').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

#[tokio::test]
async fn local_socket_connects_and_negotiates() {
    let host = support::local_engine();
    let docker = connect_env(&env(&[("DOCKER_HOST", host)])).await.unwrap();
    let engine_api = docker.version().await.unwrap().api_version.unwrap();
    let v = docker.client_version();
    let negotiated = (v.major_version, v.minor_version);
    assert!(
        negotiated <= api(&engine_api),
        "negotiated {negotiated:?} > engine {engine_api}"
    );
    assert!(negotiated >= (1, 41), "negotiated {negotiated:?}");
    // Requests after negotiation keep working (they carry the negotiated version).
    docker.info().await.unwrap();
}

#[tokio::test]
async fn tls_node_connects_and_refuses_wrong_names_and_plaintext() {
    let node = Node::start("connect-tls", 41);
    let docker = connect_env(&node.env_map()).await.unwrap();
    let info = docker.info().await.unwrap();
    assert!(info.id.is_some_and(|id| !id.is_empty()));

    // The node also answers on an address its certificate does not name.
    let mut wrong_name = node.env_map();
    wrong_name.insert("DOCKER_HOST".into(), node.unlisted_host());
    let e = connect_err(&wrong_name).await;
    assert_eq!(e.kind(), ErrorKind::TlsServerCertificate, "{e}");
    let want = format!("is not valid for the name 10.231.{}.3", node.index);
    assert!(e.to_string().contains(&want), "{e}");
    assert!(!e.is_transient());

    // Plaintext to the TLS port: a clear answer, not a hang.
    let start = Instant::now();
    let e = connect_err(&env(&[("DOCKER_HOST", &node.host)])).await;
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(e.kind(), ErrorKind::TlsRequired, "{e}");
    assert!(e.to_string().contains("DOCKER_TLS_VERIFY"), "{e}");
}

#[tokio::test]
async fn wrong_ca_and_foreign_client_certificates_are_refused() {
    let node = Node::start("connect-ca", 42);
    let other = TempDir::new("drover-other-ca");
    node_sh(&["certs-other", &other.0.display().to_string()]);

    // Our CA does not vouch for the engine: name the CA file.
    let mut wrong_ca = node.env_map();
    wrong_ca.insert("DOCKER_CERT_PATH".into(), other.0.display().to_string());
    let e = connect_err(&wrong_ca).await;
    assert_eq!(e.kind(), ErrorKind::TlsServerCertificate, "{e}");
    let ca = other.0.join("ca.pem").display().to_string();
    assert!(
        e.to_string()
            .contains(&format!("is not signed by the CA in {ca}")),
        "{e}"
    );
    assert!(!e.is_transient());

    // The engine does not accept our client certificate: name the certificate file.
    let cert = other.0.join("cert.pem");
    let args = ConnectArgs {
        tlscacert: Some(node.cert_dir.join("ca.pem")),
        tlscert: Some(cert.clone()),
        tlskey: Some(other.0.join("key.pem")),
        ..ConnectArgs::default()
    };
    let ep = Endpoint::resolve(&args, &node.env_map()).unwrap();
    let e = connect(&ep).await.unwrap_err();
    eprintln!("connect error: {e}");
    assert_eq!(e.kind(), ErrorKind::TlsClientRejected, "{e}");
    assert!(e.to_string().contains(&cert.display().to_string()), "{e}");
    assert!(!e.is_transient());
}

#[tokio::test]
async fn missing_or_invalid_tls_files_are_named_before_dialling() {
    let dir = TempDir::new("drover-certs");
    std::fs::write(dir.0.join("ca.pem"), "not a certificate").unwrap();
    // Nothing listens on this address: the files must be checked first.
    let e = env(&[
        ("DOCKER_HOST", "tcp://127.0.0.1:1"),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", &dir.0.display().to_string()),
    ]);
    let err = connect_err(&e).await;
    assert_eq!(err.kind(), ErrorKind::TlsFiles, "{err}");
    assert!(
        err.to_string().contains(&format!(
            "{} holds no PEM certificate",
            dir.0.join("ca.pem").display()
        )),
        "{err}"
    );

    std::fs::copy(own_ca(&dir.0), dir.0.join("ca.pem")).unwrap();
    let err = connect_err(&e).await;
    let cert = dir.0.join("cert.pem").display().to_string();
    assert!(
        err.to_string()
            .contains(&format!("the client certificate {cert} does not exist")),
        "{err}"
    );
    assert!(err.to_string().contains("DOCKER_CERT_PATH"), "{err}");
    assert!(!err.is_transient());
}

/// A CA certificate made with the project's script, in `dir/other-ca/ca.pem`.
fn own_ca(dir: &Path) -> PathBuf {
    let out = dir.join("gen");
    node_sh(&["certs-other", &out.display().to_string()]);
    out.join("ca.pem")
}

#[tokio::test]
async fn missing_socket_says_how_to_fix_it() {
    let e = connect_err(&env(&[("DOCKER_HOST", "unix:///run/drover-no-such.sock")])).await;
    assert_eq!(e.kind(), ErrorKind::SocketMissing);
    assert_eq!(
        e.to_string(),
        "cannot connect to the Docker engine at unix:///run/drover-no-such.sock: the socket does not exist; \
         is dockerd running, or is the socket mounted into this container (-v /var/run/docker.sock:/var/run/docker.sock)?"
    );
}

#[tokio::test]
async fn node_that_is_down_or_cut_off_is_transient() {
    let node = Node::start("connect-down", 43);
    let env = node.env_map();

    node.partition();
    let start = Instant::now();
    let e = connect_err(&env).await;
    assert!(e.is_transient(), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("cannot reach the Docker engine at {}", node.host)),
        "{e}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(11),
        "took {:?}",
        start.elapsed()
    );
    node.heal();
    connect_env(&env).await.unwrap();

    node.kill();
    let e = connect_err(&env).await;
    // Refused once the kernel has closed the listener; just before that the dying engine
    // may accept and drop the connection. Both are one transient line.
    let refused = format!(
        "cannot reach the Docker engine at {}: connection refused",
        node.host
    );
    let dropped = format!(
        "cannot reach the Docker engine at {}: the engine closed the connection",
        node.host
    );
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string() == refused || e.to_string() == dropped, "{e}");
    assert!(e.is_transient());
    node.restart();
    connect_env(&env).await.unwrap();
}

const CHILD_SOCKET: &str = "DROVER_TEST_CHILD_SOCKET";

/// Runs only as the unprivileged child of `permission_denied_names_group_and_fix`.
#[tokio::test]
async fn child_connects_to_socket() {
    let Ok(path) = std::env::var(CHILD_SOCKET) else {
        return;
    };
    let e = connect_err(&env(&[("DOCKER_HOST", &format!("unix://{path}"))])).await;
    println!("CHILD-ERROR: {e}");
    println!("CHILD-KIND: {:?}", e.kind());
}

#[test]
fn permission_denied_names_group_and_fix() {
    // As root every socket opens, so the connecting is done by a copy of this test binary
    // running as nobody.
    let dir = TempDir::new("drover-perm");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.0.join("engine.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o660)).unwrap();
    std::os::unix::fs::chown(&sock, Some(0), Some(0)).unwrap();

    let me = std::env::current_exe().unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&me)
        .args([
            "--exact",
            "child_connects_to_socket",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_SOCKET, &sock)
        .output()
        .expect("cannot run setpriv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed:\n{}",
        support::text(&out)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CHILD-ERROR: ").map(|(_, e)| e))
        .unwrap_or_else(|| panic!("no error line:\n{stdout}"));
    assert!(stdout.contains("CHILD-KIND: PermissionDenied"), "{stdout}");
    let want = format!(
        "permission denied on {} (owned by gid 0 \"root\"); run with --group-add 0, or add the user to that group",
        sock.display()
    );
    assert!(line.ends_with(&want), "{line}");
}

/// A TCP server on 127.0.0.1 that answers every connection with `reply` (or holds it open
/// silently when `reply` is empty); returns its DOCKER_HOST.
fn fake_server(reply: &'static [u8]) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            if reply.is_empty() {
                held.push(conn);
            } else {
                let _ = conn.write_all(reply);
            }
        }
    });
    format!("tcp://{addr}")
}

#[tokio::test]
async fn something_that_is_not_docker_is_named_as_such() {
    let web = fake_server(
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot found",
    );
    let e = connect_err(&env(&[("DOCKER_HOST", &web)])).await;
    assert_eq!(e.kind(), ErrorKind::NotDocker, "{e}");
    assert!(e.to_string().contains("is this a Docker engine?"), "{e}");

    // TLS configured, plaintext HTTP answering.
    let certs = TempDir::new("drover-plain");
    node_sh(&["certs-other", &certs.0.display().to_string()]);
    let e = connect_err(&env(&[
        ("DOCKER_HOST", &web),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", &certs.0.display().to_string()),
    ]))
    .await;
    assert_eq!(e.kind(), ErrorKind::TlsHandshake, "{e}");
    assert!(e.to_string().contains("does not speak TLS"), "{e}");

    let ssh = fake_server(b"SSH-2.0-OpenSSH_9.2\r\n");
    let e = connect_err(&env(&[("DOCKER_HOST", &ssh)])).await;
    assert_eq!(e.kind(), ErrorKind::NotDocker, "{e}");
    assert!(!e.is_transient());
}

#[tokio::test]
async fn an_engine_that_never_answers_times_out() {
    let silent = fake_server(b"");
    let start = Instant::now();
    let e = connect_err(&env(&[("DOCKER_HOST", &silent)])).await;
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.is_transient());
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_socket_nobody_listens_on_is_transient() {
    let dir = TempDir::new("drover-stale");
    let sock = dir.0.join("engine.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    // A child process another test forks at that moment holds the listening socket until
    // it runs its program; until then a connection is taken, then closed. Wait until
    // nothing listens.
    wait_until(
        Duration::from_secs(10),
        "nothing listens on the socket",
        || {
            let refused = std::io::ErrorKind::ConnectionRefused;
            std::os::unix::net::UnixStream::connect(&sock).is_err_and(|e| e.kind() == refused)
        },
    );
    let e = connect_err(&env(&[(
        "DOCKER_HOST",
        &format!("unix://{}", sock.display()),
    )]))
    .await;
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    assert!(e.is_transient());
    assert!(e.to_string().contains("is dockerd running?"), "{e}");
}
