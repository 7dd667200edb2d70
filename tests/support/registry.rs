//! A private registry for one test: Debian's `docker-registry` (distribution 2.8) with
//! htpasswd basic auth, on a free port, over plain HTTP on loopback ([`Registry::http`]) or
//! over TLS with a test CA on any of the machine's addresses ([`Registry::tls`]; the engines
//! trust it through `/etc/docker/certs.d/HOST:PORT/ca.crt`, which is shared by every
//! dockerd on the machine, nodes included). Its log (every request, at info level) is kept
//! in its directory; the process is killed and the trust removed when dropped.
//!
//! Images get into it as users put them there: `docker login` into a test `DOCKER_CONFIG`
//! ([`Registry::login`]), then `docker tag` + `docker push` ([`Registry::push`]).
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{docker_ok, repo_root, text, unique_name};

/// The user the registry accepts, and the password.
pub const USER: &str = "drover";
pub const PASSWORD: &str = "s3cret-Pa55word";

/// A running registry.
pub struct Registry {
    /// `HOST:PORT`: the prefix of image names in this registry.
    pub host: String,
    /// Its config, htpasswd, storage, certificates and log.
    pub dir: PathBuf,
    /// `ca.crt` for TLS registries.
    pub ca: Option<PathBuf>,
    child: Child,
    /// `/etc/docker/certs.d/HOST:PORT`, made for a TLS registry and removed on drop.
    trust: Option<PathBuf>,
}

/// The `docker-registry` binary, installed once per test process by `scripts/registry.sh`.
fn binary() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(repo_root().join("scripts/registry.sh"))
            .output()
            .expect("cannot run scripts/registry.sh");
        assert!(
            out.status.success(),
            "scripts/registry.sh failed:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed:\n{}",
        args.join(" "),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A port nobody listens on at `ip` right now.
fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on {ip}: {e}"))
}

/// A test CA and a server certificate for `ip` (and `localhost`) in `dir`.
fn certificates(dir: &Path, ip: IpAddr) {
    let d = |f: &str| dir.join(f).display().to_string();
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=drover test registry CA",
            "-keyout",
            &d("ca.key"),
            "-out",
            &d("ca.crt"),
        ],
    );
    run(
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=registry",
            "-keyout",
            &d("server.key"),
            "-out",
            &d("server.csr"),
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        format!("subjectAltName = IP:{ip}, DNS:localhost\nextendedKeyUsage = serverAuth\n"),
    )
    .unwrap();
    run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &d("server.csr"),
            "-CA",
            &d("ca.crt"),
            "-CAkey",
            &d("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &d("server.ext"),
            "-out",
            &d("server.crt"),
        ],
    );
}

impl Registry {
    /// A registry over plain HTTP on 127.0.0.1 (engines allow plain HTTP to loopback).
    pub fn http() -> Registry {
        Registry::start(IpAddr::V4(Ipv4Addr::LOCALHOST), false, true)
    }

    /// A registry over plain HTTP on 127.0.0.1 that asks for no login (pushes and pulls
    /// need no credentials).
    pub fn open() -> Registry {
        Registry::start(IpAddr::V4(Ipv4Addr::LOCALHOST), false, false)
    }

    /// A registry over TLS on `ip` (one of this machine's addresses, e.g. a node's
    /// host-side address `10.231.N.1`, which the node's namespace can reach), with a test
    /// CA the engines trust.
    pub fn tls(ip: IpAddr) -> Registry {
        Registry::start(ip, true, true)
    }

    /// A registry over TLS on `ip`, as [`Registry::tls`], that asks for no login.
    pub fn open_tls(ip: IpAddr) -> Registry {
        Registry::start(ip, true, false)
    }

