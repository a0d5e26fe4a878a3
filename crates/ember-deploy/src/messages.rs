//! The cluster manager's protocol: one enum per direction, with Spark's message names.
//!
//! Spark counterpart: `DeployMessages` (and the master-private `MasterMessages`). Each daemon
//! endpoint receives one enum that wraps the directions it listens to; `From` impls let senders
//! write `master.send(WorkerToMaster::Heartbeat { .. })`. Variants marked `#[serde(skip)]` are
//! process-internal (timers, runner threads): they can only be sent through a local ref and never
//! decode from the network.
//!
//! Kinds: everything is one-way (`send`) unless marked "ask", whose reply type is named.

use serde::{Deserialize, Serialize};

use crate::description::{ApplicationDescription, DriverDescription, ExecutorDescription};
use crate::ids::{AppId, DriverId, ExecutorId, WorkerId};
use crate::state::{ApplicationState, DriverState, ExecutorState, MasterState, WorkerState};
use ember_rpc::{EndpointRef, RpcAddress};

/// Name of the Master endpoint.
pub const MASTER_ENDPOINT: &str = "Master";
/// Name of the Worker endpoint.
pub const WORKER_ENDPOINT: &str = "Worker";
/// Name of the application client endpoint in a driver.
pub const APP_CLIENT_ENDPOINT: &str = "AppClient";
/// Name of the endpoint that serves application binaries (in a driver or submit client).
pub const FILE_SERVER_ENDPOINT: &str = "FileServer";

/// Everything the Master endpoint receives.
#[derive(Debug, Serialize, Deserialize)]
pub enum MasterMessage {
    /// From workers.
    Worker(WorkerToMaster),
    /// From application drivers.
    App(AppToMaster),
    /// From submission clients, UIs and tools (all asks).
    Client(ClientToMaster),
    /// Timers and leader election, inside the master process.
    #[serde(skip)]
    Internal(MasterInternal),
}

/// Everything the Worker endpoint receives.
// Messages are moved once into an inbox; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize, Deserialize)]
pub enum WorkerMessage {
    /// From the master.
    Master(MasterToWorker),
    /// Ask (from the web UI or tools) → [`WorkerStateResponse`].
    RequestWorkerState,
    /// Timers and runners, inside the worker process.
    #[serde(skip)]
    Internal(WorkerInternal),
}

/// Everything an application's client endpoint (in its driver) receives.
#[derive(Debug, Serialize, Deserialize)]
pub enum AppClientMessage {
    /// From the master.
    Master(MasterToApp),
    /// Inside the driver process.
    #[serde(skip)]
    Internal(AppClientInternal),
}

/// Worker → Master.
#[derive(Debug, Serialize, Deserialize)]
pub enum WorkerToMaster {
    /// Sent to every master at start-up and when the master connection is lost; answered by
    /// [`MasterToWorker::RegisteredWorker`], [`MasterToWorker::RegisterWorkerFailed`] or
    /// [`MasterToWorker::MasterInStandby`] sent to `worker`.
    RegisterWorker {
        /// The worker's id.
        id: WorkerId,
        /// Host the worker's RpcEnv listens on.
        host: String,
        /// Port the worker's RpcEnv listens on.
        port: u16,
        /// The worker endpoint.
        worker: EndpointRef<WorkerMessage>,
        /// Cores offered.
        cores: u32,
        /// Memory offered, in MiB.
        memory_mb: u32,
        /// The worker's web UI.
        web_ui_url: String,
        /// The master address the worker used (it may differ from the master's own idea).
        master_address: RpcAddress,
    },
    /// Every `ember.worker.timeout / 4`.
    Heartbeat {
        /// The worker's id.
        worker_id: WorkerId,
        /// The worker endpoint (for [`MasterToWorker::ReconnectWorker`]).
        worker: EndpointRef<WorkerMessage>,
    },
    /// Ask → `bool` (always `true`; the worker retries until the master has it).
    ExecutorStateChanged {
        /// The executor's application.
        app_id: AppId,
        /// The executor.
        exec_id: ExecutorId,
        /// Its new state.
        state: ExecutorState,
        /// Why, for failures and exits.
        message: Option<String>,
        /// The process exit status, when it exited.
        exit_status: Option<i32>,
    },
    /// A driver run by this worker changed state.
    DriverStateChanged {
        /// The driver.
        driver_id: DriverId,
        /// Its new state.
        state: DriverState,
        /// The error, when it failed.
        exception: Option<String>,
    },
    /// The answer to [`MasterToWorker::MasterChanged`]: what this worker runs.
    WorkerSchedulerStateResponse {
        /// The worker's id.
        id: WorkerId,
        /// Its executors.
        executors: Vec<ExecutorDescription>,
        /// Its drivers.
        driver_ids: Vec<DriverId>,
    },
    /// Sent after every successful registration; the master kills what it does not know.
    WorkerLatestState {
        /// The worker's id.
        id: WorkerId,
        /// Its executors.
        executors: Vec<ExecutorDescription>,
        /// Its drivers.
        driver_ids: Vec<DriverId>,
    },
    /// The worker is being drained (it got a decommission signal).
    WorkerDecommissioning {
        /// The worker's id.
        id: WorkerId,
        /// The worker endpoint.
        worker: EndpointRef<WorkerMessage>,
    },
}

