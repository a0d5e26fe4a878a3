//! The standalone backend: executors granted by a standalone master and started by its
//! workers.
//!
//! Spark counterpart: `StandaloneSchedulerBackend`. It is the coarse-grained backend (the
//! `CoarseGrainedScheduler` endpoint executors register with) plus the [`AppClient`] that
//! registers the application with the masters, and the [`ApplicationDescription`] telling
//! workers how to start executors: the driver's own binary, served by the driver's
//! [`FileServer`] under its SHA-256 digest and fetched by each worker into its cache, run with
//! the user's arguments and the executor role selected by environment variables (see
//! [`executor::role`](crate::executor::role)).
//!
//! The description carries no secret: with `ember.authenticate` on, the executor learns that
//! authentication is on from `EMBER_EXECUTOR_OPTS`, and its worker gives it the secret from the
//! worker's own configuration (`EMBER_AUTHENTICATE_SECRET`), as Spark's workers do.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ember_deploy::client::{AppClient, AppClientConf, AppClientListener};
use ember_deploy::description::{AppBinary, ApplicationDescription, Command};
use ember_deploy::file_server::FileServer;
use ember_deploy::ids::{AppId, WorkerId};
use ember_deploy::messages::{
    AppToMaster, ClientToMaster, MASTER_ENDPOINT, MasterMessage, MasterStateResponse,
};
use ember_deploy::state::ExecutorState;
use ember_rpc::{EmberConf, EndpointRef, RpcAddress, RpcEnv};
use tracing::{debug, error, info, warn};

use crate::config;
use crate::error::CoreError;
use crate::executor::role;
use crate::ids::{ExecutorId, TaskId};
use crate::scheduler::backend::driver_endpoint::{CoarseGrainedBackend, DriverShared};
use crate::scheduler::backend::starvation::diagnose;
use crate::scheduler::backend::{BoxFuture, ExecutorAllocation, SchedulerBackend};
use crate::scheduler::messages::{DriverInternal, DriverMessage};
use crate::scheduler::task::TaskScheduler;

/// Called once when the application can no longer run (the master removed it, or no master
/// answered); the Context stops with the reason.
pub type OnDead = Box<dyn Fn(String) + Send + Sync>;

/// How long asking the master for its state may take.
const MASTER_STATE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the master may take to answer the executor limit set when stopping.
const STOP_ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// The standalone backend.
pub struct StandaloneBackend {
    coarse: CoarseGrainedBackend,
    client: Arc<AppClient>,
    app_desc: ApplicationDescription,
    masters: Vec<RpcAddress>,
    env: RpcEnv,
    stopping: Arc<AtomicBool>,
    /// Serves the binary to workers for as long as the backend lives (executors may be
    /// relaunched at any time).
    file_server: FileServer,
    /// Executors the master granted that have not ended (ExecutorAdded, less those whose
    /// ExecutorUpdated said they ended).
    granted: Arc<Mutex<BTreeSet<ember_deploy::ids::ExecutorId>>>,
    /// The executor total last asked of the master; `None` until the application asks, when
    /// `ember.executor.instances` is unset (no limit).
    requested_total: Arc<tokio::sync::Mutex<Option<u32>>>,
    /// Awaited at the end of [`stop`](SchedulerBackend::stop); see
    /// [`set_shutdown_callback`](StandaloneBackend::set_shutdown_callback).
    shutdown_callback: Mutex<Option<BoxFuture<'static, ()>>>,
}

impl std::fmt::Debug for StandaloneBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandaloneBackend")
            .field("app", &self.app_desc.name)
            .field("masters", &self.masters)
            .field("app_id", &self.client.app_id())
            .field("file_server", self.file_server.address())
            .finish()
    }
}

struct Listener {
    coarse: CoarseGrainedEndpoints,
    granted: Arc<Mutex<BTreeSet<ember_deploy::ids::ExecutorId>>>,
    shared: Arc<DriverShared>,
    on_dead: OnDead,
    stopping: Arc<AtomicBool>,
}

/// What the listener needs of the coarse-grained backend (which it cannot own).
struct CoarseGrainedEndpoints {
    endpoint: EndpointRef<crate::scheduler::messages::DriverMessage>,
}

impl AppClientListener for Listener {
    fn connected(&self, app_id: &AppId) {
        info!(%app_id, "connected to the standalone cluster");
        *self.shared.app_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(app_id.to_string());
    }

    fn disconnected(&self) {
        warn!("disconnected from the master; waiting for a master to take over");
    }

    fn dead(&self, reason: &str) {
        if !self.stopping.load(Ordering::SeqCst) {
            error!(%reason, "Application has been killed");
            (self.on_dead)(reason.to_owned());
        }
    }

