//! The executor process's endpoint: registers with the driver, takes tasks, reports back,
//! heartbeats, and decides when the process exits.
//!
//! Spark counterpart: `CoarseGrainedExecutorBackend` (with `WorkerWatcher`).
//!
//! ```text
//!   on_start ──RegisterExecutor (ask)──▶ refused: the process exits with the driver's reason
//!      │ accepted
//!      ▼
//!   task threads started ──LaunchedExecutor──▶ LaunchTask* / KillTask* / ReleaseTaskBinaries*
//!      │
//!      ├── StopExecutor or Shutdown ─────────────────────▶ exit 0
//!      ├── the driver's connection closes ───────────────▶ exit 1 ("Driver … disassociated")
//!      ├── the worker's connection closes (if any) ──────▶ exit 1 (Spark's WorkerWatcher)
//!      └── a heartbeat answer says the driver forgot us ─▶ exit 1
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use ember_rpc::{
    EmberConf, EndpointContext, EndpointRef, HandlerResult, RpcAddress, RpcEndpoint, RpcEnv,
    TimerHandle,
};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, error, info, warn};

use super::role::ExecutorRole;
use super::runner::{Executor, ResultPolicy, StatusSink};
use crate::closure::binary_digest;
use crate::config;
use crate::error::CoreError;
use crate::ids::{ExecutorId, StageAttempt};
use crate::scheduler::messages::{
    DriverMessage, ExecutorInternal, ExecutorMessage, ExecutorRegistration, HeartbeatResponse,
    StatusData, TaskBinary, TaskFailureReason, TaskResult, TaskState, TaskStatus,
};
use crate::storage::BlockStore;

/// Bytes kept free in a message for everything but results.
const MESSAGE_HEADROOM: usize = 64 * 1024;

/// Sends status updates to the driver, splitting batches that would not fit in one message.
struct DriverSink {
    driver: EndpointRef<DriverMessage>,
    executor_id: ExecutorId,
    budget: usize,
}

impl StatusSink for DriverSink {
    fn send_updates(&self, updates: Vec<TaskStatus>) {
        let mut batch = Vec::new();
        let mut size = 0usize;
        for update in updates {
            let bytes = match &update.data {
                StatusData::Result(TaskResult::Direct(b)) => b.len(),
                _ => 64,
            };
            if !batch.is_empty() && size + bytes > self.budget {
                self.send(std::mem::take(&mut batch));
                size = 0;
            }
            size += bytes;
            batch.push(update);
        }
        if !batch.is_empty() {
            self.send(batch);
        }
    }
}

impl DriverSink {
    fn send(&self, updates: Vec<TaskStatus>) {
        if let Err(e) = self.driver.send(DriverMessage::StatusUpdate {
            executor_id: self.executor_id.clone(),
            updates,
        }) {
            warn!(error = %e.error, "could not send a status update to the driver");
        }
    }
}

/// The `Executor` endpoint.
pub struct ExecutorBackend {
    role: ExecutorRole,
    conf: EmberConf,
    driver: EndpointRef<DriverMessage>,
    worker: Option<RpcAddress>,
    store: Arc<BlockStore>,
    exit: UnboundedSender<(i32, String)>,
    executor: Option<Executor>,
    binaries: HashMap<StageAttempt, Arc<TaskBinary>>,
    timers: Vec<TimerHandle>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for ExecutorBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorBackend")
            .field("executor_id", &self.role.executor_id)
            .field("driver", &self.role.driver_url)
            .finish_non_exhaustive()
    }
}