/// Master → Worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum MasterToWorker {
    /// Registration accepted.
    RegisteredWorker {
        /// The master endpoint.
        master: EndpointRef<MasterMessage>,
        /// The master's web UI.
        master_web_ui_url: String,
        /// The master address the worker registered through.
        master_address: RpcAddress,
        /// The id was already registered (a repeated registration); only logged.
        duplicate: bool,
    },
    /// Registration refused; the worker exits if it was not registered yet.
    RegisterWorkerFailed {
        /// Why.
        message: String,
    },
    /// The master is a standby; the worker keeps trying the others.
    MasterInStandby,
    /// The master does not know this worker (any more): register again.
    ReconnectWorker {
        /// The master's URL.
        master_url: String,
    },
    /// Start an executor.
    LaunchExecutor {
        /// The master's URL; ignored unless it is the active master.
        master_url: String,
        /// The application.
        app_id: AppId,
        /// The executor's id.
        exec_id: ExecutorId,
        /// The application's description (its command).
        app_desc: ApplicationDescription,
        /// Cores granted.
        cores: u32,
        /// Memory granted, in MiB.
        memory_mb: u32,
    },
    /// Stop an executor.
    KillExecutor {
        /// The master's URL; ignored unless it is the active master.
        master_url: String,
        /// The application.
        app_id: AppId,
        /// The executor.
        exec_id: ExecutorId,
    },
    /// Start a driver (cluster deploy mode).
    LaunchDriver {
        /// The driver's id.
        driver_id: DriverId,
        /// What to run.
        driver_desc: DriverDescription,
    },
    /// Stop a driver.
    KillDriver {
        /// The driver.
        driver_id: DriverId,
    },
    /// The application ended: its local directories may go once no executor uses them.
    ApplicationFinished {
        /// The application.
        app_id: AppId,
    },
    /// A new master leads; answer with [`WorkerToMaster::WorkerSchedulerStateResponse`].
    MasterChanged {
        /// The new master.
        master: EndpointRef<MasterMessage>,
        /// Its web UI.
        master_web_ui_url: String,
    },
    /// Stop taking executors (decommission).
    DecommissionWorker,
}

/// Application client (driver) → Master.
#[derive(Debug, Serialize, Deserialize)]
pub enum AppToMaster {
    /// Register; answered by [`MasterToApp::RegisteredApplication`]. Ignored by a standby.
    RegisterApplication {
        /// What the application asks for.
        app_desc: ApplicationDescription,
        /// The driver's AppClient endpoint.
        driver: EndpointRef<AppClientMessage>,
    },
    /// The application is done.
    UnregisterApplication {
        /// The application.
        app_id: AppId,
    },
    /// The answer to [`MasterToApp::MasterChanged`].
    MasterChangeAcknowledged {
        /// The application.
        app_id: AppId,
    },
    /// Ask → `bool`: set the total number of executors wanted (dynamic allocation).
    RequestExecutors {
        /// The application.
        app_id: AppId,
        /// The total wanted.
        requested_total: u32,
    },
    /// Ask → `bool`: kill these executors.
    KillExecutors {
        /// The application.
        app_id: AppId,
        /// The executors.
        executor_ids: Vec<ExecutorId>,
    },
}

