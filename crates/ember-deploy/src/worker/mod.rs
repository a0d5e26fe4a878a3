//! The Worker daemon: registers with the masters, runs executors and drivers, serves its UI.
//!
//! Spark counterpart: `org.apache.spark.deploy.worker` (`Worker`, `ExecutorRunner`,
//! `DriverRunner`, `WorkerWebUI`). The daemon is a library function: [`run`] (for the CLI, which
//! maps SIGTERM to its token) or [`start`] returning a [`WorkerHandle`] (for tests and
//! `local-cluster`).
//!
//! | module | Spark |
//! |---|---|
//! | [`config`] | `WorkerArguments`, `spark.worker.*` |
//! | [`state`] (pure) | registration, retry schedule, heartbeats of `Worker.scala` |
//! | `endpoint` (+ `endpoint::children`, `bookkeeping`, `lifecycle`, `sync`) | `Worker` (the endpoint), `syncExecutorStateWithMaster` |
//! | [`cleanup`] | `WorkDirCleanup` |
//! | [`command`] | `CommandUtils`, placeholder substitution |
//! | [`executor_runner`], [`driver_runner`] | `ExecutorRunner`, `DriverRunner` |
//! | [`process`] | `ProcessBuilder`, `Utils.terminateProcess` |
//! | [`app_cache`] | the jar fetch of `Utils.fetchFile` |
//! | [`ui`] | `WorkerWebUI`, `WorkerPage`, `LogPage` |
//!
//! ## How a worker starts a process
//!
//! An application's `ApplicationDescription.command` (or a driver's `DriverDescription.command`)
//! names an [`AppBinary`](crate::description::AppBinary) by SHA-256; the worker gets it into
//! `<work dir>/app-binaries/<sha256>` (verified) and runs it with `argv[0]` set to the binary's
//! name, cwd = the executor's (`<work dir>/<app id>/<exec id>`) or driver's
//! (`<work dir>/<driver id>`) directory, and stdout/stderr appended to files there. In the
//! arguments and environment values it replaces, anywhere in the text:
//!
//! | placeholder | executor | driver |
//! |---|---|---|
//! | `{{EXECUTOR_ID}}` | the executor id (`0`, `1`, …) | — |
//! | `{{APP_ID}}` | the application id | — |
//! | `{{HOSTNAME}}` | the worker's host (`ember.worker.host`) | same |
//! | `{{CORES}}` | cores granted | the driver's cores |
//! | `{{MEMORY_MB}}` | memory granted, MiB | the driver's memory |
//! | `{{WORKER_URL}}` | `ember://Worker@host:port` | same |
//!
//! It adds `EMBER_LOG_URL_STDOUT` / `EMBER_LOG_URL_STDERR` (the log pages on this worker's UI),
//! for executors `EMBER_EXECUTOR_DIRS` (the application's scratch directory on this worker,
//! removed when the application finishes), and, when `ember.authenticate` is on, the worker's
//! own `EMBER_AUTHENTICATE_SECRET` (a secret never travels in a description; see
//! [`command::child_environment`]); the rest of the environment is the worker's, plus the
//! command's own variables.

pub mod app_cache;
mod bookkeeping;
pub mod cleanup;
pub mod command;
pub mod config;
pub mod driver_runner;
mod endpoint;
pub mod executor_runner;
mod lifecycle;
pub mod process;
pub mod state;
mod sync;
pub mod ui;

use std::sync::Arc;