    fn executor_added(
        &self,
        id: ember_deploy::ids::ExecutorId,
        worker_id: &WorkerId,
        host_port: &str,
        cores: u32,
        memory_mb: u32,
    ) {
        info!(executor_id = %id, %worker_id, %host_port, cores, memory_mb,
            "granted executor (its worker is starting it)");
        self.granted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
    }

    fn executor_removed(
        &self,
        id: ember_deploy::ids::ExecutorId,
        state: ExecutorState,
        message: &str,
        exit_status: Option<i32>,
        worker_host: Option<&str>,
    ) {
        // Spark parity: StandaloneSchedulerBackend.executorRemoved — an exit status means the
        // process ended by itself (the application may be at fault); no status means it was
        // lost, caused by the application only when its worker is still there.
        self.granted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let caused_by_app = exit_status.is_some() || worker_host.is_none();
        let reason = match exit_status {
            Some(code) => format!("executor {state} with exit code {code}: {message}"),
            None => format!("executor {state}: {message}"),
        };
        let _ =
            self.coarse
                .endpoint
                .send(crate::scheduler::messages::DriverMessage::RemoveExecutor {
                    executor_id: ExecutorId::from(id),
                    reason,
                    caused_by_app,
                });
    }

    fn worker_removed(&self, worker_id: &WorkerId, host: &str, message: &str) {
        warn!(%worker_id, %host, %message,
            "worker lost: its executors are lost and their running tasks are resubmitted");
        let _ = self
            .coarse
            .endpoint
            .send(crate::scheduler::messages::DriverMessage::Internal(
                crate::scheduler::messages::DriverInternal::RemoveWorker {
                    worker_id: worker_id.to_string(),
                    host: host.to_owned(),
                    message: message.to_owned(),
                },
            ));
    }
}

impl StandaloneBackend {
    /// Starts the driver endpoint and registers the application with `masters`.
    pub async fn start(
        env: &RpcEnv,
        scheduler: Arc<TaskScheduler>,
        conf: &EmberConf,
        app_name: &str,
        masters: Vec<RpcAddress>,
        on_dead: OnDead,
    ) -> Result<Arc<StandaloneBackend>, CoreError> {
        let coarse = CoarseGrainedBackend::start(env, scheduler, conf).await?;
        let file_server = FileServer::start(env).await?;
        // The digest executors must match; the same image the file server reads, hashed once.
        // (Hashing may still be under way on the thread `Context::new` started: wait off the
        // runtime's threads.)
        let digest = tokio::task::spawn_blocking(|| {
            crate::closure::binary_digest().map(ToString::to_string)
        })
        .await
        .map_err(|e| CoreError::Io {
            what: "hashing the application binary",
            source: std::io::Error::other(e),
        })??;
        let binary = file_server.register_current_exe_with_digest(digest).await?;
        let app_desc = application_description(conf, app_name, &coarse.driver_url(), binary)?;
        info!(app = %app_desc.name, command = %app_desc.command, masters = ?masters,
            "starting the standalone backend");
        let stopping = Arc::new(AtomicBool::new(false));
        let granted = Arc::new(Mutex::new(BTreeSet::new()));
        let listener = Arc::new(Listener {
            coarse: CoarseGrainedEndpoints {
                endpoint: coarse.endpoint().clone(),
            },
            granted: granted.clone(),
            shared: coarse.shared().clone(),
            on_dead,
            stopping: stopping.clone(),
        });
        let client_conf = AppClientConf::from_conf(conf)?;
        let client = AppClient::start(
            env,
            masters.clone(),
            app_desc.clone(),
            listener,
            client_conf,
        )
        .await?;
        let requested_total = Arc::new(tokio::sync::Mutex::new(app_desc.initial_executor_limit));
        Ok(Arc::new(StandaloneBackend {
            coarse,
            client: Arc::new(client),
            granted,
            requested_total,
            app_desc,
            masters,
            env: env.clone(),
            stopping,
            file_server,
            shutdown_callback: Mutex::new(None),
        }))
    }

    /// Has [`stop`](SchedulerBackend::stop) await `callback` once the application has stopped:
    /// `local-cluster` mode stops its in-process cluster so, after the executors.
    ///
    /// Spark parity: `StandaloneSchedulerBackend.shutdownCallback`, which `SparkContext` sets to
    /// `localCluster.stop()`.
    pub fn set_shutdown_callback(&self, callback: BoxFuture<'static, ()>) {
        *self
            .shutdown_callback
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(callback);
    }

    /// The description the masters were sent.
    pub fn application_description(&self) -> &ApplicationDescription {
        &self.app_desc
    }
}

