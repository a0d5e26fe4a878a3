//! The errors of the application runtime.
//!
//! Spark counterparts: `SparkException("Job aborted due to stage failure: …")`,
//! `IllegalStateException("SparkContext has been shutdown")`, the master-URL errors of
//! `SparkContext.createTaskScheduler`, and the executor's startup failures.

use std::fmt;

use ember_rpc::{ConfError, RpcError};

use crate::closure::{BinaryDigest, ClosureError};
use crate::ids::{ExecutorId, JobId, StageAttempt};
use crate::scheduler::messages::TaskFailureReason;

/// Everything that can go wrong in the runtime, as seen by an application.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A configuration value is malformed or missing.
    #[error(transparent)]
    Conf(#[from] ConfError),
    /// The master URL is malformed.
    #[error("invalid master URL {url:?}: {reason}")]
    InvalidMasterUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The master URL is well formed but that mode cannot run here (yet).
    #[error("master URL {master:?} cannot be used: {reason}")]
    ModeNotAvailable {
        /// The URL.
        master: String,
        /// Why.
        reason: String,
    },
    /// The operation needs a cluster manager, and the master URL runs without one.
    #[error(
        "{operation} needs a cluster manager (ember://… or local-cluster[…]); master {master:?} \
         runs the application in this process"
    )]
    NeedsClusterManager {
        /// What was asked.
        operation: &'static str,
        /// The master URL.
        master: String,
    },
    /// The RPC layer failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// A closure could not be shipped, or task bytes could not become code.
    #[error(transparent)]
    Closure(#[from] ClosureError),
    /// A job failed; `reason` says which task or stage and why.
    #[error("job {job_id} failed: {reason}")]
    JobFailed {
        /// The job.
        job_id: JobId,
        /// Why.
        reason: JobFailure,
    },
    /// A task's result did not decode as the job's result type.
    #[error("the result of partition {partition} does not decode: {source}")]
    ResultDecode {
        /// The partition.
        partition: usize,
        /// The decoder's error.
        source: ClosureError,
    },
    /// The Context was stopped, by the application or because the cluster removed it.
    #[error("the Context was stopped: {reason}")]
    ContextStopped {
        /// Why.
        reason: String,
    },
    /// An executor runs a different build of the application than the driver.
    #[error(
        "executor {executor_id} runs a different binary than the driver (executor binary digest \
         {executor_digest}, driver binary digest {driver_digest}); tasks cannot be shipped \
         between different builds, so the executor is refused"
    )]
    BinaryMismatch {
        /// The executor.
        executor_id: ExecutorId,
        /// The digest of the executor's binary.
        executor_digest: BinaryDigest,
        /// The digest of the driver's binary.
        driver_digest: BinaryDigest,
    },
    /// The process was started in the executor role with a missing or malformed variable.
    #[error("cannot start the executor: environment variable {var} {reason}")]
    ExecutorEnvironment {
        /// The variable.
        var: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The driver refused this executor's registration.
    #[error("the driver at {driver_url} refused executor {executor_id}: {reason}")]
    RegistrationRefused {
        /// The driver endpoint's URL.
        driver_url: String,
        /// This executor.
        executor_id: ExecutorId,
        /// The driver's reason.
        reason: String,
    },
    /// The cluster side failed: serving the application binary, or starting the Master and
    /// Workers of `local-cluster` mode.
    #[error(transparent)]
    Deploy(ember_deploy::DeployError),
    /// An I/O operation of the runtime failed (starting threads, the async runtime, reading the
    /// executable).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl From<ember_deploy::DeployError> for CoreError {
    fn from(e: ember_deploy::DeployError) -> Self {
        match e {
            ember_deploy::DeployError::Conf(e) => CoreError::Conf(e),
            ember_deploy::DeployError::Rpc(e) => CoreError::Rpc(e),
            other => CoreError::Deploy(other),
        }
    }
}

impl CoreError {
    /// Whether running the same thing again later may succeed: network trouble, or a job that
    /// failed because executors were lost rather than because of its own code.
    pub fn is_retryable(&self) -> bool {
        match self {
            CoreError::Rpc(e) => e.is_retryable(),
            CoreError::JobFailed {
                reason: JobFailure::TaskFailed { last, .. },
                ..
            } => matches!(
                last,
                TaskFailureReason::ExecutorLost { .. } | TaskFailureReason::ResultLost { .. }
            ),
            _ => false,
        }
    }

    /// The message of the task failure that failed the job, if a task did (the panic message
    /// or error of the user's closure, or why the task was lost).
    pub fn task_failure(&self) -> Option<&TaskFailureReason> {
        match self {
            CoreError::JobFailed {
                reason: JobFailure::TaskFailed { last, .. },
                ..
            } => Some(last),
            _ => None,
        }
    }
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobFailure {
    /// A task failed as many times as allowed (Spark: "Job aborted due to stage failure: Task 3
    /// in stage 0.0 failed 4 times, most recent failure: …").
    TaskFailed {
        /// The stage attempt the task belonged to.
        stage: StageAttempt,
        /// The partition.
        partition: usize,
        /// How many times it failed.
        failures: u32,
        /// The most recent failure.
        last: TaskFailureReason,
    },
    /// A stage could not run at all (for example, its task is larger than a message may be).
    StageAborted {
        /// The stage attempt.
        stage: StageAttempt,
        /// Why.
        message: String,
    },
    /// The job was cancelled: the Context stopped or the master removed the application.
    Cancelled {
        /// Why.
        reason: String,
    },
}

impl fmt::Display for JobFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobFailure::TaskFailed {
                stage,
                partition,
                failures,
                last,
            } => write!(
                f,
                "aborted due to stage failure: task {partition} in stage {stage} failed \
                 {failures} time{}, most recent failure: {last}",
                if *failures == 1 { "" } else { "s" }
            ),
            JobFailure::StageAborted { stage, message } => {
                write!(
                    f,
                    "aborted due to stage failure in stage {stage}: {message}"
                )
            }
            JobFailure::Cancelled { reason } => write!(f, "cancelled: {reason}"),
        }
    }
}
