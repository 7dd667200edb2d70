//! Every Compose service key that changes how a container runs, checked on the container
//! drover created (docker inspect), on the local engine. One project per key group, one
//! container per service, SIGKILL to stop: the suite stays fast.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::drover::{Drover, Project, eventually_with};

const UP: Duration = Duration::from_secs(60);

/// Start drover and wait until each service has one running container; return the ids.
fn up(p: &Project, services: &[&str], extra: &[&str]) -> (Drover, Vec<String>) {
    let mut d = p.run(extra);
    eventually_with(&mut d, UP, &format!("{services:?} running"), |_| {
        services.iter().all(|s| p.running(s) == 1)
    });
    let ids = services
        .iter()
        .map(|s| p.containers(Some(s), Some("running"))[0].clone())
        .collect();
    (d, ids)
}

fn json(p: &Project, id: &str, what: &str) -> Value {
    serde_json::from_str(&p.inspect(id, &format!("{{{{json {what}}}}}"))).unwrap()
}

fn exec(p: &Project, id: &str, cmd: &str) -> String {
    p.docker_ok(&["exec", id, "/bin/busybox", "sh", "-c", cmd])
}

#[test]
fn resources_privileges_and_process_settings() {
    let p = Project::new(
        "it-cmp-res",
        r#"
services:
  app:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    stop_grace_period: 1m30s
    cap_add: [NET_ADMIN]
    cap_drop: [MKNOD]
    security_opt: ["no-new-privileges:true"]
    read_only: true
    init: true
    tty: yes
    stdin_open: "on"
    ipc: shareable
    pid: host
    mem_limit: 48m
    cpus: 0.5
    shm_size: 16m
    pids_limit: 64
    deploy:
      resources:
        limits: {memory: 48m, cpus: "0.5", pids: 64}
        reservations: {memory: 16m}
    ulimits:
      nofile: {soft: 1024, hard: 2048}
      nproc: 512
    sysctls:
      net.core.somaxconn: 1024
    devices: ["/dev/zero:/dev/myzero:r"]
    dns: 10.231.0.53
    dns_search: [example.internal]
    extra_hosts: ["db.internal:10.231.0.9", "cache.internal=10.231.0.10"]
    logging:
      driver: json-file
      options: {max-size: 1m, max-file: "2"}
    runtime: runc
    group_add: ["1234"]
    domainname: example.internal
    hostname: app
    working_dir: /tmp
    user: "0:0"
    labels: ["team=core", "tier=back"]
    expose: ["7000-7001", "53/udp"]
  priv:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    privileged: true
    labels: {team: ops}
    healthcheck:
      test: ["CMD", "true"]
      interval: 1m30s
      timeout: 10s
      start_period: 500ms
      retries: 2
  nohealth:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    healthcheck:
      disable: true
"#,
    );
    let (mut d, mut ids) = up(&p, &["app", "nohealth"], &[]);
    // A privileged container may be refused a start by a sandboxed host: its create
    // request is what is checked.
    eventually_with(&mut d, UP, "priv created", |_| {
        !p.containers(Some("priv"), None).is_empty()
    });
    ids.insert(1, p.containers(Some("priv"), None)[0].clone());
    let h = json(&p, &ids[0], ".HostConfig");
    assert_eq!(h["CapAdd"], serde_json::json!(["NET_ADMIN"]));
    assert_eq!(h["CapDrop"], serde_json::json!(["MKNOD"]));
    // (The engine adds `label=disable` itself with `pid: host`.)
    assert_eq!(h["SecurityOpt"][0], "no-new-privileges:true");
    assert_eq!(h["ReadonlyRootfs"], true);
    assert_eq!(h["Init"], true);
    assert_eq!(h["IpcMode"], "shareable");
    assert_eq!(h["PidMode"], "host");
    assert_eq!(h["Memory"], 48 << 20, "mem_limit and its deploy twin agree");
    assert_eq!(h["MemoryReservation"], 16 << 20);
    assert_eq!(h["NanoCpus"], 500_000_000);
    assert_eq!(h["ShmSize"], 16 << 20);
    assert_eq!(h["PidsLimit"], 64);
    let mut ulimits: Vec<(String, i64, i64)> = h["Ulimits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["Name"].as_str().unwrap().to_string(),
                u["Soft"].as_i64().unwrap(),
                u["Hard"].as_i64().unwrap(),
            )
        })
        .collect();
    ulimits.sort();
    assert_eq!(
        ulimits,
        vec![("nofile".into(), 1024, 2048), ("nproc".into(), 512, 512)]
    );
    assert_eq!(h["Sysctls"]["net.core.somaxconn"], "1024");
    assert_eq!(h["Devices"][0]["PathOnHost"], "/dev/zero");
    assert_eq!(h["Devices"][0]["PathInContainer"], "/dev/myzero");
    assert_eq!(h["Devices"][0]["CgroupPermissions"], "r");
    assert_eq!(h["Dns"], serde_json::json!(["10.231.0.53"]));
    assert_eq!(h["DnsSearch"], serde_json::json!(["example.internal"]));
    assert_eq!(
        h["ExtraHosts"],
        serde_json::json!(["db.internal:10.231.0.9", "cache.internal:10.231.0.10"])
    );
    assert_eq!(h["LogConfig"]["Type"], "json-file");
    assert_eq!(h["LogConfig"]["Config"]["max-size"], "1m");
    assert_eq!(h["LogConfig"]["Config"]["max-file"], "2");
    assert_eq!(h["Runtime"], "runc");
    assert_eq!(h["GroupAdd"], serde_json::json!(["1234"]));
    let c = json(&p, &ids[0], ".Config");
    assert_eq!(c["Tty"], true);
    assert_eq!(c["OpenStdin"], true);
    assert_eq!(c["Domainname"], "example.internal");
    assert_eq!(c["Hostname"], "app");
    assert_eq!(c["WorkingDir"], "/tmp");
    assert_eq!(c["User"], "0:0");
    assert_eq!(c["StopSignal"], "SIGKILL");
    assert_eq!(c["StopTimeout"], 90);
    assert_eq!(c["Labels"]["team"], "core");
    assert_eq!(c["Labels"]["tier"], "back");
    let exposed = c["ExposedPorts"].as_object().unwrap();
    for port in ["7000/tcp", "7001/tcp", "53/udp"] {
        assert!(exposed.contains_key(port), "{port} exposed: {exposed:?}");
    }
    // Seen from inside, too.
    assert!(exec(&p, &ids[0], "cat /etc/hosts").contains("db.internal"));
    // The limits of the container's own process (a `docker exec` shell can see the soft
    // limit raised to the hard one: a race in the runtime's exec path, not drover's).
    let pid = p.inspect(&ids[0], "{{.State.Pid}}");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(open_files[3..5], ["1024", "2048"], "{limits}");

    let h = json(&p, &ids[1], ".HostConfig");
    assert_eq!(h["Privileged"], true);
    let c = json(&p, &ids[1], ".Config");
    assert_eq!(c["Labels"]["team"], "ops");
    assert_eq!(c["Healthcheck"]["Test"], serde_json::json!(["CMD", "true"]));
    assert_eq!(c["Healthcheck"]["Interval"], 90_000_000_000i64);
    assert_eq!(c["Healthcheck"]["Timeout"], 10_000_000_000i64);
    assert_eq!(c["Healthcheck"]["StartPeriod"], 500_000_000);
    assert_eq!(c["Healthcheck"]["Retries"], 2);
    let c = json(&p, &ids[2], ".Config");
    assert_eq!(c["Healthcheck"]["Test"], serde_json::json!(["NONE"]));
}

