//! The `drover` command: parses the command line and wires the library together, one
//! function per subcommand. It owns the process's signals: SIGTERM and SIGINT cancel the
//! run, SIGHUP asks the config source to load again.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use drover::config::hostpath::{HostPaths, UseKind};
use drover::config::{self, LoadOptions, Loaded, Mode, Startup};
use drover::engine::connect::{self, ConnectArgs, Endpoint};
use drover::engine::hostmounts;
use drover::nodes::NodeSpec;
use drover::plain::{self, Settings};
use drover::runtime::{Reload, Start};
use drover::telemetry::http::{self, Listen};
use drover::telemetry::{self, LogFormat, Telemetry};
use drover::{autoscale, engine, notify, plan, preview, swarm};

#[derive(Parser, Debug)]
#[command(
    name = "drover",
    version,
    about = "Keeps a Compose project's services at their target replica counts",
    long_about = "Keeps a Compose project's services at their target replica counts on Docker \
                  engines: restarts what dies, recreates what is removed, scales and rolls \
                  updates as the Compose files change.\n\n\
                  Every flag is also read from DROVER_<FLAG> (e.g. DROVER_SCALE_FILE); the \
                  engine connection follows the Docker CLI (DOCKER_HOST, DOCKER_TLS_VERIFY, \
                  DOCKER_CERT_PATH). The options below may also be written after the subcommand."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct Common {
    /// Compose file (repeatable; later files override earlier ones). Default: compose.yaml,
    /// compose.yml, docker-compose.yaml or docker-compose.yml in the working directory.
    #[arg(
        short = 'f',
        long = "file",
        env = "DROVER_FILE",
        value_delimiter = ':',
        global = true
    )]
    file: Vec<PathBuf>,
    /// Project name (default: COMPOSE_PROJECT_NAME, then `name:`, then the directory name).
    #[arg(
        short = 'p',
        long = "project-name",
        env = "DROVER_PROJECT_NAME",
        global = true
    )]
    project_name: Option<String>,
    /// Replica target for a service, SERVICE=N (repeatable; wins over every other source).
    #[arg(long = "scale", env = "DROVER_SCALE", value_delimiter = ',', value_parser = parse_scale, global = true)]
    scale: Vec<(String, u32)>,
    /// YAML file mapping service -> replica count; re-read when it changes.
    #[arg(long = "scale-file", env = "DROVER_SCALE_FILE", global = true)]
    scale_file: Option<PathBuf>,
    /// Enable services of this profile (repeatable; default: COMPOSE_PROFILES).
    #[arg(
        long = "profile",
        env = "DROVER_PROFILE",
        value_delimiter = ',',
        global = true
    )]
    profile: Vec<String>,
    /// Environment file used for interpolation instead of the project's .env (repeatable).
    #[arg(long = "env-file", env = "DROVER_ENV_FILE", global = true)]
    env_file: Vec<PathBuf>,
    /// Log format (default: pretty on a terminal, json otherwise).
    #[arg(long = "log-format", env = "DROVER_LOG_FORMAT", global = true)]
    log_format: Option<LogFormat>,
    /// Log level or filter, e.g. `debug` or `drover=debug` (default: RUST_LOG, then info).
    #[arg(long = "log-level", env = "DROVER_LOG_LEVEL", global = true)]
    log_level: Option<String>,
    /// HTTP address for /livez, /readyz, /metrics and /status, or `off`
    /// [default: 127.0.0.1:9477]. `status` and `healthcheck` ask this address.
    #[arg(long, env = "DROVER_LISTEN", global = true)]
    listen: Option<Listen>,
    /// plain: drover places containers itself; swarm: drive Swarm services; auto: swarm
    /// when the engine is an active Swarm manager [default: x-drover.mode, then auto].
    #[arg(long, env = "DROVER_MODE", global = true)]
    mode: Option<config::Mode>,
    /// The project directory's path on the engine's host, when drover cannot find it by
    /// inspecting its own container (rootless engine, another runtime): relative bind
    /// sources, secret and config files resolve under it [default: from drover's mounts
    /// when it runs in a container].
    #[arg(long = "host-project-dir", env = "DROVER_HOST_PROJECT_DIR", value_parser = parse_absolute, global = true)]
    host_project_dir: Option<PathBuf>,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load the config, connect, and keep every service at its target until SIGTERM.
    Run(RunArgs),
    /// Validate the config and print the normalized desired state. Needs no engine.
    Check {
        /// Output format.
        #[arg(long, env = "DROVER_FORMAT", default_value = "yaml")]
        format: CheckFormat,
    },
    /// Connect, observe, and print the actions a reconcile would take; change nothing.
    Plan,
    /// Ask the running daemon (at --listen) for its status and print it as tables.
    Status {
        /// Print the JSON of /status as it is.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 when the running daemon (at --listen) answers /livez, 1 otherwise.
    Healthcheck,
    /// Stop and remove the project's containers and networks on every node (Swarm mode:
    /// its services, networks, secrets and configs), as `docker compose down`; refuses
    /// while a drover acts for the project.
    Down(DownArgs),
    /// Forward connections to the project's services on other nodes (drover starts this
    /// itself, one per node and project network, when a project spans several nodes).
    Ambassador {
        /// Hand these routes (JSON) to the ambassador serving in this container, and exit.
        #[arg(long)]
        push: Option<String>,
        /// Print the routes the ambassador serving in this container has (JSON), and exit.
        #[arg(long, conflicts_with = "push")]
        show: bool,
    },
}

