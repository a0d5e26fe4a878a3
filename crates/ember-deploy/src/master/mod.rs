//! The Master daemon: tracks workers, places applications' executors and cluster-mode drivers,
//! and recovers its predecessor's state.
//!
//! Spark counterpart: `org.apache.spark.deploy.master` (`Master`, `MasterArguments`,
//! `WorkerInfo`, `ApplicationInfo`, `PersistenceEngine`, `LeaderElectionAgent`, `MasterWebUI`).
//!
//! | module | what | Spark |
//! |---|---|---|
//! | [`config`] | keys and the validated [`MasterConfig`] | `Deploy.scala`, `MasterArguments` |
//! | [`info`](mod@info) | records of workers, applications, executors, drivers | `WorkerInfo`, `ApplicationInfo`, … |
//! | [`state`] | the pure state machine (inputs + `now` → effects) | `Master` bookkeeping |
//! | [`scheduling`] | executor and driver placement, pure | `scheduleExecutorsOnWorkers`, … |
//! | [`persistence`] | recovery records and engines | `PersistenceEngine` & co |
//! | [`leader_election`] | who leads | `LeaderElectionAgent` & co |
//! | [`recovery_mode`] | both of them for `ember.deploy.recoveryMode` | `StandaloneRecoveryModeFactory` |
//! | `endpoint` | the RPC endpoint performing the effects | `Master` I/O |
//! | [`ui`] | HTML and JSON | `MasterWebUI`, `JsonProtocol` |
//!
//! A daemon is a library function: [`run`] starts a master, waits for the shutdown token (or for
//! the master to stop by itself) and shuts it down; [`start`] returns a [`MasterHandle`] for
//! tests and embedding (`local-cluster`).

pub mod config;
mod endpoint;
pub mod info;
pub mod leader_election;
pub mod persistence;
pub mod recovery_mode;
pub mod scheduling;
pub mod state;
pub mod ui;

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use ember_rpc::{EmberConf, EndpointRef, RpcAddress, RpcEnv, RpcEnvConfig};

pub use config::{MasterConfig, RecoveryConfig};
use endpoint::{MasterEndpoint, StopSignal};
use leader_election::{LeaderElectionAgent, MasterCandidate};
use persistence::PersistenceEngine;
use recovery_mode::{EngineRecoveryFactory, RecoveryModeFactory};
use state::{Master, MasterIdentity};

use crate::error::DeployError;
use crate::messages::{MASTER_ENDPOINT, MasterMessage};
use crate::web;

/// A running master.
#[derive(Debug)]
pub struct MasterHandle {
    env: RpcEnv,
    master: EndpointRef<MasterMessage>,
    web_ui_url: String,
    ui_shutdown: CancellationToken,
    ui_task: tokio::task::JoinHandle<()>,
    leader: Box<dyn LeaderElectionAgent>,
    stop: StopSignal,
}

/// Starts a master with the persistence engine and leader election of `config.recovery`: RPC
/// endpoint, web UI, leader election. Returns once it accepts connections (it leads right
/// after, asynchronously).
pub async fn start(
    config: MasterConfig,
    conf: Arc<EmberConf>,
) -> Result<MasterHandle, DeployError> {
    let factory = recovery_mode::factory(&config.recovery);
    start_with_recovery(config, conf, &*factory).await
}

/// [`start`] with a given persistence engine and a single master leading (tests use
/// [`MemoryPersistenceEngine`](persistence::MemoryPersistenceEngine)).
pub async fn start_with_persistence(
    config: MasterConfig,
    conf: Arc<EmberConf>,
    persistence: Arc<dyn PersistenceEngine>,
) -> Result<MasterHandle, DeployError> {
    start_with_recovery(config, conf, &EngineRecoveryFactory::new(persistence)).await
}

