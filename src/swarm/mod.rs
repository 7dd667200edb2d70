//! Swarm mode: when the endpoint is a Swarm manager, drover drives Swarm services the way
//! `docker stack deploy` does and lets Swarm place and reschedule the tasks.
//!
//! - [`convert`]: the desired project -> service and network specs (pure).
//! - [`objects`]: secrets and configs: reuse, create under a new name when the content
//!   changed, remove when unused (pure).
//! - [`diff`]: desired specs + Swarm's services -> create / update / scale / remove, and
//!   project networks to remove (pure).
//! - [`report`]: services, tasks and nodes -> desired vs running per service and per node,
//!   with Swarm's reason for every task that does not run (pure).
//! - [`run`]: the controller: list, plan, apply, watch service and node events (with an
//!   idle watchdog), reload, record into the telemetry (`/metrics`, `/status`).

pub mod convert;
pub mod diff;
pub mod objects;
pub mod replicas;
pub mod report;
pub mod run;

use crate::config::Mode;
use crate::engine::connect::{Endpoint, explain};
use crate::engine::model::LocalNodeState;
use crate::engine::{EngineError, SwarmEngine};

/// The engine's place in a swarm, from `/info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// `inactive`, `pending`, `active`, `error`, `locked`.
    pub state: String,
    /// The engine can manage the swarm (a manager).
    pub manager: bool,
}

impl Role {
    pub fn active_manager(&self) -> bool {
        self.state == "active" && self.manager
    }
}

/// Ask the engine whether it is a swarm manager.
pub async fn role(engine: &dyn SwarmEngine) -> Result<Role, EngineError> {
    let swarm = engine.swarm_info().await?;
    Ok(Role {
        state: swarm
            .local_node_state
            .unwrap_or(LocalNodeState::INACTIVE)
            .to_string(),
        manager: swarm.control_available.unwrap_or(false),
    })
}

/// What `auto` resolves to for an engine in `role`: swarm on an active manager.
pub fn resolve(mode: Mode, role: Option<&Role>) -> Mode {
    match mode {
        Mode::Auto if role.is_some_and(Role::active_manager) => Mode::Swarm,
        Mode::Auto => Mode::Plain,
        m => m,
    }
}

/// Decide the mode; with `auto`, also why (to log at start). An error names what to fix.
/// `manager`: the one engine, or `None` when `x-drover.nodes` lists engines (then the mode
/// is plain).
pub async fn choose(
    manager: Option<&dyn SwarmEngine>,
    engine: &Endpoint,
    mode: Mode,
) -> Result<(Mode, Option<String>), String> {
    let Some(manager) = manager else {
        return match mode {
            Mode::Swarm => Err(
                "x-drover.nodes lists engines for plain mode; in swarm mode drover talks to one \
                 Swarm manager (DOCKER_HOST) and Swarm places the tasks: remove x-drover.nodes \
                 or use --mode plain"
                    .into(),
            ),
            Mode::Auto => Ok((
                Mode::Plain,
                Some("auto: x-drover.nodes lists the engines".into()),
            )),
            Mode::Plain => Ok((Mode::Plain, None)),
        };
    };
    if mode == Mode::Plain {
        return Ok((Mode::Plain, None));
    }
    let role = role(manager).await.map_err(|e| explain(engine, &e))?;
    let chosen = resolve(mode, Some(&role));
    if mode == Mode::Swarm && !role.active_manager() {
        return Err(format!(
            "--mode swarm: the engine at {} is not an active Swarm manager (swarm state: {}{}); \
             run `docker swarm init` there, point DOCKER_HOST at a manager, or use --mode plain",
            engine.url(),
            role.state,
            if role.state == "active" {
                ", worker"
            } else {
                ""
            }
        ));
    }
    let why = (mode == Mode::Auto).then(|| {
        format!(
            "auto: the engine's swarm state is {}{}",
            role.state,
            if role.manager { " (manager)" } else { "" }
        )
    });
    Ok((chosen, why))
}