#[derive(Args, Debug)]
struct DownArgs {
    /// Also remove the project's named volumes and its containers' anonymous volumes.
    #[arg(short = 'v', long)]
    volumes: bool,
    /// Go on while a drover acts for the project (it would create everything again).
    #[arg(long)]
    force: bool,
    /// The lease ttl the project's drovers run with: `down` watches the lease for half of
    /// it to see whether one renews it [default: 10s, as `run`].
    #[arg(long, env = "DROVER_LEASE_TTL", value_parser = parse_duration)]
    lease_ttl: Option<Duration>,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Full list of the engine this often, whatever the event stream says [default: 30s].
    #[arg(long, env = "DROVER_RESYNC_INTERVAL", value_parser = parse_duration)]
    resync_interval: Option<Duration>,
    /// Reopen an event stream that stayed silent this long [default: 60s].
    #[arg(long, env = "DROVER_WATCHDOG", value_parser = parse_duration)]
    watchdog: Option<Duration>,
    /// Crash-loop backoff: delay before the second restart, doubling after [default: 1s].
    #[arg(long, env = "DROVER_BACKOFF_INITIAL", value_parser = parse_duration)]
    backoff_initial: Option<Duration>,
    /// Crash-loop backoff cap [default: 60s].
    #[arg(long, env = "DROVER_BACKOFF_MAX", value_parser = parse_duration)]
    backoff_max: Option<Duration>,
    /// A container up this long has its crash history forgotten [default: 30s].
    #[arg(long, env = "DROVER_BACKOFF_RESET", value_parser = parse_duration)]
    backoff_reset: Option<Duration>,
    /// Engine operations in flight at once.
    #[arg(long, env = "DROVER_PARALLEL", default_value_t = 8)]
    parallel: usize,
    /// How often the config files are polled for changes, besides watching their
    /// directories; 0s turns both off (reload on SIGHUP only).
    #[arg(long, env = "DROVER_WATCH_INTERVAL", value_parser = parse_duration, default_value = "1s")]
    watch_interval: Duration,
    /// A node whose pings all fail this long is down; its replicas move to other nodes.
    #[arg(long, env = "DROVER_NODE_DOWN_AFTER", value_parser = parse_duration, default_value = "1500ms")]
    node_down_after: Duration,
    /// Lease against a second drover of the same project, held on a majority of the nodes
    /// (witnesses included): a holder acts at most this long after its last renewal on a
    /// majority; a waiting drover takes over at once when the holder exited on the same
    /// machine, otherwise within about 1.5 times this plus one look. 0s turns the lease
    /// off [default: 10s with one engine; 2s with three nodes or more; off with two
    /// nodes, where a majority is both (add a witness)].
    #[arg(long, env = "DROVER_LEASE_TTL", value_parser = parse_duration)]
    lease_ttl: Option<Duration>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CheckFormat {
    Yaml,
    Json,
}

fn parse_scale(s: &str) -> Result<(String, u32), String> {
    let (name, n) = s
        .split_once('=')
        .ok_or_else(|| format!("{s}: expected SERVICE=N"))?;
    let n = n
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("{s}: the count must be a non-negative integer"))?;
    Ok((name.trim().to_string(), n))
}

