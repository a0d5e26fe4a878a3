//! Reporting executor state changes to the master, reliably and in order.
//!
//! Spark counterpart: `Worker.syncExecutorStateWithMaster` (SPARK-34245): the report is an ask
//! (the master answers `true`), retried up to `ember.worker.executorStateSync.maxAttempts` times,
//! waiting `ember.rpc.askTimeout` before a retry unless the failure was itself a timeout; each
//! attempt goes to the master that is active at that moment. When every attempt fails the worker
//! must exit. One task handles the reports one after the other, so the master sees LAUNCHING,
//! RUNNING and EXITED in that order.

use std::time::Duration;

use ember_rpc::{EndpointRef, RpcError};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::ids::{AppId, ExecutorId};
use crate::messages::{MasterMessage, WorkerInternal, WorkerMessage, WorkerToMaster};
use crate::state::ExecutorState;

/// One state change to report.
#[derive(Debug)]
pub(super) struct SyncJob {
    pub(super) app_id: AppId,
    pub(super) exec_id: ExecutorId,
    pub(super) state: ExecutorState,
    pub(super) message: Option<String>,
    pub(super) exit_status: Option<i32>,
}

/// Where the task reports: the active master as the endpoint last saw it, and the endpoint.
#[derive(Debug)]
pub(super) struct SyncTargets {
    pub(super) master: watch::Receiver<Option<EndpointRef<MasterMessage>>>,
    pub(super) worker: EndpointRef<WorkerMessage>,
}

/// Reports the jobs from `jobs` in order until the channel closes or `shutdown` fires; tells the
/// worker when one could not be reported.
pub(super) async fn run(
    mut jobs: mpsc::UnboundedReceiver<SyncJob>,
    targets: SyncTargets,
    max_attempts: u32,
    retry_wait: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let job = tokio::select! {
            _ = shutdown.cancelled() => return,
            job = jobs.recv() => match job {
                Some(job) => job,
                None => return,
            },
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            () = report(job, &targets, max_attempts, retry_wait) => {}
        }
    }
}

async fn report(job: SyncJob, targets: &SyncTargets, max_attempts: u32, retry_wait: Duration) {
    for attempt in 1..=max_attempts {
        let master = targets.master.borrow().clone();
        let result = match master {
            Some(master) => master
                .ask::<bool>(WorkerToMaster::ExecutorStateChanged {
                    app_id: job.app_id.clone(),
                    exec_id: job.exec_id,
                    state: job.state,
                    message: job.message.clone(),
                    exit_status: job.exit_status,
                })
                .await
                .map(drop),
            None => Err(RpcError::EndpointStopped {
                endpoint: "Master (not connected yet)".into(),
            }),
        };
        match result {
            Ok(()) => return,
            Err(error) if attempt == max_attempts => {
                let _ = targets
                    .worker
                    .send(WorkerInternal::ExecutorStateSyncFailed {
                        app_id: job.app_id.clone(),
                        exec_id: job.exec_id,
                        state: job.state,
                        attempts: attempt,
                        error,
                    });
                return;
            }
            Err(error) => {
                warn!(app_id = %job.app_id, exec_id = %job.exec_id, state = %job.state, attempt,
                    max_attempts, %error,
                    "could not report an executor state change to the master; retrying");
                if !matches!(error, RpcError::AskTimeout { .. }) {
                    tokio::time::sleep(retry_wait).await;
                }
            }
        }
    }
}