/// What the application asks the master for, and how workers start its executors: `binary`
/// (as served by the driver's file server) with the driver's own arguments and the executor
/// role's environment.
pub fn application_description(
    conf: &EmberConf,
    app_name: &str,
    driver_url: &str,
    binary: AppBinary,
) -> Result<ApplicationDescription, CoreError> {
    let memory = conf.get(&config::EXECUTOR_MEMORY)?.as_mib();
    Ok(ApplicationDescription {
        name: app_name.to_owned(),
        max_cores: conf.get_opt(&config::CORES_MAX)?,
        memory_per_executor_mb: u32::try_from(memory).unwrap_or(u32::MAX),
        cores_per_executor: conf.get_opt(&config::EXECUTOR_CORES)?,
        initial_executor_limit: conf.get_opt(&config::EXECUTOR_INSTANCES)?,
        command: Command {
            binary,
            arguments: std::env::args().skip(1).collect(),
            environment: role::executor_environment(driver_url, conf),
        },
        app_ui_url: None,
        user: std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned()),
    })
}

impl SchedulerBackend for StandaloneBackend {
    fn revive_offers(&self) {
        self.coarse.revive_offers();
    }

    fn kill_task(
        &self,
        task_id: TaskId,
        executor_id: &ExecutorId,
        interrupt_thread: bool,
        reason: &str,
    ) {
        self.coarse
            .kill_task(task_id, executor_id, interrupt_thread, reason);
    }

    fn default_parallelism(&self) -> usize {
        self.coarse.default_parallelism()
    }

    fn stop(&self) -> BoxFuture<'static, ()> {
        self.stopping.store(true, Ordering::SeqCst);
        let endpoint = self.coarse.endpoint().clone();
        let client_endpoint = self.client.endpoint().clone();
        let env = self.env.clone();
        let registered = self.client.active_master().zip(self.client.app_id());
        let callback = self
            .shutdown_callback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        Box::pin(async move {
            // No more executors: otherwise the master replaces each executor that exits below
            // (it is only told the application finished afterwards), and the replacement is
            // started only to be killed.
            if let Some((master, app_id)) = registered {
                let master: EndpointRef<MasterMessage> = env.endpoint_ref(master, MASTER_ENDPOINT);
                let limited: Result<bool, _> = master
                    .ask_with_timeout(
                        AppToMaster::RequestExecutors {
                            app_id,
                            requested_total: 0,
                        },
                        STOP_ASK_TIMEOUT,
                        ember_rpc::ASK_TIMEOUT_KEY,
                    )
                    .await;
                if let Err(e) = limited {
                    debug!(error = %e, "could not set the executor limit to 0 before stopping");
                }
            }
            // Executors first, then tell the master the application finished (Spark's order).
            let _: Result<bool, _> = endpoint
                .ask_with_timeout(
                    crate::scheduler::messages::DriverMessage::Internal(
                        crate::scheduler::messages::DriverInternal::StopExecutors,
                    ),
                    Duration::from_secs(10),
                    ember_rpc::ASK_TIMEOUT_KEY,
                )
                .await;
            env.stop(&endpoint);
            let _: Result<bool, _> = client_endpoint
                .ask_with_timeout(
                    ember_deploy::messages::AppClientMessage::Internal(
                        ember_deploy::messages::AppClientInternal::Stop,
                    ),
                    Duration::from_secs(10),
                    ember_rpc::ASK_TIMEOUT_KEY,
                )
                .await;
            if let Some(callback) = callback {
                callback.await;
            }
        })
    }

    fn starvation_report(&self) -> BoxFuture<'static, Option<String>> {
        let targets: Vec<RpcAddress> = match self.client.active_master() {
            Some(master) => vec![master],
            None => self.masters.clone(),
        };
        let env = self.env.clone();
        let app_id = self.client.app_id();
        let desc = self.app_desc.clone();
        Box::pin(async move {
            let mut errors = Vec::new();
            for address in targets {
                let master: EndpointRef<MasterMessage> =
                    env.endpoint_ref(address.clone(), MASTER_ENDPOINT);
                let state: Result<MasterStateResponse, _> = master
                    .ask_with_timeout(
                        ClientToMaster::RequestMasterState,
                        MASTER_STATE_TIMEOUT,
                        ember_rpc::ASK_TIMEOUT_KEY,
                    )
                    .await;
                match state {
                    Ok(state) => return Some(diagnose(&state, app_id.as_ref(), &desc)),
                    Err(e) => errors.push(format!("{}: {e}", address.to_ember_url())),
                }
            }
            Some(format!(
                "No master answered a request for its state, so the application is probably \
                 not registered ({}).",
                errors.join("; ")
            ))
        })
    }

    fn application_id(&self) -> Option<String> {
        self.coarse.shared().app_id()
    }

    fn num_executors(&self) -> usize {
        self.coarse.shared().num_executors()
    }

    fn executor_ids(&self) -> Vec<ExecutorId> {
        self.coarse.shared().executor_ids()
    }

    fn executor_allocation(&self) -> Option<&dyn ExecutorAllocation> {
        Some(self)
    }
}