/// Master → application client (driver).
#[derive(Debug, Serialize, Deserialize)]
pub enum MasterToApp {
    /// Registration accepted.
    RegisteredApplication {
        /// The id given to the application.
        app_id: AppId,
        /// The master endpoint.
        master: EndpointRef<MasterMessage>,
    },
    /// An executor was granted (not yet started).
    ExecutorAdded {
        /// Its id.
        id: ExecutorId,
        /// The worker starting it.
        worker_id: WorkerId,
        /// The worker's `host:port`.
        host_port: String,
        /// Cores granted.
        cores: u32,
        /// Memory granted, in MiB.
        memory_mb: u32,
    },
    /// An executor changed state.
    ExecutorUpdated {
        /// Its id.
        id: ExecutorId,
        /// Its new state.
        state: ExecutorState,
        /// Why.
        message: Option<String>,
        /// The exit status, when it exited.
        exit_status: Option<i32>,
        /// Set when the worker was lost or decommissioned.
        worker_host: Option<String>,
    },
    /// The master removed the application (failed or killed); the driver should stop.
    ApplicationRemoved {
        /// The final state's name.
        message: String,
    },
    /// A worker was lost.
    WorkerRemoved {
        /// The worker.
        id: WorkerId,
        /// Its host.
        host: String,
        /// Why.
        message: String,
    },
    /// A new master leads; answer with [`AppToMaster::MasterChangeAcknowledged`].
    MasterChanged {
        /// The new master.
        master: EndpointRef<MasterMessage>,
        /// Its web UI.
        master_web_ui_url: String,
    },
}

/// Submission clients, UIs and tools → Master. All are asks; the reply type is named.
#[derive(Debug, Serialize, Deserialize)]
pub enum ClientToMaster {
    /// → [`SubmitDriverResponse`].
    RequestSubmitDriver {
        /// What to run.
        driver_desc: DriverDescription,
    },
    /// → [`KillDriverResponse`].
    RequestKillDriver {
        /// The driver.
        driver_id: DriverId,
    },
    /// → [`KillAllDriversResponse`].
    RequestKillAllDrivers,
    /// → [`DriverStatusResponse`].
    RequestDriverStatus {
        /// The driver.
        driver_id: DriverId,
    },
    /// → `bool`.
    RequestClearCompletedDriversAndApps,
    /// → `bool`: whether the master is not a standby.
    RequestReadyz,
    /// → [`MasterStateResponse`].
    RequestMasterState,
    /// → `bool`: kill an application (from the web UI).
    RequestKillApplication {
        /// The application.
        app_id: AppId,
    },
    /// → `u32`: decommission the workers on these hosts; the count of workers affected.
    DecommissionWorkersOnHosts {
        /// Host names (compared case-insensitively).
        hosts: Vec<String>,
    },
}

/// Master-internal messages: timers and leader election.
#[derive(Debug)]
pub enum MasterInternal {
    /// Timer: mark workers without heartbeats DEAD, cull old DEAD ones.
    CheckForWorkerTimeOut,
    /// Timer: end recovery, removing what did not answer.
    CompleteRecovery,
    /// This master now leads.
    ElectedLeader,
    /// This master no longer leads.
    RevokedLeadership,
}

/// Worker-internal messages: timers and runner reports.
#[derive(Debug)]
pub enum WorkerInternal {
    /// Timer: send a heartbeat if connected.
    SendHeartbeat,
    /// Timer: retry registration.
    ReregisterWithMaster,
    /// Timer: remove old application directories.
    WorkDirCleanup,
    /// An executor runner reports a state change.
    ExecutorStateChanged {
        /// The application.
        app_id: AppId,
        /// The executor.
        exec_id: ExecutorId,
        /// The new state.
        state: ExecutorState,
        /// Why.
        message: Option<String>,
        /// The exit status.
        exit_status: Option<i32>,
    },
    /// A driver runner reports a state change.
    DriverStateChanged {
        /// The driver.
        driver_id: DriverId,
        /// The new state.
        state: DriverState,
        /// The error.
        exception: Option<String>,
    },
    /// The master never acknowledged an executor state change: the worker must exit (Spark's
    /// `syncExecutorStateWithMaster` gives up with `System.exit(1)`).
    ExecutorStateSyncFailed {
        /// The application.
        app_id: AppId,
        /// The executor.
        exec_id: ExecutorId,
        /// The state that was being reported.
        state: ExecutorState,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        error: ember_rpc::RpcError,
    },
}