/// [`start`] with the persistence engine and leader election agent `recovery` makes.
pub async fn start_with_recovery(
    config: MasterConfig,
    conf: Arc<EmberConf>,
    recovery: &dyn RecoveryModeFactory,
) -> Result<MasterHandle, DeployError> {
    let persistence = recovery.create_persistence_engine()?;
    let began = Instant::now();
    let rpc_config =
        RpcEnvConfig::from_conf("ember-master", config.host.clone(), config.port, &conf)?;
    let env = RpcEnv::create(rpc_config).await?;
    let listener = match web::bind("master web UI", &config.host, config.web_ui_port).await {
        Ok(listener) => listener,
        Err(e) => {
            env.shutdown().await;
            return Err(e);
        }
    };
    let ui_port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(config.web_ui_port);
    let identity = MasterIdentity {
        host: env.address().host.clone(),
        port: env.address().port,
        web_ui_url: format!("http://{}", RpcAddress::new(config.host.clone(), ui_port)),
    };
    let web_ui_url = identity.web_ui_url.clone();
    let seed = std::collections::hash_map::RandomState::new().hash_one(began);
    let stop = StopSignal::default();
    let endpoint = MasterEndpoint::new(
        Master::new(config, identity, seed),
        persistence,
        stop.clone(),
    );
    let master = match env.setup_endpoint(MASTER_ENDPOINT, endpoint).await {
        Ok(master) => master,
        Err(e) => {
            env.shutdown().await;
            return Err(e.into());
        }
    };
    let ui_shutdown = CancellationToken::new();
    let ui_task = web::serve(listener, ui::router(master.clone()), ui_shutdown.clone());
    let candidate = Arc::new(MasterCandidate::new(master.clone()));
    let leader = match recovery.create_leader_election_agent(candidate) {
        Ok(leader) => leader,
        Err(e) => {
            ui_shutdown.cancel();
            let _ = ui_task.await;
            env.shutdown().await;
            return Err(e);
        }
    };
    info!(url = %env.address().to_ember_url(), web_ui = %web_ui_url,
        startup_ms = began.elapsed().as_secs_f64() * 1000.0, "master listening");
    Ok(MasterHandle {
        env,
        master,
        web_ui_url,
        ui_shutdown,
        ui_task,
        leader,
        stop,
    })
}

impl MasterHandle {
    /// Where the master's RpcEnv listens.
    pub fn rpc_address(&self) -> &RpcAddress {
        self.env.address()
    }

    /// `ember://host:port`, what workers and applications are given.
    pub fn master_url(&self) -> String {
        self.env.address().to_ember_url()
    }

    /// `http://host:port` of the web UI.
    pub fn web_ui_url(&self) -> &str {
        &self.web_ui_url
    }

    /// A ref to the master endpoint.
    pub fn master_ref(&self) -> &EndpointRef<MasterMessage> {
        &self.master
    }

    /// Waits until the master stops by itself (leadership revoked, recovery state unreadable)
    /// and returns why. Never returns while the master runs normally.
    pub async fn stopped(&self) -> DeployError {
        self.stop.wait().await
    }

    /// Stops the master: leader election, web UI, endpoint and RpcEnv (connections closed).
    pub async fn shutdown(mut self) {
        self.leader.stop();
        self.ui_shutdown.cancel();
        let mut ui_task = self.ui_task;
        if tokio::time::timeout(Duration::from_secs(5), &mut ui_task)
            .await
            .is_err()
        {
            warn!("the web UI did not stop in time; aborting it");
            ui_task.abort();
        }
        self.env.shutdown().await;
        info!("master stopped");
    }
}

/// Runs a master until `shutdown` is cancelled (Ok) or the master stops by itself (Err), then
/// shuts it down. The `ember master` command parses its arguments, installs SIGTERM → `shutdown`
/// and calls this.
pub async fn run(
    config: MasterConfig,
    conf: Arc<EmberConf>,
    shutdown: CancellationToken,
) -> Result<(), DeployError> {
    let handle = start(config, conf).await?;
    let outcome = tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        error = handle.stopped() => Err(error),
    };
    handle.shutdown().await;
    outcome
}

/// Every configuration key the master reads (its own, the shared ones, and the RPC layer's).
pub fn config_entries() -> Vec<ember_rpc::ConfigEntryDoc> {
    let mut entries = config::config_entries();
    entries.extend(crate::config::config_entries());
    entries.extend(ember_rpc::env::config_entries());
    entries
}