#[test]
fn ports_volumes_tmpfs_secrets_and_configs() {
    let p = Project::new(
        "it-cmp-mnt",
        r#"
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    ports:
      - "127.0.0.1:18471:80"
      - "18472-18473:8000-8001"
      - "18474:53/udp"
      - "9000"
      - target: 81
        published: "18475"
        host_ip: 127.0.0.1
        protocol: tcp
    volumes:
      - ./made-by-engine:/created
      - data:/data
      - type: bind
        source: ./static
        target: /static
        read_only: true
      - type: tmpfs
        target: /scratch
        tmpfs: {size: 4m}
      - type: volume
        target: /anon
        volume: {nocopy: true}
    tmpfs: ["/run/x:size=2m,mode=1770"]
    secrets: [token, {source: token, target: other-name}]
    configs: [{source: app_conf, target: /etc/app.conf}, app_conf]
volumes:
  data:
secrets:
  token: {file: ./token.txt}
configs:
  app_conf: {file: ./app.conf}
"#,
    );
    std::fs::create_dir_all(p.path("static")).unwrap();
    p.write("token.txt", "s3cret\n");
    p.write("app.conf", "key=value\n");
    let (_d, ids) = up(&p, &["web"], &[]);
    let id = &ids[0];
    let h = json(&p, id, ".HostConfig");
    let pb = &h["PortBindings"];
    assert_eq!(pb["80/tcp"][0]["HostIp"], "127.0.0.1");
    assert_eq!(pb["80/tcp"][0]["HostPort"], "18471");
    assert_eq!(pb["8000/tcp"][0]["HostPort"], "18472");
    assert_eq!(pb["8001/tcp"][0]["HostPort"], "18473");
    assert_eq!(pb["53/udp"][0]["HostPort"], "18474");
    assert_eq!(pb["9000/tcp"][0]["HostPort"], "");
    assert_eq!(pb["81/tcp"][0]["HostPort"], "18475");
    // Short-syntax bind: created when missing, like `docker run -v`; a long one without
    // a `bind` section takes the same form, as in compose.
    let dir = p.dir.display().to_string();
    assert_eq!(
        h["Binds"],
        serde_json::json!([
            format!("{dir}/made-by-engine:/created"),
            format!("{dir}/static:/static:ro")
        ])
    );
    assert!(p.path("made-by-engine").is_dir());
    let mounts: Vec<Value> = json(&p, id, ".Mounts").as_array().unwrap().clone();
    let find = |dest: &str| {
        mounts
            .iter()
            .find(|m| m["Destination"] == dest)
            .unwrap_or_else(|| panic!("no mount at {dest}: {mounts:?}"))
            .clone()
    };
    assert_eq!(find("/data")["Name"], "it-cmp-mnt_data");
    assert_eq!(find("/static")["RW"], false);
    assert_eq!(
        find("/run/secrets/token")["Source"],
        format!("{dir}/token.txt")
    );
    assert_eq!(find("/run/secrets/token")["RW"], false);
    assert_eq!(find("/run/secrets/other-name")["RW"], false);
    assert_eq!(find("/etc/app.conf")["Source"], format!("{dir}/app.conf"));
    assert_eq!(find("/app_conf")["Type"], "bind");
    assert_eq!(find("/anon")["Type"], "volume");
    let hm: Vec<Value> = h["Mounts"].as_array().unwrap().clone();
    let scratch = hm.iter().find(|m| m["Target"] == "/scratch").unwrap();
    assert_eq!(scratch["TmpfsOptions"]["SizeBytes"], 4 << 20);
    let x = hm.iter().find(|m| m["Target"] == "/run/x").unwrap();
    assert_eq!(x["TmpfsOptions"]["SizeBytes"], 2 << 20);
    assert_eq!(x["TmpfsOptions"]["Mode"], 0o1770);
    let anon = hm.iter().find(|m| m["Target"] == "/anon").unwrap();
    assert_eq!(anon["VolumeOptions"]["NoCopy"], true);
    assert_eq!(exec(&p, id, "cat /run/secrets/token"), "s3cret");
    assert_eq!(exec(&p, id, "cat /etc/app.conf"), "key=value");
}