/// AppClient-internal messages.
#[derive(Debug)]
pub enum AppClientInternal {
    /// Timer: retry registration with the masters.
    RetryRegistration,
    /// Unregister and stop.
    Stop,
    /// Ask → `bool`: ask the active master for this many executors in all (its
    /// `RequestExecutors`); `false` while no master has accepted the application.
    RequestTotalExecutors {
        /// The total wanted.
        total: u32,
    },
    /// Ask → `bool`: ask the active master to kill these executors (its `KillExecutors`);
    /// `false` while no master has accepted the application.
    KillExecutors {
        /// The executors.
        executor_ids: Vec<ExecutorId>,
    },
}

/// Reply to [`ClientToMaster::RequestSubmitDriver`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitDriverResponse {
    /// Whether the driver was accepted.
    pub success: bool,
    /// Its id, when accepted.
    pub driver_id: Option<DriverId>,
    /// A message for the user.
    pub message: String,
}

/// Reply to [`ClientToMaster::RequestKillDriver`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillDriverResponse {
    /// The driver.
    pub driver_id: DriverId,
    /// Whether the kill was submitted.
    pub success: bool,
    /// A message for the user.
    pub message: String,
}

/// Reply to [`ClientToMaster::RequestKillAllDrivers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillAllDriversResponse {
    /// Whether the kills were submitted.
    pub success: bool,
    /// A message for the user.
    pub message: String,
}

/// Reply to [`ClientToMaster::RequestDriverStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverStatusResponse {
    /// Whether the master knows the driver.
    pub found: bool,
    /// Its state.
    pub state: Option<DriverState>,
    /// The worker running it.
    pub worker_id: Option<WorkerId>,
    /// That worker's `host:port`.
    pub worker_host_port: Option<String>,
    /// Its error, if it failed.
    pub exception: Option<String>,
}

/// A worker as the master's UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSummary {
    /// Its id.
    pub id: WorkerId,
    /// Its host.
    pub host: String,
    /// Its RPC port.
    pub port: u16,
    /// Its web UI.
    pub web_ui_address: String,
    /// Cores offered.
    pub cores: u32,
    /// Cores in use.
    pub cores_used: u32,
    /// Memory offered, MiB.
    pub memory_mb: u32,
    /// Memory in use, MiB.
    pub memory_used_mb: u32,
    /// Its state.
    pub state: WorkerState,
    /// Last heartbeat, ms since the Unix epoch.
    pub last_heartbeat_ms: u64,
}

/// An executor as the master's UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorSummary {
    /// Its id.
    pub id: ExecutorId,
    /// Its worker.
    pub worker_id: WorkerId,
    /// The worker's `host:port`.
    pub worker_host_port: String,
    /// The worker's web UI (for log links).
    pub worker_web_ui: String,
    /// Cores.
    pub cores: u32,
    /// Memory, MiB.
    pub memory_mb: u32,
    /// State.
    pub state: ExecutorState,
}

/// An application as the master's UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationSummary {
    /// Its id.
    pub id: AppId,
    /// Its description.
    pub desc: ApplicationDescription,
    /// Registration time, ms since the Unix epoch.
    pub start_time_ms: u64,
    /// End time, when finished.
    pub end_time_ms: Option<u64>,
    /// Cores granted now.
    pub cores_granted: u32,
    /// Its state.
    pub state: ApplicationState,
    /// Its executors (current ones; for finished applications, the last ones).
    pub executors: Vec<ExecutorSummary>,
    /// The driver's address.
    pub driver_address: RpcAddress,
}