impl ExecutorBackend {
    /// An endpoint for `role`, asking for the process to exit (status and reason) through
    /// `exit`.
    pub fn new(
        env: &RpcEnv,
        role: ExecutorRole,
        conf: EmberConf,
        store: Arc<BlockStore>,
        exit: UnboundedSender<(i32, String)>,
    ) -> Self {
        let driver = env.endpoint_ref(role.driver_address.clone(), &role.driver_endpoint);
        let worker = role.worker_address().map(|(address, _)| address);
        Self {
            role,
            conf,
            driver,
            worker,
            store,
            exit,
            executor: None,
            binaries: HashMap::new(),
            timers: Vec::new(),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    fn exit(&mut self, code: i32, reason: &str) {
        if code == 0 {
            info!(%reason, "executor exiting");
        } else {
            error!(%reason, "executor exiting");
        }
        if let Some(executor) = &self.executor {
            executor.stop();
        }
        let _ = self.exit.send((code, reason.to_owned()));
    }

    async fn register(&mut self, ctx: &EndpointContext<ExecutorMessage>) -> Result<(), CoreError> {
        let executor_id = self.role.executor_id.clone();
        // Started hashing when the process began (`run_executor`); wait off the runtime.
        let digest = tokio::task::spawn_blocking(|| binary_digest().copied())
            .await
            .map_err(|e| CoreError::Io {
                what: "hashing the executor's binary",
                source: std::io::Error::other(e),
            })??;
        info!(%executor_id, driver = %self.role.driver_url, "registering with the driver");
        let registration: ExecutorRegistration = self
            .driver
            .ask(DriverMessage::RegisterExecutor {
                executor_id: executor_id.clone(),
                executor_ref: ctx.self_ref().clone(),
                hostname: self.role.hostname.clone(),
                cores: self.role.cores,
                log_urls: log_urls(std::env::vars()),
                binary_digest: digest,
            })
            .await
            .map_err(|e| CoreError::RegistrationRefused {
                driver_url: self.role.driver_url.clone(),
                executor_id: executor_id.clone(),
                reason: match e {
                    ember_rpc::RpcError::Remote { failure, .. } => failure.to_string(),
                    other => other.to_string(),
                },
            })?;
        for (key, value) in registration.conf {
            self.conf.set(key, value);
        }
        let max_message = ctx.env().config().max_message_size;
        let max_direct = usize::try_from(
            self.conf
                .get(&config::TASK_MAX_DIRECT_RESULT_SIZE)?
                .as_bytes(),
        )
        .unwrap_or(usize::MAX)
        .min(max_message.saturating_sub(MESSAGE_HEADROOM));
        let sink = Arc::new(DriverSink {
            driver: self.driver.clone(),
            executor_id: executor_id.clone(),
            budget: max_message.saturating_sub(MESSAGE_HEADROOM).max(1),
        });
        let executor = Executor::start(
            executor_id.clone(),
            self.role.cores as usize,
            ResultPolicy {
                max_direct_size: max_direct,
                store: Some(self.store.clone()),
            },
            sink,
            &self.runtime,
        )
        .map_err(|source| CoreError::Io {
            what: "starting the task threads",
            source,
        })?;
        self.executor = Some(executor);
        info!(%executor_id, app_id = ?registration.app_id, cores = self.role.cores,
            "registered with the driver");
        let interval = self.conf.get(&config::EXECUTOR_HEARTBEAT_INTERVAL)?;
        self.timers.push(ctx.schedule_every(interval, interval, || {
            ExecutorMessage::Internal(ExecutorInternal::SendHeartbeat)
        }));
        self.driver
            .send(DriverMessage::LaunchedExecutor { executor_id })
            .map_err(|e| CoreError::Rpc(e.error))?;
        Ok(())
    }

    /// Connects to the worker so that its loss is noticed (Spark's `WorkerWatcher`).
    async fn watch_worker(&self, ctx: &EndpointContext<ExecutorMessage>) -> Result<(), CoreError> {
        if let Some((address, name)) = self.role.worker_address() {
            ctx.env()
                .setup_endpoint_ref::<ember_deploy::messages::WorkerMessage>(&address, &name)
                .await?;
            debug!(worker = %address, "watching the worker");
        }
        Ok(())
    }

    fn launch(
        &mut self,
        binaries: Vec<TaskBinary>,
        tasks: Vec<crate::scheduler::messages::TaskDescription>,
    ) {
        for binary in binaries {
            self.binaries.insert(binary.stage, Arc::new(binary));
        }
        let Some(executor) = &self.executor else {
            error!("received tasks before registering; ignoring them");
            return;
        };
        let mut missing = Vec::new();
        for desc in tasks {
            match self.binaries.get(&desc.stage) {
                Some(binary) => executor.launch_task(desc, binary.clone()),
                None => missing.push(TaskStatus {
                    task_id: desc.task_id,
                    state: TaskState::Failed,
                    data: StatusData::Failure(TaskFailureReason::Error {
                        message: format!("executor has no binary for stage {}", desc.stage),
                    }),
                }),
            }
        }
        if !missing.is_empty() {
            let _ = self.driver.send(DriverMessage::StatusUpdate {
                executor_id: self.role.executor_id.clone(),
                updates: missing,
            });
        }
    }
}

/// The log pages its worker serves, from `EMBER_LOG_URL_<NAME>` variables: `(name, url)` with
/// the name in lower case (Spark's `CoarseGrainedExecutorBackend.extractLogUrls`).
fn log_urls(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut urls: Vec<(String, String)> = vars
        .filter_map(|(key, value)| {
            key.strip_prefix("EMBER_LOG_URL_")
                .map(|name| (name.to_ascii_lowercase(), value))
        })
        .collect();
    urls.sort();
    urls
}

impl RpcEndpoint for ExecutorBackend {
    type Message = ExecutorMessage;

    async fn on_start(&mut self, ctx: &EndpointContext<ExecutorMessage>) -> HandlerResult {
        self.watch_worker(ctx).await?;
        self.register(ctx).await?;
        Ok(())
    }

    async fn receive(
        &mut self,
        ctx: &EndpointContext<ExecutorMessage>,
        message: ExecutorMessage,
    ) -> HandlerResult {
        match message {
            ExecutorMessage::LaunchTask { binaries, tasks } => self.launch(binaries, tasks),
            ExecutorMessage::KillTask {
                task_id,
                interrupt_thread,
                reason,
            } => {
                if let Some(executor) = &self.executor {
                    executor.kill_task(task_id, interrupt_thread, &reason);
                }
            }
            ExecutorMessage::ReleaseTaskBinaries { stages } => {
                for stage in stages {
                    self.binaries.remove(&stage);
                }
            }
            ExecutorMessage::StopExecutor => self.exit(0, "the driver asked this executor to stop"),
            ExecutorMessage::Shutdown { exit_code } => self.exit(exit_code, "shutdown requested"),
            ExecutorMessage::Internal(ExecutorInternal::SendHeartbeat) => {
                let driver = self.driver.clone();
                let me = ctx.self_ref().clone();
                let executor_id = self.role.executor_id.clone();
                let tasks = self.executor.as_ref().map_or(0, |e| e.num_tasks() as u32);
                ctx.spawn(async move {
                    let answer: Result<HeartbeatResponse, _> = driver
                        .ask(DriverMessage::Heartbeat { executor_id, tasks })
                        .await;
                    match answer {
                        Ok(HeartbeatResponse { known: false }) => {
                            let _ = me.send(ExecutorMessage::Internal(
                                ExecutorInternal::DriverLostUs {
                                    reason: "the driver no longer knows this executor".to_owned(),
                                },
                            ));
                        }
                        Ok(_) => {}
                        Err(e) => warn!(error = %e, "heartbeat to the driver failed"),
                    }
                });
            }
            ExecutorMessage::Internal(ExecutorInternal::DriverLostUs { reason }) => {
                self.exit(1, &reason);
            }
        }
        Ok(())
    }

    async fn on_disconnected(
        &mut self,
        _ctx: &EndpointContext<ExecutorMessage>,
        remote: RpcAddress,
    ) {
        if remote == self.role.driver_address {
            self.exit(1, &format!("Driver {remote} disassociated! Shutting down."));
        } else if self.worker.as_ref() == Some(&remote) {
            self.exit(1, &format!("Worker {remote} disassociated! Shutting down."));
        }
    }

    async fn on_network_error(
        &mut self,
        _ctx: &EndpointContext<ExecutorMessage>,
        remote: RpcAddress,
        error: ember_rpc::RpcError,
    ) {
        if remote == self.role.driver_address && self.executor.is_some() {
            self.exit(1, &format!("lost the driver at {remote}: {error}"));
        } else if self.worker.as_ref() == Some(&remote) {
            self.exit(1, &format!("lost the worker at {remote}: {error}"));
        }
    }

    async fn on_stop(&mut self, _ctx: &EndpointContext<ExecutorMessage>) {
        self.timers.clear();
        if let Some(executor) = &self.executor {
            executor.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_urls_come_from_the_workers_variables() {
        let vars = [
            ("EMBER_LOG_URL_STDOUT", "http://w/logPage/?x&logType=stdout"),
            ("EMBER_EXECUTOR_ID", "3"),
            ("EMBER_LOG_URL_STDERR", "http://w/logPage/?x&logType=stderr"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(
            super::log_urls(vars.into_iter()),
            vec![
                (
                    "stderr".to_owned(),
                    "http://w/logPage/?x&logType=stderr".to_owned()
                ),
                (
                    "stdout".to_owned(),
                    "http://w/logPage/?x&logType=stdout".to_owned()
                ),
            ]
        );
    }
}