    fn start(ip: IpAddr, tls: bool, auth: bool) -> Registry {
        let bin = binary();
        let dir = std::env::temp_dir().join(unique_name("drover-registry"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let htpasswd = run("htpasswd", &["-Bbn", USER, PASSWORD]);
        std::fs::write(dir.join("htpasswd"), htpasswd).unwrap();
        if tls {
            certificates(&dir, ip);
        }
        // A port found free may be taken before the registry binds it: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port(ip);
            let host = match ip {
                IpAddr::V4(_) => format!("{ip}:{port}"),
                IpAddr::V6(_) => format!("[{ip}]:{port}"),
            };
            let tls_conf = if tls {
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    dir.join("server.crt").display(),
                    dir.join("server.key").display()
                )
            } else {
                String::new()
            };
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  formatter: text\n\
                 storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {host}\n{tls_conf}{auth_conf}",
                data = dir.join("data").display(),
                auth_conf = if auth {
                    format!(
                        "auth:\n  htpasswd:\n    realm: drover-test\n    path: {}\n",
                        dir.join("htpasswd").display()
                    )
                } else {
                    String::new()
                },
            );
            std::fs::write(dir.join("config.yml"), config).unwrap();
            let log = std::fs::File::create(dir.join("registry.log")).unwrap();
            let child = Command::new(bin)
                .args(["serve", &dir.join("config.yml").display().to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
            let trust = tls.then(|| {
                let t = PathBuf::from("/etc/docker/certs.d").join(&host);
                std::fs::create_dir_all(&t).unwrap();
                std::fs::copy(dir.join("ca.crt"), t.join("ca.crt")).unwrap();
                t
            });
            let mut r = Registry {
                host,
                ca: tls.then(|| dir.join("ca.crt")),
                dir: dir.clone(),
                child,
                trust,
            };
            match r.wait_ready(Duration::from_secs(20)) {
                Ok(()) => return r,
                Err(e) => last = e,
            }
        }
        panic!("the registry did not start: {last}");
    }

    /// Wait until `/v2/` answers (401 without credentials); an error with the log when
    /// the process ends or the deadline passes.
    fn wait_ready(&mut self, deadline: Duration) -> Result<(), String> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("it exited ({status}):\n{}", self.log()));
            }
            if matches!(self.status("/v2/").as_str(), "401" | "200") {
                return Ok(());
            }
            if start.elapsed() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!(
                    "/v2/ did not answer within {deadline:?}:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// `https://HOST:PORT` or `http://HOST:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.host)
    }

    /// The HTTP status of an unauthenticated GET of `path` ("000" when nothing answers).
    pub fn status(&self, path: &str) -> String {
        let url = format!("{}{path}", self.url());
        let mut args = vec![
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "2",
        ];
        let ca = self.ca.as_ref().map(|c| c.display().to_string());
        if let Some(ca) = &ca {
            args.extend(["--cacert", ca.as_str()]);
        }
        args.push(&url);
        let out = Command::new("curl")
            .args(&args)
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `HOST:PORT/repo`.
    pub fn image(&self, repo: &str) -> String {
        format!("{}/{repo}", self.host)
    }

    /// The registry's log so far (one line per request at info level).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// Log lines of requests whose path contains `path_part` (e.g. `/tags/list`).
    pub fn requests(&self, path_part: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("http.request.uri=") && l.contains(path_part))
            .map(str::to_string)
            .collect()
    }

    /// The digest of `repo:tag` in this registry (asked with the login, as a client would).
    pub fn digest(&self, repo: &str, tag: &str) -> String {
        let url = format!("{}/v2/{repo}/manifests/{tag}", self.url());
        let login = format!("{USER}:{PASSWORD}");
        let mut args = vec![
            "-sfI",
            "--max-time",
            "5",
            "-u",
            login.as_str(),
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
        ];
        let ca = self.ca.as_ref().map(|c| c.display().to_string());
        if let Some(ca) = &ca {
            args.extend(["--cacert", ca.as_str()]);
        }
        args.push(&url);
        let out = Command::new("curl")
            .args(&args)
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "HEAD {url}:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("docker-content-digest")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no digest for {repo}:{tag}"))
    }

    /// Log lines of requests that came from `ip` (e.g. a node's `10.231.N.2`).
    pub fn requests_from(&self, ip: &str) -> Vec<String> {
        let from = format!("http.request.remoteaddr=\"{ip}:");
        self.log()
            .lines()
            .filter(|l| l.contains("http.request.uri=") && l.contains(&from))
            .map(str::to_string)
            .collect()
    }

    /// `docker login` into a fresh `DOCKER_CONFIG` directory `config_dir`, through the
    /// engine `engine_env` names (the CLI asks the engine to check the login); returns the
    /// directory. `config.json` then has an `auths` entry for this registry.
    pub fn login<K: AsRef<str>, V: AsRef<str>>(
        &self,
        engine_env: &[(K, V)],
        config_dir: &Path,
    ) -> PathBuf {
        std::fs::create_dir_all(config_dir).unwrap();
        let mut env: Vec<(String, String)> = engine_env
            .iter()
            .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
            .collect();
        env.push(("DOCKER_CONFIG".into(), config_dir.display().to_string()));
        let mut cmd = Command::new("docker");
        for var in [
            "DOCKER_HOST",
            "DOCKER_TLS_VERIFY",
            "DOCKER_CERT_PATH",
            "DOCKER_CONTEXT",
        ] {
            cmd.env_remove(var);
        }
        let mut child = cmd
            .envs(env)
            .args(["login", "-u", USER, "--password-stdin", &self.host])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker runs");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(PASSWORD.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "docker login failed:\n{}", text(&out));
        config_dir.to_path_buf()
    }

    /// Push the local image `source` (on the engine `engine_env` names) as
    /// `HOST:PORT/{target}` with the login in `config_dir`, then remove that name from the
    /// engine, so that running it needs a pull. Returns the pushed name.
    pub fn push<K: AsRef<str>, V: AsRef<str>>(
        &self,
        engine_env: &[(K, V)],
        config_dir: &Path,
        source: &str,
        target: &str,
    ) -> String {
        let name = self.image(target);
        let mut env: Vec<(String, String)> = engine_env
            .iter()
            .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
            .collect();
        env.push(("DOCKER_CONFIG".into(), config_dir.display().to_string()));
        docker_ok(&env, &["tag", source, &name]);
        docker_ok(&env, &["push", &name]);
        docker_ok(&env, &["rmi", &name]);
        name
    }
}

impl Registry {
    /// Drop the local engine's references to this registry's images (tags, and the digests
    /// drover pulled by), so test runs leave no images behind. By reference, not by id: an
    /// image another name still refers to stays.
    fn forget_images(&self) {
        let env = super::local_env();
        let listed = super::docker(
            &env,
            &[
                "images",
                "--digests",
                "--filter",
                &format!("reference={}/*", self.host),
                "--format",
                "{{.Repository}} {{.Tag}} {{.Digest}}",
            ],
        );
        let mut refs = Vec::new();
        for line in String::from_utf8_lossy(&listed.stdout).lines() {
            let mut f = line.split_whitespace();
            let (Some(repo), Some(tag), Some(digest)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if tag != "<none>" {
                refs.push(format!("{repo}:{tag}"));
            }
            if digest != "<none>" {
                refs.push(format!("{repo}@{digest}"));
            }
        }
        if !refs.is_empty() {
            let mut args = vec!["rmi"];
            args.extend(refs.iter().map(String::as_str));
            let _ = super::docker(&env, &args);
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.forget_images();
        if let Some(t) = &self.trust {
            let _ = std::fs::remove_dir_all(t);
        }
        if std::thread::panicking() {
            eprintln!(
                "registry {} log (kept in {}):\n{}",
                self.host,
                self.dir.display(),
                self.log()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