#[test]
fn networks_modes_links_and_volumes_from() {
    let net = "it-cmp-net-outside";
    let p = Project::new(
        "it-cmp-net",
        &format!(
            r#"
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    volumes: [shared:/shared]
    networks:
      front:
        aliases: [www]
      outside:
        ipv4_address: 10.231.77.10
        priority: 10
  sidecar:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    network_mode: service:web
    volumes_from: ["web:ro"]
  client:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    networks: [front]
    links: ["web:webhost"]
  hostnet:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    network_mode: host
  isolated:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    network_mode: none
networks:
  front:
  outside:
    external: true
    name: {net}
volumes:
  shared:
"#
        ),
    );
    let _ = p.docker(&["network", "rm", net]);
    p.docker_ok(&[
        "network",
        "create",
        "--subnet",
        "10.231.77.0/24",
        "--label",
        "drover.project=it-cmp-net",
        net,
    ]);
    let (_d, ids) = up(
        &p,
        &["web", "sidecar", "client", "hostnet", "isolated"],
        &[],
    );
    let nets = json(&p, &ids[0], ".NetworkSettings.Networks");
    assert_eq!(nets[net]["IPAddress"], "10.231.77.10");
    assert_eq!(
        nets[net]["IPAMConfig"]["IPv4Address"], "10.231.77.10",
        "static address"
    );
    let aliases = nets["it-cmp-net_front"]["Aliases"].to_string();
    assert!(aliases.contains("www"), "{aliases}");
    // The highest priority network is the one set at create time.
    assert_eq!(p.inspect(&ids[0], "{{.HostConfig.NetworkMode}}"), net);

    // Named at create time, resolved to the id by the engine.
    let web_id = p.inspect(&ids[0], "{{.Id}}");
    assert_eq!(
        p.inspect(&ids[1], "{{.HostConfig.NetworkMode}}"),
        format!("container:{web_id}")
    );
    assert_eq!(
        json(&p, &ids[1], ".HostConfig.VolumesFrom"),
        serde_json::json!(["it-cmp-net-web-1:ro"])
    );
    let shared = json(&p, &ids[1], ".Mounts");
    assert!(shared.to_string().contains("it-cmp-net_shared"), "{shared}");
    // The sidecar shares web's network stack.
    assert_eq!(
        exec(&p, &ids[1], "cat /etc/hostname"),
        exec(&p, &ids[0], "cat /etc/hostname")
    );

    let client_nets = json(&p, &ids[2], ".NetworkSettings.Networks");
    let links = client_nets["it-cmp-net_front"]["Links"].to_string();
    assert!(links.contains("it-cmp-net-web-1:webhost"), "{links}");
    assert!(
        exec(
            &p,
            &ids[2],
            "/bin/busybox ping -c1 -W2 webhost >/dev/null && echo ok"
        ) == "ok"
    );

    assert_eq!(p.inspect(&ids[3], "{{.HostConfig.NetworkMode}}"), "host");
    assert_eq!(p.inspect(&ids[4], "{{.HostConfig.NetworkMode}}"), "none");
    let _ = p.docker(&["network", "rm", net]);
}

#[test]
fn profiles_select_services_from_flag_env_and_dotenv() {
    let p = Project::new(
        "it-cmp-prof",
        r#"
services:
  always:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
  debug:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    profiles: [debug]
"#,
    );
    p.write(".env", "COMPOSE_PROFILES=debug\n");
    let (_d, _) = up(&p, &["always", "debug"], &[]);
    p.write(".env", "");
    let out = p.drover(&["check", "--format", "json", "-p", "it-cmp-prof"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["services"]["debug"].is_null(),
        "inactive without a profile"
    );
}