fn parse_absolute(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(format!(
            "{s}: expected an absolute path on the engine's host"
        ))
    }
}

/// The flags' durations: the syntax of the Compose files (`1m30s`, `1.5m`, `500ms`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    drover::config::parse_duration(s).map_err(|e| format!("{s}: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.common.log_format.unwrap_or_else(LogFormat::auto);
    let level = cli.common.log_level.as_deref();
    if let Err(e) = telemetry::init(format, level, drover::engine::CLIENT_LOG_TARGET) {
        return fail(e);
    }
    let done = match cli.command {
        Command::Status { json } => status(client_listen(cli.common.listen), json),
        Command::Healthcheck => return healthcheck(client_listen(cli.common.listen)),
        Command::Check { format } => check(&cli.common, format),
        Command::Plan => block_on(plan_command(cli.common)),
        Command::Run(args) => block_on(run(cli.common, args)),
        Command::Down(args) => block_on(down(cli.common, args)),
        Command::Ambassador {
            push: Some(json), ..
        } => drover::mesh::proxy::push(&json),
        Command::Ambassador { show: true, .. } => drover::mesh::proxy::show().map(|routes| {
            println!("{routes}");
        }),
        Command::Ambassador { .. } => block_on(drover::mesh::proxy::serve()),
    };
    done.map_or_else(fail, |()| ExitCode::SUCCESS)
}

/// One line on stderr, exit 1.
fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

/// Run a command that needs the async runtime (the engine commands).
fn block_on(command: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?
        .block_on(command)
}

/// The load options from the flags and the environment: the mode is `--mode` (else
/// `auto`, which accepts what either mode accepts, until the file and the engine are
/// known); host paths only from `--host-project-dir` so far.
fn load_options(common: &Common, env: &HashMap<String, String>) -> LoadOptions {
    LoadOptions {
        files: common.file.clone(),
        project_name: common.project_name.clone(),
        env_files: common.env_file.clone(),
        scale: common.scale.clone(),
        scale_file: common.scale_file.clone(),
        env: env.clone(),
        cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        profiles: common.profile.clone(),
        mode: Some(common.mode.unwrap_or(Mode::Auto)),
        host_paths: match &common.host_project_dir {
            Some(dir) => HostPaths::ProjectDir(dir.clone()),
            None => HostPaths::Same,
        },
    }
}

/// `drover check`: validate and print the desired state. Needs no engine.
fn check(common: &Common, format: CheckFormat) -> Result<(), String> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let start = Startup::load(load_options(common, &env)).map_err(|e| e.to_string())?;
    let mode = common
        .mode
        .or(start.first().settings.mode)
        .unwrap_or(Mode::Auto);
    let host =
        check_host_paths(common, &env, start.first()).unwrap_or(start.options().host_paths.clone());
    let (_, loaded) = start.settle(mode, host).map_err(|e| e.to_string())?;
    for t in &loaded.host_paths {
        eprintln!("host path: {t}");
    }
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let checked = config::Checked::of(&loaded);
    let out = match format {
        CheckFormat::Json => serde_json::to_string_pretty(&checked)
            .map_err(|e| e.to_string())
            .map(|s| s + "\n"),
        CheckFormat::Yaml => checked.to_yaml(),
    };
    print!(
        "{}",
        out.map_err(|e| format!("cannot print the project: {e}"))?
    );
    Ok(())
}

/// What `plan` and `run` start from: the engines, the mode chosen, and the config loaded
/// for both.
struct Setup {
    endpoint: Endpoint,
    /// The nodes that run replicas.
    specs: Vec<NodeSpec>,
    /// Nodes that hold lease votes only (`role: witness`).
    witnesses: Vec<NodeSpec>,
    /// The one engine of the environment (no `x-drover.nodes`), connected.
    engine: Option<connect::Connected>,
    mode: Mode,
    /// Why `auto` chose `mode`.
    why: Option<String>,
    load: LoadOptions,
    loaded: Loaded,
}

