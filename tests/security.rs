//! What drover says never carries a secret: environment values (inline, from `.env`
//! interpolation, from `env_file`), secret file contents, a webhook's URL and TLS material
//! stay out of its logs (even at debug level), `plan`, `status`, `/status`, `/metrics` and
//! its errors, while they do reach the containers (and the URL is posted to).

mod support;

use std::time::Duration;

use drover::telemetry::http;
use support::drover::{Project, address, eventually_with};

const UP: Duration = Duration::from_secs(60);

/// Every value below contains this, so one search finds any of them.
const MARK: &str = "Zq7-hush";

fn compose(api_key: &str) -> String {
    format!(
        r#"
x-drover:
  notify:
    - url_env: HOOK_URL
services:
  web:
    image: drover-test/busybox:latest
    command: ["sleep", "86400"]
    stop_signal: SIGKILL
    environment:
      PASSWORD: ${{DB_PASSWORD}}
      API_KEY: "{api_key}"
    env_file: app.env
    secrets: [token]
    deploy:
      replicas: 2
  broken:
    image: drover-test/no-such-image:{MARK}-never
    environment:
      - PASSWORD=${{DB_PASSWORD}}
secrets:
  token:
    file: ./token.txt
"#
    )
}

/// The marked values found in `text`, for a failure message that names them.
fn leaks(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains(MARK))
        .map(|l| l.chars().take(300).collect())
        .collect()
}