impl StandaloneBackend {
    /// The target the master is asked for now: the last one set, else the executors granted.
    fn current_target(&self, requested: Option<u32>) -> u32 {
        requested.unwrap_or_else(|| {
            let granted = self.granted.lock().unwrap_or_else(|e| e.into_inner()).len();
            u32::try_from(granted).unwrap_or(u32::MAX)
        })
    }
}

/// Spark parity: `CoarseGrainedSchedulerBackend`'s `requestTotalExecutors`, `requestExecutors`
/// and `killExecutors` (with `adjustTargetNumExecutors`), over `StandaloneAppClient`. Requests
/// are made one at a time, so the master sees targets in the order the application set them.
impl ExecutorAllocation for StandaloneBackend {
    fn request_total_executors(&self, total: u32) -> BoxFuture<'static, Result<bool, CoreError>> {
        let (requested, client) = (self.requested_total.clone(), self.client.clone());
        Box::pin(async move {
            let mut requested = requested.lock().await;
            info!(total, "asking the master for executors in all");
            *requested = Some(total);
            Ok(client.request_total_executors(total).await?)
        })
    }

    fn request_executors(&self, additional: u32) -> BoxFuture<'static, Result<bool, CoreError>> {
        let (requested, client) = (self.requested_total.clone(), self.client.clone());
        let granted_now = self.current_target(None);
        Box::pin(async move {
            let mut requested = requested.lock().await;
            let total = requested.unwrap_or(granted_now).saturating_add(additional);
            info!(additional, total, "asking the master for more executors");
            *requested = Some(total);
            Ok(client.request_total_executors(total).await?)
        })
    }

    fn kill_executors(&self, ids: Vec<ExecutorId>) -> BoxFuture<'static, Result<bool, CoreError>> {
        let (requested, client) = (self.requested_total.clone(), self.client.clone());
        let endpoint = self.coarse.endpoint().clone();
        let granted_now = self.current_target(None);
        Box::pin(async move {
            let mut requested = requested.lock().await;
            let accepted: Vec<ExecutorId> = endpoint
                .ask(DriverMessage::Internal(DriverInternal::KillExecutors {
                    executor_ids: ids,
                }))
                .await?;
            let to_kill: Vec<ember_deploy::ids::ExecutorId> = accepted
                .iter()
                .filter_map(|id| id.0.parse().ok().map(ember_deploy::ids::ExecutorId))
                .collect();
            if to_kill.is_empty() {
                return Ok(false);
            }
            // Lower the target first, so that the master does not replace them.
            let total = requested
                .unwrap_or(granted_now)
                .saturating_sub(u32::try_from(to_kill.len()).unwrap_or(u32::MAX));
            *requested = Some(total);
            info!(executors = ?accepted, total, "asking the master to kill executors");
            if !client.request_total_executors(total).await? {
                return Ok(false);
            }
            Ok(client.kill_executors(to_kill).await?)
        })
    }
}

#[cfg(test)]
mod tests {
    use ember_deploy::description::BinaryLocation;

    use super::*;

    #[test]
    fn the_description_never_carries_the_secret() {
        let conf = EmberConf::from_pairs([
            ("ember.authenticate", "true"),
            ("ember.authenticate.secret", "hunter2"),
            ("ember.executor.memory", "512m"),
        ]);
        let binary = AppBinary {
            name: "app".into(),
            digest: "0".repeat(64),
            size: 1,
            location: BinaryLocation::FileServer(RpcAddress::new("127.0.0.1", 1)),
        };
        let desc = application_description(
            &conf,
            "app",
            "ember://CoarseGrainedScheduler@127.0.0.1:1",
            binary.clone(),
        )
        .unwrap();
        assert_eq!(desc.command.binary, binary);
        assert_eq!(desc.memory_per_executor_mb, 512);
        let env: std::collections::HashMap<_, _> =
            desc.command.environment.iter().cloned().collect();
        // The executor learns that authentication is on; its worker gives it the secret.
        assert_eq!(env[role::OPTS_VAR], "-Dember.authenticate=true");
        assert!(!format!("{desc:?}").contains("hunter2"), "{desc:?}");
    }
}