/// Load, connect, choose the mode and find the host paths; the project is built again
/// for those when they differ from the first build's (see [`Startup`]).
async fn setup(common: &Common) -> Result<Setup, String> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let start = Startup::load(load_options(common, &env)).map_err(|e| e.to_string())?;
    let first = start.first();
    let endpoint = Endpoint::resolve(&common.connect, &env).map_err(|e| e.to_string())?;
    let specs =
        NodeSpec::from_config(&first.settings.nodes, &endpoint, &env).map_err(|e| e.to_string())?;
    let witnesses = NodeSpec::witnesses(&first.settings.nodes, &env).map_err(|e| e.to_string())?;
    // One engine from the environment: a connection problem at start is the user's to fix
    // now (one line, exit 1). With a node list, nodes that do not answer are down and the
    // others carry on.
    let engine = if first.settings.nodes.is_empty() {
        Some(connect::open(&endpoint).await.map_err(|e| e.to_string())?)
    } else {
        None
    };
    let wanted = common.mode.or(first.settings.mode).unwrap_or(Mode::Auto);
    let manager = engine.as_ref().map(|e| &*e.swarm);
    let (mode, why) = swarm::choose(manager, &endpoint, wanted).await?;
    // Where the engine's host has drover's files (drover in a container).
    let own = engine::own_container_id();
    let host = match &common.host_project_dir {
        Some(dir) => HostPaths::ProjectDir(dir.clone()),
        None => match hostmounts::discover(
            own.as_deref(),
            engine.as_ref().map(|e| &e.client),
            &endpoint,
        )
        .await
        {
            Ok(Some(mounts)) => HostPaths::Mounts(mounts),
            Ok(None) => HostPaths::Same,
            Err(e) => {
                if !first.resolved_paths.is_empty() {
                    tracing::warn!(action = "host-paths", error = %e, "drover runs in a container but cannot read its mounts: relative bind sources are handed to the engine as drover's own paths (--host-project-dir gives the host path of the project directory)");
                }
                HostPaths::Same
            }
        },
    };
    let (load, loaded) = start.settle(mode, host).map_err(|e| e.to_string())?;
    Ok(Setup {
        endpoint,
        specs,
        witnesses,
        engine,
        mode,
        why,
        load,
        loaded,
    })
}