#[test]
fn env_values_and_secret_files_never_reach_logs_plan_status_or_errors() {
    let mut p = Project::new("it-sec", &compose(&format!("inline-{MARK}-1")));
    // A webhook nothing answers on, its URL marked in the path, the query and the
    // credentials: its failures are logged, never it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    p.env.push((
        "HOOK_URL".into(),
        format!("http://hook:{MARK}-7@127.0.0.1:{port}/hooks/{MARK}-8?token={MARK}-9"),
    ));
    p.write(".env", &format!("DB_PASSWORD=dotenv-{MARK}-2\n"));
    p.write("app.env", &format!("TOKEN=envfile-{MARK}-3\n"));
    p.write("token.txt", &format!("secret-{MARK}-4\n"));
    let mut d = p.run(&["--listen", "127.0.0.1:0", "--log-level", "debug"]);
    let addr = address(&mut d);
    eventually_with(&mut d, UP, "2 web running", |_| p.running("web") == 2);
    // The values do reach the containers: the search below would find them if said.
    let id = p.containers(Some("web"), Some("running"))[0].clone();
    let env = p.inspect(&id, "{{json .Config.Env}}");
    for want in ["inline-", "dotenv-", "envfile-"] {
        assert!(env.contains(&format!("{want}{MARK}")), "{want}: {env}");
    }
    let secret = p.docker_ok(&["exec", &id, "cat", "/run/secrets/token"]);
    assert_eq!(secret, format!("secret-{MARK}-4"));

    // Work that logs: a kill, a removal, a service that cannot start, a value change
    // that recreates, an edit that does not load.
    let other = p
        .containers(Some("web"), Some("running"))
        .into_iter()
        .find(|c| *c != id)
        .unwrap();
    p.docker_ok(&["kill", &id]);
    p.docker_ok(&["rm", "-f", &other]);
    eventually_with(&mut d, UP, "restored and the missing image reported", |d| {
        p.running("web") == 2
            && d.events()
                .iter()
                .any(|e| e["service"] == "broken" && e["error"].is_string())
    });
    p.write(".env", &format!("DB_PASSWORD=rotated-{MARK}-5\n"));
    eventually_with(&mut d, UP, "recreated with the new value", |_| {
        p.running_names("web").len() == 2
            && p.containers(Some("web"), Some("running")).iter().all(|c| {
                p.inspect(c, "{{json .Config.Env}}")
                    .contains(&format!("rotated-{MARK}-5"))
            })
    });
    eventually_with(&mut d, UP, "a notification given up on", |d| {
        d.actions("notify")
            .iter()
            .any(|e| e["message"] == "notification not delivered")
    });
    p.write("compose.yml", &compose(&format!("${{:broken-{MARK}-6}}")));
    eventually_with(&mut d, UP, "the broken edit reported", |d| {
        !d.actions("reload").is_empty()
            && d.logs()
                .iter()
                .any(|l| l.contains("services.web.environment.API_KEY"))
    });

    let (_, status) = http::get(addr, "/status", Duration::from_secs(5)).unwrap();
    let (_, metrics) = http::get(addr, "/metrics", Duration::from_secs(5)).unwrap();
    let listen = addr.to_string();
    let cli_status = p.drover(&["status", "--listen", &listen]);
    let cli_status_json = p.drover(&["status", "--json", "--listen", &listen]);
    // `plan` from the last good file, and from the broken one (an error).
    let plan_broken = p.drover(&["plan"]);
    p.write("compose.yml", &compose(&format!("inline-{MARK}-1")));
    let plan = p.drover(&["plan"]);
    // `check` prints the normalized project, environment values included (as `docker
    // compose config` does), but never the webhook's URL.
    let check = String::from_utf8_lossy(&p.drover(&["check"]).stdout).into_owned();
    assert!(check.contains("services:"), "{check}");
    for n in 7..=9 {
        assert!(!check.contains(&format!("{MARK}-{n}")), "{check}");
    }
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    assert!(!plan_broken.status.success());

    let mut said = vec![
        ("logs", d.logs().join("\n")),
        ("/status", status.clone()),
        ("/metrics", metrics),
    ];
    for (what, out) in [
        ("status", &cli_status),
        ("status --json", &cli_status_json),
        ("plan", &plan),
        ("plan of the broken file", &plan_broken),
    ] {
        said.push((what, String::from_utf8_lossy(&out.stdout).into_owned()));
        said.push((what, String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    // The outputs are not empty: the service names, the failing image's tag (which is not
    // a secret and carries the mark on purpose) and the reload error are there.
    assert!(status.contains("\"web\""), "{status}");
    assert!(
        said[2].1.contains(
            r#"drover_notifications_total{project="it-sec",webhook="0",result="failed"}"#
        ),
        "the webhook is named by its index"
    );
    assert!(
        d.logs()
            .iter()
            .any(|l| l.contains(&format!("no-such-image:{MARK}-never"))),
        "the image error is logged"
    );
    for (what, text) in &said {
        let found: Vec<String> = leaks(text)
            .into_iter()
            .map(|l| l.replace(&format!("no-such-image:{MARK}-never"), "IMAGE"))
            .filter(|l| l.contains(MARK))
            .collect();
        assert!(found.is_empty(), "{what} shows a secret value:\n{found:#?}");
    }
}

/// Over TLS, at debug level, and through a failing handshake: no key or certificate
/// content in anything drover says. Node index 101.
#[test]
fn tls_material_never_reaches_logs_or_errors() {
    let node = support::Node::start("sec-tls", 101);
    let key = std::fs::read_to_string(node.cert_dir.join("key.pem")).unwrap();
    let cert = std::fs::read_to_string(node.cert_dir.join("cert.pem")).unwrap();
    // A line from the middle of each PEM body: what a leak of the material would show.
    let body_line = |pem: &str| {
        let lines: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        lines[lines.len() / 2].to_string()
    };
    let secrets = [body_line(&key), body_line(&cert)];
    let p = Project::on(
        "it-sec-tls",
        "services:\n  web:\n    image: drover-test/busybox:latest\n    command: [\"sleep\", \"86400\"]\n",
        node.env(),
    );
    node.docker_ok(&["image", "inspect", "drover-test/busybox:latest"]);
    let mut d = p.run(&["--log-level", "debug"]);
    eventually_with(&mut d, UP, "web running over TLS", |_| {
        p.running("web") == 1
    });
    let mut said = d.logs().join("\n");
    drop(d);
    // A client certificate the engine does not trust: the handshake fails.
    let wrong = std::env::temp_dir().join(format!("drover-sec-wrong-{}", std::process::id()));
    std::fs::create_dir_all(&wrong).unwrap();
    std::fs::copy(node.cert_dir.join("key.pem"), wrong.join("key.pem")).unwrap();
    std::fs::copy(node.cert_dir.join("cert.pem"), wrong.join("cert.pem")).unwrap();
    // The node's own server certificate as the CA: verification of the server fails.
    std::fs::copy(node.cert_dir.join("cert.pem"), wrong.join("ca.pem")).unwrap();
    let out = std::process::Command::new(support::drover_bin())
        .args(["plan", "--log-level", "debug"])
        .current_dir(&p.dir)
        .env_clear()
        .env("DOCKER_HOST", &node.host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", &wrong)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&wrong);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ca.pem") || err.contains("certificate"),
        "{err}"
    );
    said.push_str(&err);
    said.push_str(&String::from_utf8_lossy(&out.stdout));
    assert!(!said.contains("-----BEGIN"), "PEM in output:\n{said}");
    for s in &secrets {
        assert!(
            !said.contains(s.as_str()),
            "TLS material in output:\n{said}"
        );
    }
}

/// Registry logins (an `auth` value, a password, an identity token) never reach the logs
/// (at debug level), `plan`, `status`, `/status`, `/metrics` or the error of a refused pull,
/// while the image they log in for runs.
#[test]
fn registry_logins_never_reach_logs_plan_status_or_errors() {
    use base64::Engine as _;
    use support::registry::{PASSWORD, Registry, USER};
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut images = Vec::new();
    let registries: Vec<Registry> = (0..2).map(|_| Registry::http()).collect();
    for r in &registries {
        let client = r.dir.join("client");
        r.login(&support::local_env(), &client);
        let repo = support::unique_name("sec");
        images.push(r.push(&support::local_env(), &client, support::TEST_IMAGE, &repo));
    }
    let (good, refused) = (&registries[0], &registries[1]);
    let wrong = format!("wrong-{MARK}-7");
    let token = format!("token-{MARK}-8");
    let config = std::env::temp_dir().join(format!("drover-sec-creds-{}", std::process::id()));
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.json"),
        format!(
            r#"{{"auths": {{
                "{}": {{"auth": "{}"}},
                "{}": {{"username": "{USER}", "password": "{wrong}"}},
                "tokens.example": {{"identitytoken": "{token}"}}
            }}}}"#,
            good.host,
            b64(&format!("{USER}:{PASSWORD}")),
            refused.host
        ),
    )
    .unwrap();
    let compose = format!(
        "services:\n  app:\n    image: {}\n    command: [\"sleep\", \"86400\"]\n    stop_signal: SIGKILL\n  denied:\n    image: {}\n",
        images[0], images[1]
    );
    let mut env = support::local_env();
    env.push(("DOCKER_CONFIG".into(), config.display().to_string()));
    let p = Project::on("it-sec-registry", &compose, env);
    let mut d = p.run(&["--listen", "127.0.0.1:0", "--log-level", "debug"]);
    let addr = address(&mut d);
    eventually_with(&mut d, UP, "app running and the refused pull said", |d| {
        p.running("app") == 1
            && d.events().iter().any(|e| {
                e["service"] == "denied"
                    && e["error"]
                        .as_str()
                        .is_some_and(|m| m.contains(&format!("registry {} refused", refused.host)))
            })
    });
    let (_, status) = http::get(addr, "/status", Duration::from_secs(5)).unwrap();
    let (_, metrics) = http::get(addr, "/metrics", Duration::from_secs(5)).unwrap();
    let listen = addr.to_string();
    let cli_status = p.drover(&["status", "--json", "--listen", &listen]);
    let run_logs = d.logs().join("\n");
    drop(d);
    let plan = p.drover(&["plan", "--log-level", "debug"]);
    let logs = {
        let mut said = vec![
            ("logs", run_logs),
            ("/status", status.clone()),
            ("/metrics", metrics),
        ];
        for (what, out) in [("status", &cli_status), ("plan", &plan)] {
            said.push((what, String::from_utf8_lossy(&out.stdout).into_owned()));
            said.push((what, String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        said
    };
    assert!(status.contains("\"denied\""), "{status}");
    let secrets = [
        PASSWORD.to_string(),
        b64(&format!("{USER}:{PASSWORD}")),
        wrong.clone(),
        b64(&format!("{USER}:{wrong}")),
        token.clone(),
    ];
    for (what, text) in &logs {
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "{what} shows a registry secret:\n{text}"
            );
        }
        assert!(leaks(text).is_empty(), "{what}: {:#?}", leaks(text));
    }
    let _ = std::fs::remove_dir_all(&config);
}
