//! drover against a real engine: bring-up, kills, removals, crashes, scaling, foreign
//! containers, shutdown. Each test has its own project name.

mod support;

use std::time::Duration;

use support::drover::{Project, eventually, eventually_with};

const UP: Duration = Duration::from_secs(60);

/// Two services; web restarts on anything, SIGKILL stops it at once.
fn two_services(web: u32, worker: u32) -> String {
    format!(
        r#"
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    deploy:
      replicas: {web}
  worker:
    image: drover-test/busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    stop_grace_period: 2s
    scale: {worker}
    depends_on: [web]
"#
    )
}

#[test]
fn brings_up_two_services_with_replicas_names_and_labels() {
    let p = Project::new("it-up", &two_services(3, 2));
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "3 web and 2 worker running", |_| {
        p.running("web") == 3 && p.running("worker") == 2
    });
    assert_eq!(
        p.running_names("web"),
        vec!["it-up-web-1", "it-up-web-2", "it-up-web-3"]
    );
    let id = &p.containers(Some("worker"), Some("running"))[0];
    let labels = p.inspect(id, "{{json .Config.Labels}}");
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["drover.project"], "it-up");
    assert_eq!(labels["drover.service"], "worker");
    assert_eq!(labels["com.docker.compose.project"], "it-up");
    assert_eq!(labels["com.docker.compose.oneoff"], "False");
    assert!(labels["drover.config-hash"].as_str().unwrap().len() >= 12);
    // drover owns restarts: no engine restart policy that would fight it.
    assert_eq!(p.inspect(id, "{{.HostConfig.RestartPolicy.Name}}"), "no");
    // Nothing changed, nothing said: no action logged after convergence.
    let before = d.actions("create").len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(d.actions("create").len(), before);
}

#[test]
fn docker_kill_is_restarted_in_place_every_time_without_backoff() {
    let p = Project::new("it-kill", &two_services(2, 0));
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "2 web running", |_| p.running("web") == 2);
    let victim = p.containers(Some("web"), Some("running"))[0].clone();
    // A kill is someone's doing, not a crash: three in a row never back off.
    for round in 1..=3 {
        let started = p.inspect(&victim, "{{.State.StartedAt}}");
        p.docker_ok(&["kill", &victim]);
        eventually_with(&mut d, UP, &format!("kill {round}: running again"), |_| {
            p.inspect(&victim, "{{.State.Running}}") == "true"
                && p.inspect(&victim, "{{.State.StartedAt}}") != started
        });
    }
    assert_eq!(p.running("web"), 2);
    eventually_with(&mut d, UP, "three starts logged", |d| {
        d.actions("start").len() >= 3
    });
    assert_eq!(d.actions("start").len(), 3, "{}", d.logs().join("\n"));
    assert!(
        d.actions("backoff").is_empty(),
        "{:?}",
        d.actions("backoff")
    );
}

#[test]
fn sigkill_of_the_main_process_is_restarted() {
    let p = Project::new("it-crash", &two_services(1, 0));
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "web running", |_| p.running("web") == 1);
    let id = p.containers(Some("web"), Some("running"))[0].clone();
    let pid = p.inspect(&id, "{{.State.Pid}}");
    let ok = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    eventually_with(&mut d, UP, "a new run of the crashed container", |_| {
        p.inspect(&id, "{{.State.Running}}") == "true" && p.inspect(&id, "{{.State.Pid}}") != pid
    });
}

#[test]
fn docker_rm_is_recreated_in_the_same_slot() {
    let p = Project::new("it-rm", &two_services(1, 2));
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "2 workers running", |_| {
        p.running("worker") == 2
    });
    let victim = p.containers(Some("worker"), Some("running"))[0].clone();
    let name = p.inspect(&victim, "{{.Name}}");
    p.docker_ok(&["rm", "-f", &victim]);
    eventually_with(&mut d, UP, "2 workers running again", |_| {
        p.running("worker") == 2 && !p.containers(Some("worker"), None).contains(&victim)
    });
    assert_eq!(
        p.running_names("worker"),
        vec!["it-rm-worker-1", "it-rm-worker-2"],
        "the removed {name} came back under its own name"
    );
}