/// `drover plan`: print what a pass would do.
async fn plan_command(common: Common) -> Result<(), String> {
    let mut s = setup(&common).await?;
    for l in plan_autoscale(&mut s).await {
        println!("{l}");
    }
    let lines = match (s.mode, &s.engine) {
        (Mode::Swarm, Some(e)) => swarm::plan_lines(&*e.swarm, &s.endpoint, &s.loaded).await?,
        _ => {
            print_host_paths(&s.loaded);
            preview::plan_lines(&s.specs, &s.loaded).await?
        }
    };
    if s.mode == Mode::Swarm {
        print_host_paths(&s.loaded);
    }
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

/// The autoscaler's view for `drover plan`: its lines, and its targets put in the
/// project planned for.
async fn plan_autoscale(s: &mut Setup) -> Vec<String> {
    if s.loaded.settings.autoscale.is_empty() {
        return Vec::new();
    }
    let project = s.loaded.project.name.clone();
    let replicas: Arc<dyn autoscale::Replicas> = match (s.mode, &s.engine) {
        (Mode::Swarm, Some(e)) => Arc::new(swarm::replicas::SwarmReplicas {
            project,
            swarm: e.swarm.clone(),
            manager: e.client.clone(),
        }),
        _ => {
            let mut engines = Vec::new();
            for spec in &s.specs {
                if let Ok(d) = connect::connect(&spec.endpoint).await {
                    engines.push(engine::Client::from(d));
                }
            }
            Arc::new(autoscale::Listed {
                engines,
                labels: Box::new(move |service| {
                    vec![
                        format!("{}={project}", drover::labels::LABEL_PROJECT),
                        format!("{}={service}", drover::labels::LABEL_SERVICE),
                    ]
                }),
            })
        }
    };
    autoscale::preview(&mut s.loaded, Some(replicas)).await
}

/// `drover down`: take the project down; one line per thing removed, and exit 1 when
/// something could not be.
async fn down(common: Common, args: DownArgs) -> Result<(), String> {
    let s = setup(&common).await?;
    let report = match (s.mode, &s.engine) {
        (Mode::Swarm, Some(e)) => {
            drover::down::swarm(&*e.swarm, &s.endpoint, &s.loaded.project.name).await?
        }
        _ => {
            let all: Vec<NodeSpec> = s.specs.iter().chain(&s.witnesses).cloned().collect();
            let ttl = args
                .lease_ttl
                .unwrap_or(drover::lease::LeaseConfig::for_nodes(all.len()).ttl);
            let opts = drover::down::Options {
                volumes: args.volumes,
                force: args.force,
                lease_watch: ttl / 2 + Duration::from_millis(500),
                lease_ttl: ttl,
            };
            drover::down::plain(&all, &s.loaded.project, opts).await?
        }
    };
    for line in &report.done {
        println!("{line}");
    }
    match report.failed.len() {
        0 => Ok(()),
        _ => Err(report.failed.join("\nerror: ")),
    }
}

/// `drover run`: reconcile until SIGTERM or SIGINT.
async fn run(common: Common, args: RunArgs) -> Result<(), String> {
    let s = setup(&common).await?;
    if let Some(why) = &s.why {
        let m = if s.mode == Mode::Swarm {
            "swarm"
        } else {
            "plain"
        };
        tracing::info!(action = "mode", mode = m, reason = %why, "mode chosen");
    }
    match (s.mode, s.engine) {
        (Mode::Swarm, Some(engine)) => {
            run_swarm(engine, s.endpoint, &args, common.listen, s.load, s.loaded).await
        }
        _ => run_plain(s.specs, s.witnesses, &args, common.listen, s.load, s.loaded).await,
    }
}

/// Plain mode's daemon: drover places the containers.
async fn run_plain(
    specs: Vec<NodeSpec>,
    witnesses: Vec<NodeSpec>,
    args: &RunArgs,
    listen: Option<Listen>,
    load: LoadOptions,
    loaded: Loaded,
) -> Result<(), String> {
    let settings = settings(args, &loaded);
    let telemetry = Telemetry::new(
        &loaded.project.name,
        settings.watchdog * 2,
        engine::own_container_id(),
    );
    let server = serve_http(listen, &telemetry).await?;
    warn_about_setup(&specs, &witnesses, &loaded, &settings);
    let (cancel, reload) = signals();
    let notify = notify::start(
        &loaded.settings.notify,
        &loaded.project.name,
        &telemetry,
        &cancel,
    )?;
    let start = Start {
        load,
        loaded,
        telemetry,
        cancel: cancel.clone(),
        reload,
        notify,
    };
    plain::runtime(specs, witnesses, settings, start)
        .run(cancel)
        .await;
    if let Some(s) = server {
        s.abort();
    }
    Ok(())
}

/// Swarm mode's daemon: drover drives Swarm services on the manager `engine`.
async fn run_swarm(
    engine: connect::Connected,
    endpoint: Endpoint,
    args: &RunArgs,
    listen: Option<Listen>,
    load: LoadOptions,
    loaded: Loaded,
) -> Result<(), String> {
    let settings = swarm::run::Settings {
        watch_interval: args.watch_interval,
        watchdog: args
            .watchdog
            .or(loaded.settings.watchdog)
            .unwrap_or(Settings::default().watchdog),
        ..Default::default()
    };
    // As in plain mode: an event stream counts as fresh for two watchdog periods.
    let telemetry = Telemetry::new(
        &loaded.project.name,
        settings.watchdog * 2,
        engine::own_container_id(),
    );
    let (cancel, reload) = signals();
    let notify = notify::start(
        &loaded.settings.notify,
        &loaded.project.name,
        &telemetry,
        &cancel,
    )?;
    let start = Start {
        load,
        loaded,
        telemetry: telemetry.clone(),
        cancel: cancel.clone(),
        reload,
        notify,
    };
    let runtime = swarm::run::runtime(engine, endpoint, settings, start)?;
    let server = serve_http(listen, &telemetry).await?;
    runtime.run(cancel).await;
    if let Some(s) = server {
        s.abort();
    }
    Ok(())
}

/// Warnings about how drover was set up, said once at start.
fn warn_about_setup(
    specs: &[NodeSpec],
    witnesses: &[NodeSpec],
    loaded: &Loaded,
    settings: &Settings,
) {
    for spec in specs.iter().chain(witnesses) {
        if let connect::Transport::Tcp(addr) = &spec.endpoint.transport {
            tracing::warn!(action = "connect", node = %spec.name, engine = %addr, reason = "plaintext", "engine reached over plaintext tcp: anyone on the path can read and drive it; use TLS (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH)");
        }
    }
    if specs.len() > 1
        && loaded
            .resolved_paths
            .iter()
            .any(|u| u.kind == UseKind::Bind)
    {
        tracing::warn!(
            action = "host-paths",
            reason = "several-nodes",
            "a relative bind source names a path on the node each replica runs on: that node's filesystem must have it"
        );
    }
    let voters = specs.len() + witnesses.len();
    match settings.lease {
        None if voters == 2 => tracing::warn!(
            action = "lease",
            reason = "two-nodes",
            "lease off: with two nodes a majority is both, so one node down would stop every drover; add a third engine as a witness (x-drover.nodes[].role: witness) for HA, or pass --lease-ttl to hold the lease on both; meanwhile a second drover for this project would act at the same time"
        ),
        None => tracing::warn!(
            action = "lease",
            reason = "lease-ttl-0",
            "lease off: a second drover for this project would act at the same time (--lease-ttl turns it on)"
        ),
        Some(cfg) => tracing::info!(
            action = "lease",
            nodes = voters,
            majority = drover::lease::majority(voters),
            ttl_ms = cfg.ttl.as_millis() as u64,
            "acting only under a lease held on a majority of the nodes"
        ),
    }
}

/// The process's signals, for the daemon: SIGTERM and SIGINT cancel the returned token;
/// each SIGHUP is one request on the returned [`Reload`].
fn signals() -> (CancellationToken, Reload) {
    let cancel = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(cancel.clone()));
    let (tx, rx) = tokio::sync::watch::channel(());
    tokio::spawn(reload_on_hangup(tx));
    (cancel, rx)
}

