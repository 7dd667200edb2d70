//! HA drover under random faults, in the spirit of Jepsen's nemesis: five nodes, three
//! drovers inside three of the nodes' network namespaces (`scripts/node.sh exec`), and a
//! seeded schedule of faults (kill or restart an engine, partition a node, freeze or kill a
//! drover), never more than a minority of nodes faulty at once. After every round the test
//! heals what the round broke, waits (with a deadline) until the project settles, and
//! checks from the drovers' JSON logs and the engines:
//!
//! - no overlapping leadership: the lease windows of two drover processes never overlap
//!   (a window ends at its `lease-lost` line, at the process's kill, or a ttl into a freeze
//!   longer than the ttl, whichever comes first), whether or not they acted in them; every
//!   create, start or remove a drover logged was sent inside one of its own lease windows,
//!   while no drover had a window of a higher term open; no two drover processes acted
//!   under one term; terms only grow;
//! - every slot runs exactly once over all the nodes, and every container's `drover.term`
//!   is a term some drover acquired;
//! - nothing foreign touched: containers without `drover.project` ("bystanders") still run.
//!
//! `DROVER_NEMESIS_SEED` (default 15) and `DROVER_NEMESIS_ROUNDS` (default 4, the CI form)
//! choose the schedule; `scripts/nemesis.sh` runs the long form. A failure names the seed and
//! the round. Also here: the five-node scenarios (a partitioned pair with the leader, a
//! killed leader's host).
//!
//! Node indices 191..199 belong to this file (the two tests take turns on 191..195);
//! project names start with `nm-`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, UNIX_EPOCH};

use support::Node;
use support::drover::Drover;

const NODES: usize = 5;
/// Drovers run on nodes 0..DROVERS.
const DROVERS: usize = 3;
const SERVICES: [&str; 2] = ["web", "worker"];
const REPLICAS: u64 = 3;
/// Nodes with a container that is not the project's.
const BYSTANDERS: [usize; 3] = [0, 3, 4];
const SETTLE: Duration = Duration::from_secs(90);
/// Takeover and stepping down are timed and printed; these bounds only catch a broken
/// lease (the targets, 5 s to a new leader and the 2 s ttl, are checked by the numbers
/// printed and recorded in docs/reliability.md, not by a timed assertion that a busy
/// machine can miss).
const TAKEOVER_BOUND: Duration = Duration::from_secs(15);
const STOP_BOUND: Duration = Duration::from_secs(6);
/// How long a settled state must last: more than a lease ttl (2 s) and a pass.
const STABLE: Duration = Duration::from_secs(3);
/// A log line's timestamp is taken when it is written, after the request it reports
/// returned; this much slack covers the writing (a real overlap lasts a lease ttl or more).
const SLACK: f64 = 0.2;
/// The lease ttl with three or more nodes: a leader frozen longer than this has lost its
/// lease a ttl after its freeze began, whenever it says so.
const TTL: f64 = 2.0;
const CHANGING: &[&str] = &[
    "create-network",
    "create-volume",
    "remove-network",
    "create",
    "start",
    "restart",
    "start-first",
    "recreate",
    "remove",
    "ambassador",
    "routes",
];

/// Both tests use nodes 191..195: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// splitmix64: a small, seeded, portable PRNG.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// kill -9 the node's engine, containerd and containers; restarted when healed.
    KillEngine(usize),
    /// Stop the node's engine cleanly; started again when healed.
    RestartEngine(usize),
    /// Cut the node (and a drover on it) off the network.
    Partition(usize),
    /// SIGSTOP the drover on node i; SIGCONT when healed.
    Freeze(usize),
    /// SIGKILL the drover on node i; a new one starts when healed.
    KillDrover(usize),
}

impl Fault {
    fn node(self) -> Option<usize> {
        match self {
            Fault::KillEngine(n) | Fault::RestartEngine(n) | Fault::Partition(n) => Some(n),
            _ => None,
        }
    }