/// `drover plan` in swarm mode: the lines to print.
pub async fn plan_lines(
    manager: &dyn SwarmEngine,
    engine: &Endpoint,
    loaded: &crate::config::Loaded,
) -> Result<Vec<String>, String> {
    let (desired, _) = run::desired(loaded)?;
    let mut out = run::plan_lines(manager, &desired)
        .await
        .map_err(|e| explain(engine, &e))?;
    if out.is_empty() {
        out.push(format!(
            "nothing to do: the Swarm services of project {} match the file",
            loaded.project.name
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Kind;
    use crate::engine::connect::ConnectArgs;
    use crate::engine::model::SwarmInfo;
    use crate::engine::swarm::fake::{FakeSwarm, State};

    fn manager(state: Option<LocalNodeState>, control: Option<bool>) -> FakeSwarm {
        FakeSwarm::new(State {
            info: SwarmInfo {
                local_node_state: state,
                control_available: control,
                ..Default::default()
            },
            ..Default::default()
        })
    }

    fn endpoint() -> Endpoint {
        let args = ConnectArgs {
            host: Some("tcp://10.0.0.1:2375".into()),
            ..Default::default()
        };
        Endpoint::resolve(&args, &Default::default()).unwrap()
    }

    #[tokio::test]
    async fn role_reads_the_swarm_state_and_whether_it_manages() {
        let r = role(&manager(Some(LocalNodeState::ACTIVE), Some(true)))
            .await
            .unwrap();
        assert!(r.active_manager());
        let r = role(&manager(Some(LocalNodeState::ACTIVE), None))
            .await
            .unwrap();
        assert_eq!((r.state.as_str(), r.manager), ("active", false));
        let r = role(&manager(None, None)).await.unwrap();
        assert_eq!((r.state.as_str(), r.manager), ("inactive", false));
    }

    #[tokio::test]
    async fn choose_asks_the_engine_only_when_swarm_is_possible() {
        let ep = endpoint();
        let active = manager(Some(LocalNodeState::ACTIVE), Some(true));
        let (mode, why) = choose(Some(&active), &ep, Mode::Auto).await.unwrap();
        assert_eq!(mode, Mode::Swarm);
        assert_eq!(
            why.as_deref(),
            Some("auto: the engine's swarm state is active (manager)")
        );
        assert_eq!(
            choose(Some(&active), &ep, Mode::Swarm).await.unwrap(),
            (Mode::Swarm, None)
        );
        let plain = manager(None, None);
        assert_eq!(
            choose(Some(&plain), &ep, Mode::Plain).await.unwrap(),
            (Mode::Plain, None)
        );
        assert!(plain.calls().is_empty());
        let (mode, _) = choose(Some(&plain), &ep, Mode::Auto).await.unwrap();
        assert_eq!(mode, Mode::Plain);
        let worker = manager(Some(LocalNodeState::ACTIVE), Some(false));
        let e = choose(Some(&worker), &ep, Mode::Swarm).await.unwrap_err();
        assert!(
            e.starts_with(
                "--mode swarm: the engine at tcp://10.0.0.1:2375 is not an active Swarm manager \
                 (swarm state: active, worker)"
            ),
            "{e}"
        );
        assert!(choose(None, &ep, Mode::Swarm).await.is_err());
        assert_eq!(choose(None, &ep, Mode::Auto).await.unwrap().0, Mode::Plain);
    }

    #[tokio::test]
    async fn an_engine_error_while_choosing_is_explained() {
        let failing = FakeSwarm::new(State {
            fail: Some(EngineError::new(Kind::Api(500), "boom")),
            ..Default::default()
        });
        let e = choose(Some(&failing), &endpoint(), Mode::Auto)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            "the Docker engine at tcp://10.0.0.1:2375 answered 500: boom"
        );
    }
}