/// Each SIGHUP: ask the config source to load again.
async fn reload_on_hangup(reload: tokio::sync::watch::Sender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!(
            "cannot install the SIGHUP handler; config reloads follow file changes only"
        );
        return;
    };
    while hup.recv().await.is_some() {
        reload.send_replace(());
    }
}

/// Start the HTTP endpoints. An address given with --listen or DROVER_LISTEN that cannot
/// be bound is a start-up error; the default address already taken (another drover on
/// this host) only disables HTTP, loudly.
async fn serve_http(
    listen: Option<Listen>,
    telemetry: &Telemetry,
) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    let explicit = listen.is_some();
    let Listen::At(addr) = listen.unwrap_or_default() else {
        return Ok(None);
    };
    match http::bind(addr).await {
        Ok(l) => {
            let bound = l.local_addr().map_or(addr.to_string(), |a| a.to_string());
            tracing::info!(action = "listen", address = %bound, "serving /livez /readyz /metrics /status");
            Ok(Some(tokio::spawn(http::serve(l, telemetry.clone()))))
        }
        Err(e) if explicit => Err(format!("--listen {addr}: {e}")),
        Err(e) => {
            tracing::error!(action = "listen", address = %addr, error = %e, "HTTP endpoints disabled; choose another address with --listen");
            Ok(None)
        }
    }
}

/// Where `status` and `healthcheck` ask: --listen or DROVER_LISTEN, else the --listen of
/// the drover that is PID 1 in this container, else the default.
fn client_listen(listen: Option<Listen>) -> Listen {
    listen.or_else(http::pid1_listen).unwrap_or_default()
}