#[test]
fn scale_file_edits_scale_up_and_down() {
    let p = Project::new("it-scale", &two_services(1, 0));
    p.write("scale.yml", "web: 2\n");
    let mut d = p.run(&["--scale-file", "scale.yml"]);
    eventually_with(&mut d, UP, "2 web", |_| p.running("web") == 2);
    p.write("scale.yml", "web: 4\nworker: 1\n");
    eventually_with(&mut d, UP, "4 web and 1 worker", |_| {
        p.running("web") == 4 && p.running("worker") == 1
    });
    p.write("scale.yml", "web: 1\nworker: 0\n");
    eventually_with(&mut d, UP, "1 web, no worker", |_| {
        p.containers(Some("web"), None).len() == 1 && p.containers(Some("worker"), None).is_empty()
    });
    // Scale down keeps the lowest slot.
    assert_eq!(p.running_names("web"), vec!["it-scale-web-1"]);
}

#[test]
fn sighup_reloads_the_scale_file() {
    let p = Project::new("it-hup", &two_services(1, 0));
    p.write("scale.yml", "web: 1\n");
    let mut d = p.run(&["--scale-file", "scale.yml", "--watch-interval", "0s"]);
    eventually_with(&mut d, UP, "1 web", |_| p.running("web") == 1);
    p.write("scale.yml", "web: 3\n");
    d.signal("HUP");
    eventually_with(&mut d, UP, "3 web after SIGHUP", |_| p.running("web") == 3);
}

#[test]
fn look_alike_containers_without_labels_are_never_touched() {
    let p = Project::new("it-foreign", &two_services(2, 0));
    // Same names drover would use for higher slots, compose labels, no drover label.
    let a = p.docker_ok(&[
        "run",
        "-d",
        "--name",
        "it-foreign-web-3",
        "--label",
        "com.docker.compose.project=it-foreign",
        "--label",
        "com.docker.compose.service=web",
        "drover-test/busybox:latest",
        "sleep",
        "86400",
    ]);
    let b = p.docker_ok(&[
        "create",
        "--name",
        "it-foreign-web-9",
        "--label",
        "drover.service=web",
        "--label",
        "drover.slot=9",
        "drover-test/busybox:latest",
    ]);
    let foreign = [a, b];
    let cleanup = || {
        let _ = p.docker(&["rm", "-f", "it-foreign-web-3", "it-foreign-web-9"]);
    };
    let mut d = p.run(&["--scale", "web=2"]);
    eventually_with(&mut d, UP, "2 web", |_| p.running("web") == 2);
    // Scale to zero: drover removes its own, and only its own.
    drop(d);
    let mut d = p.run(&["--scale", "web=0"]);
    eventually_with(&mut d, UP, "no drover web left", |_| {
        p.containers(Some("web"), None).is_empty()
    });
    let still = |id: &str| p.inspect(id, "{{.State.Status}}");
    assert_eq!(still(&foreign[0]), "running");
    assert_eq!(still(&foreign[1]), "created");
    cleanup();
}

#[test]
fn sigterm_exits_zero_within_two_seconds_leaving_containers_running() {
    let p = Project::new("it-term", &two_services(2, 0));
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "2 web", |_| p.running("web") == 2);
    let start = std::time::Instant::now();
    d.signal("TERM");
    let status = d
        .wait_exit(Duration::from_secs(2))
        .expect("exited within 2 s");
    assert!(status.success(), "exit status {status}");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(p.running("web"), 2);
}