/// A driver as the master's UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverSummary {
    /// Its id.
    pub id: DriverId,
    /// Submission time, ms since the Unix epoch.
    pub start_time_ms: u64,
    /// Its state.
    pub state: DriverState,
    /// Its description.
    pub desc: DriverDescription,
    /// The worker running it.
    pub worker_id: Option<WorkerId>,
    /// Its error, if any.
    pub exception: Option<String>,
}

/// Reply to [`ClientToMaster::RequestMasterState`]: everything the master UI and JSON show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterStateResponse {
    /// The master's host.
    pub host: String,
    /// The master's RPC port.
    pub port: u16,
    /// The REST submission port, when that server runs.
    pub rest_port: Option<u16>,
    /// The master's web UI.
    pub web_ui_url: String,
    /// All workers it knows, DEAD ones included until culled.
    pub workers: Vec<WorkerSummary>,
    /// Applications not finished.
    pub active_apps: Vec<ApplicationSummary>,
    /// Finished applications kept for the UI (`ember.deploy.retainedApplications`).
    pub completed_apps: Vec<ApplicationSummary>,
    /// Drivers not finished.
    pub active_drivers: Vec<DriverSummary>,
    /// Finished drivers kept for the UI (`ember.deploy.retainedDrivers`).
    pub completed_drivers: Vec<DriverSummary>,
    /// The master's state.
    pub status: MasterState,
}

impl MasterStateResponse {
    /// `ember://host:port`.
    pub fn url(&self) -> String {
        RpcAddress::new(self.host.clone(), self.port).to_ember_url()
    }
}

/// An executor as its worker's UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorRunnerSummary {
    /// The application.
    pub app_id: AppId,
    /// The executor.
    pub exec_id: ExecutorId,
    /// Cores.
    pub cores: u32,
    /// Memory, MiB.
    pub memory_mb: u32,
    /// State.
    pub state: ExecutorState,
    /// The application's description.
    pub app_desc: ApplicationDescription,
    /// Exit status, once exited.
    pub exit_status: Option<i32>,
    /// The directory holding its `stdout` and `stderr`.
    pub work_dir: String,
}

/// A driver as its worker's UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverRunnerSummary {
    /// The driver.
    pub driver_id: DriverId,
    /// Its description.
    pub desc: DriverDescription,
    /// Its state.
    pub state: DriverState,
    /// Its error, if any.
    pub exception: Option<String>,
    /// The directory holding its `stdout` and `stderr`.
    pub work_dir: String,
}

/// Reply to [`WorkerMessage::RequestWorkerState`]: everything the worker UI and JSON show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStateResponse {
    /// The worker's host.
    pub host: String,
    /// The worker's RPC port.
    pub port: u16,
    /// Its id.
    pub worker_id: WorkerId,
    /// The active master's URL, once registered.
    pub master_url: Option<String>,
    /// The active master's web UI, once registered.
    pub master_web_ui_url: Option<String>,
    /// Cores offered.
    pub cores: u32,
    /// Memory offered, MiB.
    pub memory_mb: u32,
    /// Cores in use.
    pub cores_used: u32,
    /// Memory in use, MiB.
    pub memory_used_mb: u32,
    /// Running executors.
    pub executors: Vec<ExecutorRunnerSummary>,
    /// Finished executors kept for the UI.
    pub finished_executors: Vec<ExecutorRunnerSummary>,
    /// Running drivers.
    pub drivers: Vec<DriverRunnerSummary>,
    /// Finished drivers kept for the UI.
    pub finished_drivers: Vec<DriverRunnerSummary>,
    /// The work directory.
    pub work_dir: String,
}

macro_rules! wrap {
    ($outer:ident :: $variant:ident ($inner:ty)) => {
        impl From<$inner> for $outer {
            fn from(m: $inner) -> Self {
                $outer::$variant(m)
            }
        }
    };
}
wrap!(MasterMessage::Worker(WorkerToMaster));
wrap!(MasterMessage::App(AppToMaster));
wrap!(MasterMessage::Client(ClientToMaster));
wrap!(MasterMessage::Internal(MasterInternal));
wrap!(WorkerMessage::Master(MasterToWorker));
wrap!(WorkerMessage::Internal(WorkerInternal));
wrap!(AppClientMessage::Master(MasterToApp));
wrap!(AppClientMessage::Internal(AppClientInternal));