use ember_rpc::{EmberConf, EndpointRef, RpcAddress, RpcEnv, RpcEnvConfig, RpcError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::WorkerConfig;
pub use process::{InMemoryLauncher, OsProcessLauncher, ProcessLauncher};

use crate::error::DeployError;
use crate::ids::WorkerId;
use crate::messages::{WORKER_ENDPOINT, WorkerMessage, WorkerStateResponse};
use endpoint::WorkerEndpoint;
use lifecycle::ExitSignal;

/// The name of the worker's RpcEnv (for logs).
pub const SYSTEM_NAME: &str = "ember-worker";

/// Runs a worker until `shutdown` is cancelled (then kills its executors and drivers and returns
/// `Ok`) or until it stops by itself (no master answered, registration refused, …: the error).
pub async fn run(
    config: WorkerConfig,
    conf: Arc<EmberConf>,
    shutdown: CancellationToken,
) -> Result<(), DeployError> {
    let worker = start(config, conf).await?;
    tokio::select! {
        _ = shutdown.cancelled() => info!("shutting down the worker"),
        _ = worker.exited() => {}
    }
    worker.shutdown().await
}

/// Starts a worker: its RpcEnv (`ember-worker`), web UI and endpoint. Registration with the
/// masters has begun when this returns.
pub async fn start(
    config: WorkerConfig,
    conf: Arc<EmberConf>,
) -> Result<WorkerHandle, DeployError> {
    start_with_launcher(config, conf, Arc::new(OsProcessLauncher)).await
}

/// [`start`] with another process launcher (tests use an [`InMemoryLauncher`]).
pub async fn start_with_launcher(
    config: WorkerConfig,
    conf: Arc<EmberConf>,
    launcher: Arc<dyn ProcessLauncher>,
) -> Result<WorkerHandle, DeployError> {
    let rpc_config = RpcEnvConfig::from_conf(SYSTEM_NAME, &config.host, config.port, &conf)?;
    let child_env = command::child_environment(&conf)?;
    let env = RpcEnv::create(rpc_config).await?;
    match start_in(&env, config, launcher, child_env).await {
        Ok(handle) => Ok(handle),
        Err(e) => {
            env.shutdown().await;
            Err(e)
        }
    }
}

async fn start_in(
    env: &RpcEnv,
    config: WorkerConfig,
    launcher: Arc<dyn ProcessLauncher>,
    child_env: Vec<(String, String)>,
) -> Result<WorkerHandle, DeployError> {
    let listener = crate::web::bind("worker web UI", &config.host, config.ui_port).await?;
    let ui_port = listener
        .local_addr()
        .map_err(|source| DeployError::Bind {
            what: "worker web UI",
            address: format!("{}:{}", config.host, config.ui_port),
            source,
        })?
        .port();
    let web_ui_url = format!("http://{}:{ui_port}", config.host);
    let port = env.address().port;
    let worker_id = WorkerId::generate(crate::ids::now_millis(), &config.host, port);
    info!(
        "Starting Ember worker {}:{port} with {} cores, {} RAM",
        config.host,
        config.cores,
        crate::web::format_mb(u64::from(config.memory_mb))
    );
    info!(%worker_id, work_dir = %config.work_dir.display(), web_ui = %web_ui_url,
        masters = %config.masters_text(), "worker settings");
    let exit = Arc::new(ExitSignal::default());
    let endpoint = WorkerEndpoint::new(
        Arc::new(config),
        worker_id.clone(),
        port,
        web_ui_url.clone(),
        launcher,
        exit.clone(),
        child_env,
    );
    let worker_ref = match env.setup_endpoint(WORKER_ENDPOINT, endpoint).await {
        Ok(worker_ref) => worker_ref,
        // `on_start` leaves its typed error (e.g. the work dir it could not create) behind.
        Err(e) => return Err(exit.take().unwrap_or(DeployError::Rpc(e))),
    };
    let ui_shutdown = env.shutdown_token().child_token();
    let ui_task = crate::web::serve(
        listener,
        ui::router(worker_ref.clone()),
        ui_shutdown.clone(),
    );
    Ok(WorkerHandle {
        env: env.clone(),
        worker_ref,
        worker_id,
        web_ui_url,
        exit,
        ui_shutdown,
        ui_task,
    })
}

/// A running worker.
#[derive(Debug)]
pub struct WorkerHandle {
    env: RpcEnv,
    worker_ref: EndpointRef<WorkerMessage>,
    worker_id: WorkerId,
    web_ui_url: String,
    exit: Arc<ExitSignal>,
    ui_shutdown: CancellationToken,
    ui_task: JoinHandle<()>,
}

impl WorkerHandle {
    /// The worker's id.
    pub fn worker_id(&self) -> &WorkerId {
        &self.worker_id
    }

    /// Where its RpcEnv listens.
    pub fn rpc_address(&self) -> &RpcAddress {
        self.env.address()
    }

    /// Its web UI, `http://host:port`.
    pub fn web_ui_url(&self) -> &str {
        &self.web_ui_url
    }

    /// A ref to its endpoint.
    pub fn worker_ref(&self) -> &EndpointRef<WorkerMessage> {
        &self.worker_ref
    }

    /// Its RpcEnv.
    pub fn env(&self) -> &RpcEnv {
        &self.env
    }

    /// What its UI shows: executors, drivers, resources, master.
    pub async fn state(&self) -> Result<WorkerStateResponse, RpcError> {
        self.worker_ref.ask(WorkerMessage::RequestWorkerState).await
    }

    /// Resolves when the worker stopped by itself (gave up registering, was refused, could not
    /// report to its master). [`shutdown`](Self::shutdown) then returns why.
    pub async fn exited(&self) {
        self.exit.wait().await;
    }

    /// Stops the worker: kills its executors and drivers (SIGTERM, then SIGKILL after the grace
    /// period), stops the UI and the RpcEnv. Returns the error that made it stop by itself, if
    /// any.
    pub async fn shutdown(self) -> Result<(), DeployError> {
        self.ui_shutdown.cancel();
        self.env.shutdown().await;
        let _ = self.ui_task.await;
        match self.exit.take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Waits until the worker stops by itself, then shuts it down and returns why.
    pub async fn join(self) -> Result<(), DeployError> {
        self.exited().await;
        self.shutdown().await
    }
}