#[test]
fn restart_no_job_stays_exited_and_crash_loop_backs_off_once_per_step() {
    let p = Project::new(
        "it-policy",
        r#"
services:
  job:
    image: drover-test/busybox:latest
    command: ["true"]
    restart: "no"
  crasher:
    image: drover-test/busybox:latest
    command: ["sh", "-c", "exit 3"]
    restart: on-failure
"#,
    );
    let mut d = p.run(&["--backoff-initial", "300ms", "--backoff-max", "2s"]);
    eventually_with(&mut d, UP, "the crash loop reaching backoff step 3", |d| {
        d.actions("backoff")
            .iter()
            .any(|e| e["attempts"].as_i64().unwrap_or(0) >= 3)
    });
    // Each step said once, not per event.
    let steps: Vec<i64> = d
        .actions("backoff")
        .iter()
        .filter(|e| e["service"] == "crasher")
        .map(|e| e["attempts"].as_i64().unwrap())
        .collect();
    let mut dedup = steps.clone();
    dedup.dedup();
    assert_eq!(
        steps, dedup,
        "backoff steps logged more than once: {steps:?}"
    );
    // The job ran once and stays exited with code 0.
    let job = p.containers(Some("job"), None);
    assert_eq!(job.len(), 1);
    assert_eq!(p.inspect(&job[0], "{{.State.Status}}"), "exited");
    assert_eq!(p.inspect(&job[0], "{{.State.ExitCode}}"), "0");
    assert_eq!(p.inspect(&job[0], "{{.RestartCount}}"), "0");
}

#[test]
fn a_failed_pull_is_an_error_for_that_service_only() {
    let p = Project::new(
        "it-pull",
        r#"
services:
  ok:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
  missing:
    image: drover-test/does-not-exist:latest
"#,
    );
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "ok running and a pull error logged", |d| {
        p.running("ok") == 1
            && d.events().iter().any(|e| {
                e["service"] == "missing"
                    && e["error"]
                        .as_str()
                        .is_some_and(|m| m.contains("pull drover-test/does-not-exist:latest"))
            })
    });
}

#[test]
fn changed_definition_recreates_containers_with_the_new_config() {
    let compose = |v: &str| {
        format!(
            r#"
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    environment:
      VERSION: "{v}"
    deploy:
      replicas: 3
"#
        )
    };
    let p = Project::new("it-update", &compose("1"));
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "3 web", |_| p.running("web") == 3);
    let old = p.containers(Some("web"), None);
    p.write("compose.yml", &compose("2"));
    eventually_with(&mut d, UP, "3 web all on the new config", |_| {
        let now = p.containers(Some("web"), Some("running"));
        now.len() == 3
            && now.iter().all(|id| !old.contains(id))
            && now
                .iter()
                .all(|id| p.inspect(id, "{{json .Config.Env}}").contains("VERSION=2"))
    });
    // One at a time: every recreate was logged as its own step.
    assert_eq!(d.actions("recreate").len(), 3);
}

#[test]
fn plan_prints_actions_and_changes_nothing() {
    let p = Project::new("it-plan", &two_services(2, 1));
    let out = p.drover(&["plan", "-p", "it-plan"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("create web slot 1"), "{text}");
    assert!(text.contains("create worker slot 1"), "{text}");
    assert!(p.containers(None, None).is_empty());
    eventually(Duration::from_secs(1), "nothing created", || {
        p.containers(None, None).is_empty()
    });
}

#[test]
fn as_pid_1_sigterm_still_exits_zero_promptly() {
    // In a new PID namespace drover is PID 1, where the kernel drops every signal the
    // process has no handler for: the situation of `docker run drover`.
    let p = Project::new("it-pid1", &two_services(1, 0));
    let mut cmd = std::process::Command::new("unshare");
    cmd.current_dir(&p.dir)
        .args(["--pid", "--fork", "--kill-child"])
        .arg(env!("CARGO_BIN_EXE_drover"))
        .args(["run", "--log-format", "json", "-p", "it-pid1"])
        .env("DOCKER_HOST", support::local_engine())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut d = support::drover::Drover::spawn(cmd);
    eventually_with(&mut d, UP, "web running", |_| p.running("web") == 1);
    // unshare forwards nothing: signal the namespace's PID 1 (unshare's only child).
    let child = std::fs::read_to_string(format!("/proc/{}/task/{}/children", d.pid(), d.pid()))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{child}/status"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("NSpid:"))
            .and_then(|l| l.split_whitespace().last().map(str::to_string)),
        Some("1".to_string()),
        "drover runs as PID 1 in its namespace"
    );
    let start = std::time::Instant::now();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = d
        .wait_exit(Duration::from_secs(2))
        .expect("exited within 2 s");
    assert!(status.success(), "{status}");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(p.running("web"), 1, "containers left running");
}

