//! Running drover as users do (the real binary, JSON logs) against a real engine, and
//! looking at the engine the way a user would (the docker CLI).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A project directory with a compose file, removed with everything drover made for it.
pub struct Project {
    pub name: String,
    pub dir: PathBuf,
    /// `DOCKER_HOST` and friends for the engine this project runs on.
    pub env: Vec<(String, String)>,
}

impl Project {
    /// A fresh directory holding `compose.yml` with `compose`, on the local engine.
    pub fn new(name: &str, compose: &str) -> Project {
        let host = super::local_engine();
        Project::on(
            name,
            compose,
            vec![("DOCKER_HOST".into(), host.to_string())],
        )
    }

    pub fn on(name: &str, compose: &str, env: Vec<(String, String)>) -> Project {
        let dir = std::env::temp_dir().join(format!("drover-it-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = Project {
            name: name.to_string(),
            dir,
            env,
        };
        p.clean();
        p.write("compose.yml", compose);
        p
    }

    pub fn write(&self, file: &str, text: &str) {
        // Write then rename, as editors and config tools do.
        let tmp = self.dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.join(file)).unwrap();
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Run the docker CLI against this project's engine.
    pub fn docker(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("docker");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.args(args).output().expect("docker CLI runs")
    }

    /// `docker` that must succeed; returns trimmed stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Ids of the project's containers in `status` (running, exited, ...), or all.
    pub fn containers(&self, service: Option<&str>, status: Option<&str>) -> Vec<String> {
        let mut args = vec![
            "ps".to_string(),
            "-aq".into(),
            "--no-trunc".into(),
            "--filter".into(),
            format!("label=drover.project={}", self.name),
        ];
        if let Some(s) = service {
            args.push("--filter".into());
            args.push(format!("label=drover.service={s}"));
        }
        if let Some(s) = status {
            args.push("--filter".into());
            args.push(format!("status={s}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.docker_ok(&args)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    pub fn running(&self, service: &str) -> usize {
        self.containers(Some(service), Some("running")).len()
    }

    /// Names of the running containers of a service, sorted.
    pub fn running_names(&self, service: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .containers(Some(service), Some("running"))
            .iter()
            .map(|id| {
                self.inspect(id, "{{.Name}}")
                    .trim_start_matches('/')
                    .to_string()
            })
            .collect();
        names.sort();
        names
    }

    pub fn inspect(&self, id: &str, format: &str) -> String {
        let out = self.docker(&["inspect", "-f", format, id]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Start `drover run` on this project with extra arguments.
    pub fn run(&self, extra: &[&str]) -> Drover {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_drover"));
        cmd.current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("RUST_LOG", "info")
            .args(["run", "--log-format", "json", "-p", &self.name])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        Drover::spawn(cmd)
    }

    /// Run a one-shot drover command (check, plan) and return its output.
    pub fn drover(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_drover"));
        cmd.current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.output().expect("drover runs")
    }

    /// Remove everything labelled with this project (containers, networks, volumes), and
    /// its lease container.
    pub fn clean(&self) {
        let label = format!("label=drover.project={}", self.name);
        let lease = format!("label=drover.lease={}", self.name);
        let mut listed = String::new();
        for filter in [&label, &lease] {
            let out = self.docker(&["ps", "-aq", "--no-trunc", "--filter", filter]);
            listed.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        let ids: Vec<&str> = listed.lines().filter(|l| !l.is_empty()).collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids);
            let _ = self.docker(&args);
        }
        for kind in ["network", "volume"] {
            let out = self.docker(&[kind, "ls", "-q", "--filter", &label]);
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = self.docker(&[kind, "rm", id]);
            }
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        self.clean();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `drover run` process whose JSON log lines are collected.
pub struct Drover {
    pub child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Drover {
    pub fn spawn(mut cmd: Command) -> Drover {
        let mut child = cmd.spawn().expect("drover starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    logs.lock().unwrap().push(line);
                }
            });
        }
        Drover { child, logs }
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Parsed JSON log lines.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Log lines whose `action` field is `action`.
    pub fn actions(&self, action: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["action"] == action)
            .collect()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -s {sig} drover");
    }

    /// Wait for the process to exit; `None` if it is still running at the deadline.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Panic with the logs when drover died.
    pub fn assert_alive(&mut self) {
        if let Some(s) = self.child.try_wait().unwrap() {
            panic!("drover exited with {s}; logs:\n{}", self.logs().join("\n"));
        }
    }
}

impl Drop for Drover {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `f` until it holds or the deadline passes; the panic says what was awaited.
pub fn eventually(deadline: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Like [`eventually`], printing drover's logs when it fails.
pub fn eventually_with(
    d: &mut Drover,
    deadline: Duration,
    what: &str,
    mut f: impl FnMut(&Drover) -> bool,
) {
    let end = Instant::now() + deadline;
    loop {
        if f(d) {
            return;
        }
        d.assert_alive();
        if Instant::now() >= end {
            panic!(
                "timed out after {deadline:?} waiting for {what}; drover logs:\n{}",
                d.logs().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The address a `drover run --listen 127.0.0.1:0` says it serves on (its `listen` log
/// line), waited for up to 90 s.
pub fn address(d: &mut Drover) -> std::net::SocketAddr {
    let mut addr = None;
    eventually_with(d, Duration::from_secs(90), "the listen log line", |d| {
        addr = d
            .actions("listen")
            .first()
            .and_then(|e| e["address"].as_str().map(str::to_string));
        addr.is_some()
    });
    addr.unwrap().parse().unwrap()
}
