//! Local mode: one executor inside the driver, with N task threads.
//!
//! Spark counterpart: `LocalSchedulerBackend` and its `LocalEndpoint`. Tasks take the same path
//! as on a cluster (task scheduler, offers, an [`Executor`] decoding each task's closure from
//! bytes, status updates) without leaving the process.

use std::sync::Arc;

use ember_rpc::{EndpointContext, EndpointRef, HandlerResult, RpcEndpoint, RpcEnv};
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::error::CoreError;
use crate::executor::runner::{Executor, ResultPolicy, StatusSink};
use crate::ids::{ExecutorId, TaskId};
use crate::scheduler::backend::{BoxFuture, SchedulerBackend};
use crate::scheduler::messages::TaskStatus;
use crate::scheduler::task::{TaskScheduler, WorkerOffer};

/// Name of the local backend's endpoint.
pub const LOCAL_ENDPOINT: &str = "LocalSchedulerBackendEndpoint";

/// What the local endpoint receives (only from inside the driver process).
#[derive(Debug, Serialize, Deserialize)]
pub enum LocalMessage {
    /// Offer the free task threads.
    ReviveOffers,
    /// Tasks changed state.
    StatusUpdate {
        /// The updates.
        updates: Vec<TaskStatus>,
    },
    /// Kill a task attempt.
    KillTask {
        /// The task.
        task_id: TaskId,
        /// Whether to interrupt it.
        interrupt_thread: bool,
        /// Why.
        reason: String,
    },
}

struct LocalEndpoint {
    scheduler: Arc<TaskScheduler>,
    executor: Executor,
    free_cores: u32,
}

impl LocalEndpoint {
    fn revive(&mut self) {
        if self.free_cores == 0 {
            return;
        }
        let offers = [WorkerOffer {
            executor_id: ExecutorId::driver(),
            host: "localhost".to_owned(),
            slots: self.free_cores,
        }];
        let launches = self
            .scheduler
            .with_state(|s| s.resource_offers(&offers))
            .pop()
            .unwrap_or_default();
        for launch in launches {
            self.free_cores -= 1;
            self.executor.launch_task(launch.desc, launch.binary);
        }
    }
}

impl RpcEndpoint for LocalEndpoint {
    type Message = LocalMessage;

    async fn receive(
        &mut self,
        _ctx: &EndpointContext<LocalMessage>,
        message: LocalMessage,
    ) -> HandlerResult {
        match message {
            LocalMessage::ReviveOffers => self.revive(),
            LocalMessage::StatusUpdate { updates } => {
                let driver = ExecutorId::driver();
                let freed = updates.iter().filter(|u| u.state.is_finished()).count() as u32;
                self.scheduler.with_state(|s| {
                    for update in updates {
                        // Local results are always direct: there is nothing to fetch.
                        let _ = s.status_update(&driver, update);
                    }
                });
                self.free_cores += freed;
                self.revive();
            }
            LocalMessage::KillTask {
                task_id,
                interrupt_thread,
                reason,
            } => self.executor.kill_task(task_id, interrupt_thread, &reason),
        }
        Ok(())
    }

    async fn on_stop(&mut self, _ctx: &EndpointContext<LocalMessage>) {
        self.executor.stop();
    }
}

struct ToEndpoint(EndpointRef<LocalMessage>);

impl StatusSink for ToEndpoint {
    fn send_updates(&self, updates: Vec<TaskStatus>) {
        let _ = self.0.send(LocalMessage::StatusUpdate { updates });
    }
}

/// The local backend.
#[derive(Debug)]
pub struct LocalBackend {
    endpoint: EndpointRef<LocalMessage>,
    env: RpcEnv,
    threads: usize,
}

impl LocalBackend {
    /// Starts the in-process executor with `threads` task threads.
    pub async fn start(
        env: &RpcEnv,
        scheduler: Arc<TaskScheduler>,
        threads: usize,
    ) -> Result<Arc<LocalBackend>, CoreError> {
        let threads = threads.max(1);
        // The endpoint's ref is needed by the executor's sink before the endpoint exists, so
        // the sink gets an unchecked ref by name.
        let self_ref: EndpointRef<LocalMessage> =
            env.endpoint_ref(env.address().clone(), LOCAL_ENDPOINT);
        let executor = Executor::start(
            ExecutorId::driver(),
            threads,
            ResultPolicy {
                max_direct_size: usize::MAX,
                store: None,
            },
            Arc::new(ToEndpoint(self_ref)),
            &tokio::runtime::Handle::current(),
        )
        .map_err(|source| CoreError::Io {
            what: "starting the local executor's task threads",
            source,
        })?;
        scheduler.with_state(|s| s.executor_added(&ExecutorId::driver(), "localhost"));
        let endpoint = env
            .setup_endpoint(
                LOCAL_ENDPOINT,
                LocalEndpoint {
                    scheduler,
                    executor,
                    free_cores: threads as u32,
                },
            )
            .await?;
        debug!(threads, "local backend started");
        Ok(Arc::new(LocalBackend {
            endpoint,
            env: env.clone(),
            threads,
        }))
    }
}

impl SchedulerBackend for LocalBackend {
    fn revive_offers(&self) {
        let _ = self.endpoint.send(LocalMessage::ReviveOffers);
    }

    fn kill_task(
        &self,
        task_id: TaskId,
        _executor_id: &ExecutorId,
        interrupt_thread: bool,
        reason: &str,
    ) {
        let _ = self.endpoint.send(LocalMessage::KillTask {
            task_id,
            interrupt_thread,
            reason: reason.to_owned(),
        });
    }

    fn default_parallelism(&self) -> usize {
        self.threads
    }

    fn num_executors(&self) -> usize {
        1
    }

    fn executor_ids(&self) -> Vec<ExecutorId> {
        vec![ExecutorId::driver()]
    }

    fn stop(&self) -> BoxFuture<'static, ()> {
        self.env.stop(&self.endpoint);
        Box::pin(async {})
    }
}