#[test]
fn named_volumes_and_networks_are_created_and_attached() {
    let p = Project::new(
        "it-infra",
        r#"
services:
  db:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    volumes:
      - data:/data
    networks: [back, front]
volumes:
  data: {}
networks:
  back: {}
  front: {}
"#,
    );
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "db running", |_| p.running("db") == 1);
    let id = &p.containers(Some("db"), None)[0];
    let nets = p.inspect(
        id,
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
    );
    let mut nets: Vec<&str> = nets.split_whitespace().collect();
    nets.sort();
    assert_eq!(nets, vec!["it-infra_back", "it-infra_front"]);
    assert_eq!(
        p.inspect(id, "{{range .Mounts}}{{.Name}}:{{.Destination}}{{end}}"),
        "it-infra_data:/data"
    );
    let aliases = p.inspect(id, "{{json .NetworkSettings.Networks}}");
    assert!(
        aliases.contains("\"db\""),
        "service name is an alias: {aliases}"
    );
}

#[test]
fn a_second_network_of_the_same_name_is_removed_and_the_project_keeps_working() {
    let p = Project::new("it-dupnet", &two_services(2, 0));
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "2 web running", |_| p.running("web") == 2);
    let original = p.docker_ok(&["network", "inspect", "-f", "{{.Id}}", "it-dupnet_default"]);
    // What a create racing another create leaves behind on Engine 20.10: a second network
    // with the same name and labels (the engine checks names only when asked to).
    let (code, body) = support::engine_request(
        "POST",
        "/networks/create",
        r#"{"Name":"it-dupnet_default","Labels":{"drover.project":"it-dupnet","com.docker.compose.project":"it-dupnet","com.docker.compose.network":"default"}}"#,
    );
    assert_eq!(code, 201, "{body}");
    // A replacement has to join the network by name, which fails while it is ambiguous.
    let victim = p.containers(Some("web"), Some("running"))[0].clone();
    p.docker_ok(&["rm", "-f", &victim]);
    eventually_with(&mut d, UP, "the copy removed and 2 web running", |d| {
        !d.actions("remove-network").is_empty() && p.running("web") == 2
    });
    let left = p.docker_ok(&[
        "network",
        "ls",
        "-q",
        "--no-trunc",
        "--filter",
        "name=^it-dupnet_default$",
    ]);
    assert_eq!(left, original, "the oldest network is the one kept");
    assert!(d.actions("remove-network")[0]["error"].is_null());
}

/// CPU seconds a process has used (user + system), from /proc.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    ticks / hz
}

/// Converged and nothing happening: drover waits for events instead of looping (its own
/// reads of the config files once woke its directory watch, which spun a core).
#[test]
fn an_idle_drover_sleeps() {
    let p = Project::new("it-idle", &two_services(2, 1));
    let mut d = p.run(&[]);
    eventually_with(&mut d, UP, "2 web and 1 worker running", |_| {
        p.running("web") == 2 && p.running("worker") == 1
    });
    let (start, before) = (std::time::Instant::now(), cpu_seconds(d.pid()));
    std::thread::sleep(Duration::from_secs(5));
    let used = cpu_seconds(d.pid()) - before;
    let wall = start.elapsed().as_secs_f64();
    d.assert_alive();
    assert!(
        used < wall * 0.25,
        "idle drover used {used:.2} s of CPU in {wall:.1} s"
    );
}