    fn drover(self) -> Option<usize> {
        match self {
            Fault::Freeze(d) | Fault::KillDrover(d) => Some(d),
            _ => None,
        }
    }
}

/// One lease window of one drover process, from its log (seconds since the epoch).
#[derive(Debug)]
struct Window {
    who: usize,
    term: u64,
    from: f64,
    until: Option<f64>,
}

/// One changing engine request of one drover process: when it was sent.
#[derive(Debug)]
struct Act {
    who: usize,
    at: f64,
    line: String,
}

fn seconds(e: &serde_json::Value) -> Option<f64> {
    let t = humantime::parse_rfc3339(e["timestamp"].as_str()?).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs_f64())
}

/// The lease windows and the changing requests in the logs of drover processes.
fn windows_and_acts(logs: &[Vec<String>]) -> (Vec<Window>, Vec<Act>) {
    let (mut windows, mut acts) = (Vec::new(), Vec::new());
    for (who, lines) in logs.iter().enumerate() {
        let mut open: Option<usize> = None;
        for line in lines {
            let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let (Some(action), Some(ts)) = (e["action"].as_str(), seconds(&e)) else {
                continue;
            };
            match action {
                "lease-acquired" => {
                    let delay = e["delay_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
                    windows.push(Window {
                        who,
                        term: e["term"].as_u64().unwrap_or(0),
                        from: ts + delay,
                        until: None,
                    });
                    open = Some(windows.len() - 1);
                }
                "lease-lost" => {
                    if let Some(w) = open.take() {
                        windows[w].until = Some(ts);
                    }
                }
                a if CHANGING.contains(&a) => {
                    let took = e["duration_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
                    acts.push(Act {
                        who,
                        at: ts - took,
                        line: line.clone(),
                    });
                }
                _ => {}
            }
        }
    }
    (windows, acts)
}

/// Now, in seconds since the epoch (the logs' clock).
fn wall() -> f64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Where a window really ended: at its `lease-lost` line, or at the first of its process's
/// `ends` (a kill, a ttl into a long freeze) after it began, whichever comes first.
fn window_end(w: &Window, ends: &[f64]) -> f64 {
    ends.iter()
        .copied()
        .filter(|e| *e > w.from)
        .fold(w.until.unwrap_or(f64::INFINITY), f64::min)
}

/// No two processes' lease windows overlap (by more than the logs' slack).
fn check_windows(windows: &[Window], ends: &[Vec<f64>]) -> Result<(), String> {
    for (k, a) in windows.iter().enumerate() {
        for b in &windows[k + 1..] {
            if a.who == b.who {
                continue;
            }
            let none = Vec::new();
            let a_end = window_end(a, ends.get(a.who).unwrap_or(&none));
            let b_end = window_end(b, ends.get(b.who).unwrap_or(&none));
            let overlap = a_end.min(b_end) - a.from.max(b.from);
            if overlap > SLACK {
                return Err(format!(
                    "lease windows overlap for {overlap:.2}s: process {} term {} ({:.2}..{a_end:.2}) and process {} term {} ({:.2}..{b_end:.2})",
                    a.who, a.term, a.from, b.who, b.term, b.from
                ));
            }
        }
    }
    Ok(())
}

/// The leadership invariants over the logs of every drover process there was, with the
/// times each process's lease certainly ended outside its log (`ends`, by process).
fn check_leadership(logs: &[Vec<String>], ends: &[Vec<f64>]) -> Result<(), String> {
    let (mut windows, acts) = windows_and_acts(logs);
    windows.sort_by(|a, b| a.from.total_cmp(&b.from));
    check_windows(&windows, ends)?;
    // A leader that lost its majority for a moment and regained it before anyone else
    // campaigned acts again under its term: a term may recur, but only in one process.
    for pair in windows.windows(2) {
        if pair[1].term < pair[0].term {
            return Err(format!("terms went back: {:?} then {:?}", pair[0], pair[1]));
        }
    }
    let mut holders: BTreeMap<u64, BTreeSet<usize>> = BTreeMap::new();
    for w in &windows {
        holders.entry(w.term).or_default().insert(w.who);
    }
    if let Some((term, who)) = holders.iter().find(|(_, who)| who.len() > 1) {
        return Err(format!("processes {who:?} all acquired term {term}"));
    }
    let mut acted: BTreeMap<u64, BTreeSet<usize>> = BTreeMap::new();
    for a in &acts {
        let Some(own) = windows.iter().find(|w| {
            w.who == a.who && w.from <= a.at + SLACK && w.until.is_none_or(|u| a.at <= u + SLACK)
        }) else {
            return Err(format!(
                "drover process {} acted outside its lease windows: {}",
                a.who, a.line
            ));
        };
        if let Some(newer) = windows
            .iter()
            .find(|w| w.term > own.term && w.from + SLACK < a.at)
        {
            return Err(format!(
                "drover process {} acted under term {} after term {} began ({:?}): {}",
                a.who, own.term, newer.term, newer, a.line
            ));
        }
        acted.entry(own.term).or_default().insert(a.who);
    }
    match acted.iter().find(|(_, who)| who.len() > 1) {
        Some((term, who)) => Err(format!("processes {who:?} all acted under term {term}")),
        None => Ok(()),
    }
}

/// Five nodes, a project on them, three drovers, bystanders; what the rounds judge.
struct Cluster {
    name: String,
    dir: std::path::PathBuf,
    nodes: Vec<Node>,
    /// The drover on node i (None while killed).
    drovers: Vec<Option<Drover>>,
    /// Drover processes killed earlier, with the node they ran on (their logs still count).
    past: Vec<(usize, Drover)>,
    frozen: BTreeSet<usize>,
    /// When each drover process's lease certainly ended outside its log, by pid: its
    /// kill, and a ttl into each freeze longer than the ttl.
    ends: BTreeMap<u32, Vec<f64>>,
    /// When each frozen drover was frozen (seconds since the epoch).
    frozen_at: BTreeMap<usize, f64>,
    seed: u64,
    round: usize,
    /// The current round's faults, for a failure's message.
    doing: String,
}

impl Cluster {
    fn new(name: &str, prefix: &str, first: u8, seed: u64) -> Cluster {
        let nodes: Vec<Node> = (0..NODES)
            .map(|i| Node::start(&format!("{prefix}{i}"), first + i as u8))
            .collect();
        let dir = std::env::temp_dir().join(format!("drover-it-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut compose = String::from("services:\n");
        for s in SERVICES {
            compose.push_str(&format!(
                "  {s}:\n    image: drover-test/busybox:latest\n    command: [\"sleep\", \"86400\"]\n    stop_signal: SIGKILL\n    deploy:\n      replicas: {REPLICAS}\n"
            ));
        }
        compose.push_str("x-drover:\n  nodes:\n");
        for n in &nodes {
            compose.push_str(&format!(
                "    - name: {}\n      host: {}\n      tls: {{ cert_path: {} }}\n",
                n.name,
                n.host,
                n.cert_dir.display()
            ));
        }
        std::fs::write(dir.join("compose.yml"), compose).unwrap();
        for &i in &BYSTANDERS {
            nodes[i].docker_ok(&[
                "run",
                "-d",
                "--name",
                "nm-bystander",
                "--restart",
                "always",
                "--stop-signal",
                "SIGKILL",
                support::TEST_IMAGE,
                "sleep",
                "86400",
            ]);
        }
        Cluster {
            name: name.to_string(),
            dir,
            nodes,
            drovers: (0..DROVERS).map(|_| None).collect(),
            past: Vec::new(),
            frozen: BTreeSet::new(),
            ends: BTreeMap::new(),
            frozen_at: BTreeMap::new(),
            seed,
            round: 0,
            doing: "setup".into(),
        }
    }

    /// `drover run` inside node `i`'s network namespace.
    fn spawn(&mut self, i: usize) {
        let mut cmd = Command::new(support::repo_root().join("scripts/node.sh"));
        cmd.current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("RUST_LOG", "info")
            .arg("exec")
            .arg(&self.nodes[i].name)
            .arg(support::drover_bin())
            .args(["run", "--log-format", "json", "--listen", "off"])
            .args(["-p", &self.name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.drovers[i] = Some(Drover::spawn(cmd));
    }

    fn kill_drover(&mut self, i: usize) {
        let mut d = self.drovers[i].take().expect("a drover to kill");
        self.ends.entry(d.child.id()).or_default().push(wall());
        d.child.kill().unwrap();
        d.child.wait().unwrap();
        self.past.push((i, d));
    }

    /// Every drover process there was, killed ones first: (node, process).
    fn processes(&self) -> Vec<(usize, &Drover)> {
        let mut out: Vec<(usize, &Drover)> = self.past.iter().map(|(i, d)| (*i, d)).collect();
        for (i, d) in self.drovers.iter().enumerate() {
            if let Some(d) = d {
                out.push((i, d));
            }
        }
        out
    }

    fn logs(&self) -> Vec<Vec<String>> {
        self.processes().iter().map(|(_, d)| d.logs()).collect()
    }

    /// [`Cluster::ends`] in the order of [`Cluster::logs`].
    fn process_ends(&self) -> Vec<Vec<f64>> {
        self.processes()
            .iter()
            .map(|(_, d)| self.ends.get(&d.child.id()).cloned().unwrap_or_default())
            .collect()
    }

    /// Drovers that run (not killed, not frozen) and whose last lease word is "acquired":
    /// (node, term).
    fn leaders(&self) -> Vec<(usize, u64)> {
        (0..DROVERS)
            .filter(|i| !self.frozen.contains(i))
            .filter_map(|i| Some((i, leads(self.drovers[i].as_ref()?)?)))
            .collect()
    }

    /// The project's containers on node i (none when its engine is down):
    /// (service, slot, state, term).
    fn containers(&self, i: usize) -> Vec<(String, u64, String, u64)> {
        let out = self.nodes[i].docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=drover.project={}", self.name),
            "--format",
            "{{.Label \"drover.service\"}} {{.Label \"drover.slot\"}} {{.State}} {{.Label \"drover.term\"}}",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((
                    f.first()?.to_string(),
                    f.get(1)?.parse().ok()?,
                    f.get(2)?.to_string(),
                    f.get(3).and_then(|t| t.parse().ok()).unwrap_or(0),
                ))
            })
            .collect()
    }

    /// Running copies of each slot over the nodes in `on`.
    fn slots(&self, on: &[usize]) -> BTreeMap<(String, u64), usize> {
        let mut out = BTreeMap::new();
        for &i in on {
            for (service, slot, state, _) in self.containers(i) {
                if state == "running" {
                    *out.entry((service, slot)).or_default() += 1;
                }
            }
        }
        out
    }

    fn each_slot_once(&self, on: &[usize]) -> bool {
        let s = self.slots(on);
        let want: BTreeSet<(String, u64)> = SERVICES
            .iter()
            .flat_map(|s| (1..=REPLICAS).map(move |k| (s.to_string(), k)))
            .collect();
        s.values().all(|n| *n == 1) && s.keys().cloned().collect::<BTreeSet<_>>() == want
    }

    fn bystanders_running(&self) -> bool {
        BYSTANDERS.iter().all(|&i| {
            let out =
                self.nodes[i].docker(&["inspect", "-f", "{{.State.Running}}", "nm-bystander"]);
            String::from_utf8_lossy(&out.stdout).trim() == "true"
        })
    }

    /// One leader among the drovers that run, and each slot once over `healthy`.
    fn settled(&self, healthy: &[usize]) -> bool {
        self.leaders().len() == 1 && self.each_slot_once(healthy)
    }

    /// The last `n` log lines of every drover process.
    fn tails(&self, n: usize) -> String {
        let mut logs = String::new();
        for (k, (i, d)) in self.processes().iter().enumerate() {
            let lines = d.logs();
            let tail = &lines[lines.len().saturating_sub(n)..];
            logs.push_str(&format!(
                "--- drover process {k} (node {i}), last {} lines:\n{}\n",
                tail.len(),
                tail.join("\n")
            ));
        }
        logs
    }

    fn fail(&self, what: &str) -> ! {
        let logs = self.tails(150);
        panic!(
            "nemesis failed: seed {}, round {} ({}): {what}\n(rerun: scripts/nemesis.sh --seed {} --rounds {})\n{logs}",
            self.seed, self.round, self.doing, self.seed, self.round
        );
    }

    /// Wait for `f` up to `deadline`; how long it took.
    fn wait(
        &self,
        deadline: Duration,
        what: &str,
        mut f: impl FnMut(&Cluster) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if f(self) {
                return start.elapsed();
            }
            if start.elapsed() >= deadline {
                self.fail(&format!("timed out after {deadline:?} waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until `f` holds without a break for [`STABLE`]; how long until that stretch
    /// began. A single look is not enough: a leader that lost its majority says so up to a
    /// ttl later, and a create in flight shows its container only once it returns.
    fn settle(&self, what: &str, mut f: impl FnMut(&Cluster) -> bool) -> Duration {
        let start = Instant::now();
        let mut since: Option<Instant> = None;
        self.wait(SETTLE, what, |c| {
            if !f(c) {
                since = None;
                return false;
            }
            let s = *since.get_or_insert_with(Instant::now);
            s.elapsed() >= STABLE
        });
        since.map_or(Duration::ZERO, |s| s - start)
    }

    /// Start the drovers and wait for the first settle.
    fn start(&mut self) -> Duration {
        for i in 0..DROVERS {
            self.spawn(i);
        }
        let all: Vec<usize> = (0..NODES).collect();
        let took = self.settle("the first leader and each slot once", |c| c.settled(&all));
        self.check();
        took
    }

    /// Everything the test promises, now that the project settled.
    fn check(&mut self) {
        for (i, d) in self.drovers.iter_mut().enumerate() {
            if let Some(d) = d
                && let Some(s) = d.child.try_wait().unwrap()
            {
                let logs = d.logs().join("\n");
                self.fail(&format!("the drover on node {i} exited with {s}:\n{logs}"));
            }
        }
        if let Err(e) = check_leadership(&self.logs(), &self.process_ends()) {
            self.fail(&e);
        }
        let all: Vec<usize> = (0..NODES).collect();
        if !self.each_slot_once(&all) {
            self.fail(&format!("not each slot once: {:?}", self.slots(&all)));
        }
        let acquired: BTreeSet<u64> = windows_and_acts(&self.logs())
            .0
            .iter()
            .map(|w| w.term)
            .collect();
        for i in 0..NODES {
            for (service, slot, state, term) in self.containers(i) {
                if !acquired.contains(&term) {
                    self.fail(&format!(
                        "{service} slot {slot} ({state}) on node {i} has term {term}, never acquired ({acquired:?})"
                    ));
                }
            }
        }
        if !self.bystanders_running() {
            self.fail("a bystander container is not running");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The drover's term when its last word on the lease is that it acquired it.
fn leads(d: &Drover) -> Option<u64> {
    d.events()
        .iter()
        .filter_map(|e| match e["action"].as_str()? {
            "lease-acquired" => Some(e["term"].as_u64()),
            "lease-lost" => Some(None),
            _ => None,
        })
        .next_back()
        .flatten()
}

fn changes(d: &Drover) -> usize {
    d.events()
        .iter()
        .filter(|e| e["action"].as_str().is_some_and(|a| CHANGING.contains(&a)))
        .count()
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn env_or(var: &str, default: u64) -> u64 {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v}: not a number")),
        Err(_) => default,
    }
}

/// How long a round's faults last.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Hold {
    /// A drawn time of 0 to 4 s: around the lease ttl (2 s), so a frozen or cut-off
    /// leader comes back sometimes before and sometimes after another took over.
    For(Duration),
    /// Until the project settled around them: one leader, each slot once on the rest.
    Settle,
}

/// What one round did, for the summary.
struct Round {
    faults: Vec<Fault>,
    hold: Hold,
    held: Duration,
    settled: Duration,
    leader: (usize, u64),
}

impl Cluster {
    /// The current leader's node, if one leads.
    fn leader(&self) -> Option<usize> {
        self.leaders().first().map(|l| l.0)
    }

    /// One fault, aimed at the leader half of the time.
    fn pick_one(&self, rng: &mut Rng) -> Fault {
        let at_leader = rng.below(2) == 0;
        let target = |rng: &mut Rng, n: usize| match self.leader() {
            Some(l) if at_leader => l,
            _ => rng.below(n),
        };
        match rng.below(5) {
            0 => Fault::KillEngine(target(rng, NODES)),
            1 => Fault::RestartEngine(target(rng, NODES)),
            2 => Fault::Partition(target(rng, NODES)),
            3 => Fault::Freeze(target(rng, DROVERS)),
            _ => Fault::KillDrover(target(rng, DROVERS)),
        }
    }

    /// One or two faults on distinct targets, leaving a majority of nodes whole and a
    /// drover that runs on a whole node.
    fn pick(&self, rng: &mut Rng) -> Vec<Fault> {
        let want = if rng.below(3) == 0 { 2 } else { 1 };
        let mut faults: Vec<Fault> = Vec::new();
        while faults.len() < want {
            let f = self.pick_one(rng);
            let mut next = faults.clone();
            next.push(f);
            let nodes: BTreeSet<usize> = next.iter().filter_map(|f| f.node()).collect();
            let drovers: BTreeSet<usize> = next.iter().filter_map(|f| f.drover()).collect();
            let distinct = nodes.len() == next.iter().filter_map(|f| f.node()).count()
                && drovers.len() == next.iter().filter_map(|f| f.drover()).count();
            let a_drover_left = (0..DROVERS).any(|d| !nodes.contains(&d) && !drovers.contains(&d));
            if distinct && nodes.len() <= (NODES - 1) / 2 && a_drover_left {
                faults = next;
            }
        }
        faults
    }

    fn apply(&mut self, f: Fault) {
        match f {
            Fault::KillEngine(n) => self.nodes[n].kill(),
            Fault::RestartEngine(n) => self.nodes[n].stop(),
            Fault::Partition(n) => self.nodes[n].partition(),
            Fault::Freeze(d) => {
                self.drovers[d].as_ref().unwrap().signal("STOP");
                self.frozen.insert(d);
                self.frozen_at.insert(d, wall());
            }
            Fault::KillDrover(d) => self.kill_drover(d),
        }
    }

    fn undo(&mut self, f: Fault) {
        match f {
            Fault::KillEngine(n) | Fault::RestartEngine(n) => self.nodes[n].restart(),
            Fault::Partition(n) => self.nodes[n].heal(),
            Fault::Freeze(d) => {
                let at = self.frozen_at.remove(&d).unwrap_or_else(wall);
                if wall() - at >= TTL {
                    let pid = self.drovers[d].as_ref().unwrap().child.id();
                    self.ends.entry(pid).or_default().push(at + TTL);
                }
                self.drovers[d].as_ref().unwrap().signal("CONT");
                self.frozen.remove(&d);
            }
            Fault::KillDrover(d) => self.spawn(d),
        }
    }

    /// Break, hold, heal, settle, check.
    fn play(&mut self, rng: &mut Rng) -> Round {
        let faults = self.pick(rng);
        self.doing = format!("{faults:?}");
        let hold = if rng.below(3) == 0 {
            Hold::For(Duration::from_millis(rng.below(4001) as u64))
        } else {
            Hold::Settle
        };
        let start = Instant::now();
        for &f in &faults {
            self.apply(f);
        }
        if let Hold::For(d) = hold {
            // The fault's length is part of the schedule, not a wait for a condition.
            std::thread::sleep(d);
        } else {
            let broken: BTreeSet<usize> = faults.iter().filter_map(|f| f.node()).collect();
            let whole: Vec<usize> = (0..NODES).filter(|n| !broken.contains(n)).collect();
            self.settle("a settle around the faults", |c| c.settled(&whole));
        }
        let held = start.elapsed();
        // NEMESIS_SLOW_SECS=S: the drovers' logs of a round whose faults took longer than S
        // to settle around (not a failure: a diagnosis).
        let slow = std::env::var("NEMESIS_SLOW_SECS")
            .ok()
            .and_then(|s| s.parse().ok());
        if slow.is_some_and(|s: u64| held > Duration::from_secs(s)) {
            eprintln!(
                "nemesis round {} ({faults:?}) took {held:?} to settle around:\n{}",
                self.round,
                self.tails(300)
            );
        }
        for &f in faults.iter().rev() {
            self.undo(f);
        }
        let all: Vec<usize> = (0..NODES).collect();
        let settled = self.settle("a settle after healing", |c| {
            c.settled(&all) && c.bystanders_running()
        });
        self.check();
        self.doing = format!("after {faults:?}");
        let leader = self.leaders()[0];
        Round {
            faults,
            hold,
            held,
            settled,
            leader,
        }
    }
}

#[test]
fn random_faults_never_overlap_leaders_and_keep_each_slot_once() {
    let _serial = serial();
    let seed = env_or("DROVER_NEMESIS_SEED", 15);
    let rounds = env_or("DROVER_NEMESIS_ROUNDS", 4) as usize;
    let began = Instant::now();
    let mut c = Cluster::new("nm-chaos", "nm-c", 191, seed);
    let first = c.start();
    eprintln!(
        "nemesis: seed {seed}, {rounds} rounds; first leader {:?} after {first:?}",
        c.leaders()
    );
    let mut rng = Rng(seed);
    let mut settles = Vec::new();
    for r in 1..=rounds {
        c.round = r;
        let round = c.play(&mut rng);
        eprintln!(
            "nemesis round {r}/{rounds}: {:?} held {:?} ({:.1?}); settled {:.1?} after healing; leader drover {} term {}",
            round.faults, round.hold, round.held, round.settled, round.leader.0, round.leader.1
        );
        settles.push(round.settled);
    }
    settles.sort();
    let median = settles.get(settles.len() / 2).copied().unwrap_or_default();
    let max = settles.last().copied().unwrap_or_default();
    eprintln!(
        "nemesis: seed {seed}: {rounds} rounds passed in {:.0?}; settle after healing median {median:.1?}, max {max:.1?}; {} drover processes, last term {}",
        began.elapsed(),
        c.processes().len(),
        c.leaders()[0].1
    );
}

#[test]
fn five_nodes_a_leader_cut_off_with_another_node_stops_and_a_killed_leader_host_is_replaced() {
    let _serial = serial();
    let mut c = Cluster::new("nm-five", "nm-f", 191, 0);
    c.start();
    let all: Vec<usize> = (0..NODES).collect();
    // Partition 2 of 5: the leader's node and another drover's; the third drover and the
    // two nodes without a drover are the majority.
    let (l, old_term) = c.leaders()[0];
    let pair = (l + 1) % DROVERS;
    let third = (0..DROVERS).find(|d| *d != l && *d != pair).unwrap();
    c.nodes[l].partition();
    let cut = Instant::now();
    c.nodes[pair].partition();
    c.wait(SETTLE, "the cut-off leader stops acting", |c| {
        leads(c.drovers[l].as_ref().unwrap()).is_none()
    });
    let stopped = cut.elapsed();
    let cut_off_changes = changes(c.drovers[l].as_ref().unwrap());
    let whole: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&n| n != l && n != pair)
        .collect();
    c.wait(SETTLE, "the majority side's drover leads", |c| {
        c.leaders()
            == vec![(
                third,
                leads(c.drovers[third].as_ref().unwrap()).unwrap_or(0),
            )]
            && c.leaders()[0].1 > 0
    });
    let took = cut.elapsed();
    c.wait(SETTLE, "each slot once on the majority side", |c| {
        c.each_slot_once(&whole)
    });
    let moved = cut.elapsed();
    eprintln!(
        "five nodes, leader and one more partitioned: it stopped acting after {stopped:.1?}, the majority side led after {took:.1?}, each slot once there after {moved:.1?}"
    );
    // The ttl is 2 s; the slack covers the log line's way here on a loaded machine. A
    // leader that kept acting without its majority would not stop at all.
    assert!(stopped <= STOP_BOUND, "{stopped:?}");
    let new_term = c.leaders()[0].1;
    assert!(new_term > old_term, "term {new_term} after {old_term}");
    c.nodes[pair].heal();
    c.nodes[l].heal();
    c.settle("healed: one leader, each slot once", |c| c.settled(&all));
    c.check();
    assert_eq!(c.leaders(), vec![(third, new_term)]);
    assert_eq!(
        changes(c.drovers[l].as_ref().unwrap()),
        cut_off_changes,
        "the old leader did nothing more"
    );
    // The leader's host dies: its engine and its drover at once.
    let killed = Instant::now();
    c.kill_drover(third);
    c.nodes[third].kill();
    let rest: Vec<usize> = all.iter().copied().filter(|&n| n != third).collect();
    c.wait(SETTLE, "a new leader", |c| c.leaders().len() == 1);
    let elected = killed.elapsed();
    c.wait(SETTLE, "each slot once on the other nodes", |c| {
        c.each_slot_once(&rest)
    });
    let replaced = killed.elapsed();
    eprintln!(
        "five nodes, leader's host killed: a new leader after {elected:.1?}, each slot once on the others after {replaced:.1?}"
    );
    assert!(elected <= TAKEOVER_BOUND, "{elected:?}");
    assert!(c.leaders()[0].1 > new_term);
    c.nodes[third].restart();
    c.spawn(third);
    c.settle("the host back: one leader, each slot once", |c| {
        c.settled(&all) && c.bystanders_running()
    });
    c.check();
}

/// The overlap check itself, on made-up windows: it must catch a takeover of a live leader
/// and let a killed or long-frozen one's late `lease-lost` line pass.
#[test]
fn the_overlap_check_catches_two_live_windows_and_ends_a_window_at_a_kill_or_a_long_freeze() {
    let w = |who, term, from, until| Window {
        who,
        term,
        from,
        until,
    };
    // A resumed follower took over while the leader's window was still open.
    let live = [w(0, 1, 100.0, None), w(1, 2, 105.0, None)];
    assert!(check_windows(&live, &[vec![], vec![]]).is_err());
    // The same, with the leader's loss logged late but its process killed at 104.
    let killed = [w(0, 1, 100.0, Some(110.0)), w(1, 2, 105.0, None)];
    assert!(check_windows(&killed, &[vec![104.0], vec![]]).is_ok());
    // Frozen at 102 for longer than the ttl: its lease ended at 104 whatever it said.
    assert!(check_windows(&killed, &[vec![102.0 + TTL], vec![]]).is_ok());
    // A freeze or kill before the window began ends nothing.
    assert!(check_windows(&killed, &[vec![90.0], vec![]]).is_err());
    // Back to back, within the logs' slack.
    let handover = [w(0, 1, 100.0, Some(105.1)), w(1, 2, 105.0, None)];
    assert!(check_windows(&handover, &[vec![], vec![]]).is_ok());
}