fn healthcheck(listen: Listen) -> ExitCode {
    let Some(addr) = listen.client_addr() else {
        eprintln!("unhealthy: HTTP is off (--listen off): nothing to ask");
        return ExitCode::FAILURE;
    };
    match http::get(addr, "/livez", Duration::from_secs(2)) {
        Ok((200, _)) => {
            println!("healthy");
            ExitCode::SUCCESS
        }
        Ok((code, body)) => {
            eprintln!("unhealthy: /livez answered {code}: {}", body.trim());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `drover status`: ask the running daemon and print its answer.
fn status(listen: Listen, json: bool) -> Result<(), String> {
    let Some(addr) = listen.client_addr() else {
        return Err("HTTP is off (--listen off): nothing to ask".into());
    };
    let body = match http::get(addr, "/status", Duration::from_secs(5))? {
        (200, body) => body,
        (code, body) => return Err(format!("{addr}/status answered {code}: {}", body.trim())),
    };
    if json {
        print!("{body}");
        return Ok(());
    }
    let s = serde_json::from_str::<telemetry::status::Status>(&body)
        .map_err(|e| format!("{addr}/status is not a drover status: {e}"))?;
    print!("{}", telemetry::status::render_table(&s));
    Ok(())
}

/// The controller's settings: flags, then `x-drover`, then defaults.
fn settings(args: &RunArgs, loaded: &Loaded) -> Settings {
    let d = Settings::default();
    let x = &loaded.settings;
    Settings {
        resync_interval: args
            .resync_interval
            .or(x.resync_interval)
            .unwrap_or(d.resync_interval),
        watchdog: args.watchdog.or(x.watchdog).unwrap_or(d.watchdog),
        backoff: plan::BackoffConfig {
            initial: args
                .backoff_initial
                .or(x.backoff.initial)
                .unwrap_or(d.backoff.initial),
            max: args.backoff_max.or(x.backoff.max).unwrap_or(d.backoff.max),
            reset_after: args
                .backoff_reset
                .or(x.backoff.reset_after)
                .unwrap_or(d.backoff.reset_after),
        },
        parallel: args.parallel.max(1),
        watch_interval: args.watch_interval,
        node_down_after: args.node_down_after,
        rebalance: x.rebalance,
        lease: match args.lease_ttl {
            Some(ttl) if ttl.is_zero() => None,
            Some(ttl) => Some(drover::lease::LeaseConfig { ttl }),
            // Two nodes: a majority is both (see the warning at start); a witness makes three.
            None if x.nodes.len() == 2 => None,
            None => Some(drover::lease::LeaseConfig::for_nodes(x.nodes.len())),
        },
        credentials: d.credentials,
    }
}

/// `check` in a container without --host-project-dir: drover's mounts, when the engine
/// answers. `None`: nothing to translate (or nobody to ask, which is said on stderr;
/// `check` needs no engine).
fn check_host_paths(
    common: &Common,
    env: &HashMap<String, String>,
    loaded: &Loaded,
) -> Option<HostPaths> {
    let own = engine::own_container_id();
    if common.host_project_dir.is_some() || own.is_none() || loaded.resolved_paths.is_empty() {
        return None;
    }
    let found = Endpoint::resolve(&common.connect, env)
        .map_err(|e| e.to_string())
        .and_then(|ep| {
            let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
            rt.block_on(hostmounts::discover(own.as_deref(), None, &ep))
        });
    match found {
        Ok(None) => None,
        Ok(Some(mounts)) => Some(HostPaths::Mounts(mounts)),
        Err(e) => {
            eprintln!(
                "note: drover runs in a container and cannot ask the engine for its mounts \
                 ({e}): bind sources are shown as drover's own paths"
            );
            None
        }
    }
}

/// The paths handed to the engine as host paths other than drover's own, one a line.
fn print_host_paths(loaded: &Loaded) {
    for t in &loaded.host_paths {
        println!("host path: {t}");
    }
}

/// Cancel on SIGTERM or SIGINT (also as PID 1 in a container, where the kernel only
/// delivers signals a process has handlers for).
async fn shutdown_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop drover with SIGKILL");
        return;
    };
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(action = "shutdown", reason = which, "shutting down");
    cancel.cancel();
    // Whatever is in flight, exit within 2 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    std::process::exit(0);
}
