//! The driver ↔ executor protocol, with Spark's message names.
//!
//! Spark counterpart: `CoarseGrainedClusterMessages` and `TaskState`. Two endpoints talk:
//! the driver's `CoarseGrainedScheduler` ([`DriverMessage`]) and each executor's `Executor`
//! ([`ExecutorMessage`]). Everything is one-way unless marked "ask".
//!
//! ```text
//!  executor                                   driver (CoarseGrainedScheduler)
//!     │── RegisterExecutor (ask) ──────────────▶│  duplicate id or binary digest mismatch: refused
//!     │◀───────────── ExecutorRegistration ─────│  (the application's configuration)
//!     │── LaunchedExecutor ────────────────────▶│  cores become free → make_offers
//!     │◀──────── LaunchTask {binaries, tasks} ──│
//!     │── StatusUpdate {RUNNING…, FINISHED…} ──▶│  cores free again → make_offers
//!     │── Heartbeat (ask) ─────────────────────▶│  every ember.executor.heartbeatInterval
//!     │◀──────────────────── StopExecutor ──────│  on Context::stop
//! ```
//!
//! Two departures from Spark, both for throughput with tiny tasks: `LaunchTask` and
//! `StatusUpdate` carry batches (one task or update per message in Spark), and a stage's task
//! binary travels once per executor inside the first `LaunchTask` that needs it (Spark
//! broadcasts it), after which tasks name their stage only.

use std::fmt;

use ember_rpc::EndpointRef;
use serde::{Deserialize, Serialize};

use crate::closure::BinaryDigest;
use crate::ids::{ExecutorId, StageAttempt, TaskId};
use crate::storage::BlockId;
use crate::util::ByteBuf;

/// Name of the driver's scheduler endpoint (Spark's `CoarseGrainedSchedulerBackend.ENDPOINT_NAME`).
pub const DRIVER_ENDPOINT: &str = "CoarseGrainedScheduler";
/// Name of an executor's endpoint.
pub const EXECUTOR_ENDPOINT: &str = "Executor";

/// The life of one task attempt.
///
/// ```text
///   LAUNCHING ──executor starts it──▶ RUNNING ──returned a result──▶ FINISHED
///       │                                ├──panicked or failed─────▶ FAILED
///       │                                └──killed─────────────────▶ KILLED
///       └──────────── its executor was lost (either state) ────────▶ LOST
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskState {
    /// Sent to an executor, not started yet (it may wait in the executor's queue).
    Launching,
    /// Running on an executor thread.
    Running,
    /// Returned a result.
    Finished,
    /// Panicked or returned an error.
    Failed,
    /// Killed on request.
    Killed,
    /// Its executor was lost.
    Lost,
}

impl TaskState {
    /// Whether the attempt is over.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Finished | TaskState::Failed | TaskState::Killed | TaskState::Lost
        )
    }

    /// Whether the attempt is over without a result.
    pub fn is_failed(self) -> bool {
        matches!(
            self,
            TaskState::Failed | TaskState::Killed | TaskState::Lost
        )
    }

    /// The name as Spark prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Launching => "LAUNCHING",
            TaskState::Running => "RUNNING",
            TaskState::Finished => "FINISHED",
            TaskState::Failed => "FAILED",
            TaskState::Killed => "KILLED",
            TaskState::Lost => "LOST",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of task a binary holds. Only result tasks exist yet; shuffle map tasks will be a
/// second kind, reporting a map status instead of a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskKind {
    /// Computes a partition of a job's result (Spark's `ResultTask`).
    Result,
}

/// The code of one stage attempt: an encoded [`TaskFn`](crate::closure::TaskFn). Sent once to
/// each executor that runs tasks of the stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskBinary {
    /// The stage attempt.
    pub stage: StageAttempt,
    /// What the tasks compute.
    pub kind: TaskKind,
    /// The encoded closure.
    pub bytes: ByteBuf,
}

/// One task attempt to run (Spark's `TaskDescription`, minus the binary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDescription {
    /// The attempt's id.
    pub task_id: TaskId,
    /// Which attempt of its partition this is, from 0.
    pub attempt: u32,
    /// The stage attempt whose binary it runs.
    pub stage: StageAttempt,
    /// The partition it computes.
    pub partition: u32,
    /// Its index in the task set.
    pub index: u32,
}

/// Where a finished task's result is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskResult {
    /// In the message (Spark's `DirectTaskResult`).
    Direct(ByteBuf),
    /// Too large for a message: kept in the executor's block store until the driver fetched it
    /// (Spark's `IndirectTaskResult`).
    Indirect {
        /// The block holding it.
        block_id: BlockId,
        /// Its size in bytes.
        size: u64,
    },
}

/// Why a task attempt failed (Spark's `TaskFailedReason` family).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskFailureReason {
    /// The user's closure panicked (Spark's `ExceptionFailure`).
    Panic {
        /// The panic message.
        message: String,
    },
    /// The task could not run or its result could not be encoded.
    Error {
        /// What went wrong.
        message: String,
    },
    /// The executor running it was lost (Spark's `ExecutorLostFailure`).
    ExecutorLost {
        /// The executor.
        executor_id: ExecutorId,
        /// Why it was lost.
        reason: String,
        /// Whether the application may have caused the loss; only then does it count toward
        /// the task's failures.
        caused_by_app: bool,
    },
    /// The task was killed (Spark's `TaskKilled`).
    Killed {
        /// Why.
        reason: String,
    },
    /// The task finished but its result could not be fetched (Spark's `TaskResultLost`).
    ResultLost {
        /// Why.
        reason: String,
    },
}

impl TaskFailureReason {
    /// Whether the failure counts toward `ember.task.maxFailures`.
    pub fn counts_towards_failures(&self) -> bool {
        match self {
            TaskFailureReason::ExecutorLost { caused_by_app, .. } => *caused_by_app,
            TaskFailureReason::Killed { .. } => false,
            _ => true,
        }
    }

    /// The state a task with this failure ends in.
    pub fn state(&self) -> TaskState {
        match self {
            TaskFailureReason::ExecutorLost { .. } => TaskState::Lost,
            TaskFailureReason::Killed { .. } => TaskState::Killed,
            _ => TaskState::Failed,
        }
    }
}

impl fmt::Display for TaskFailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskFailureReason::Panic { message } => write!(f, "the task panicked: {message}"),
            TaskFailureReason::Error { message } => write!(f, "the task failed: {message}"),
            TaskFailureReason::ExecutorLost {
                executor_id,
                reason,
                ..
            } => write!(f, "executor {executor_id} was lost: {reason}"),
            TaskFailureReason::Killed { reason } => write!(f, "the task was killed: {reason}"),
            TaskFailureReason::ResultLost { reason } => {
                write!(f, "the task's result could not be fetched: {reason}")
            }
        }
    }
}

/// What a status update carries besides the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatusData {
    /// Nothing (RUNNING).
    None,
    /// The result (FINISHED).
    Result(TaskResult),
    /// Why it failed (FAILED, KILLED, LOST).
    Failure(TaskFailureReason),
}

/// One task's new state (Spark's `StatusUpdate` without the executor id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The task attempt.
    pub task_id: TaskId,
    /// Its new state.
    pub state: TaskState,
    /// Its result or failure.
    pub data: StatusData,
}

/// Everything the driver's `CoarseGrainedScheduler` endpoint receives.
#[derive(Debug, Serialize, Deserialize)]
pub enum DriverMessage {
    /// Ask → [`ExecutorRegistration`]. Refused (the ask fails with the reason) for a duplicate
    /// id, or for a binary digest that differs from the driver's.
    RegisterExecutor {
        /// The executor's id, given by the cluster manager.
        executor_id: ExecutorId,
        /// Its endpoint.
        executor_ref: EndpointRef<ExecutorMessage>,
        /// The host it runs on.
        hostname: String,
        /// Cores it runs tasks on.
        cores: u32,
        /// Links to its logs (`stdout`, `stderr`), when its worker serves them.
        log_urls: Vec<(String, String)>,
        /// The SHA-256 of the binary it runs.
        binary_digest: BinaryDigest,
    },
    /// The executor is ready for tasks: its cores become free.
    LaunchedExecutor {
        /// The executor.
        executor_id: ExecutorId,
    },
    /// Tasks changed state (a batch; see the module documentation). Finished tasks free their
    /// cores, which are offered again.
    StatusUpdate {
        /// The executor reporting.
        executor_id: ExecutorId,
        /// The updates, in the order they happened.
        updates: Vec<TaskStatus>,
    },
    /// Ask → [`HeartbeatResponse`]: the executor is alive.
    Heartbeat {
        /// The executor.
        executor_id: ExecutorId,
        /// Tasks it holds (queued or running).
        tasks: u32,
    },
    /// The executor is going away, or the cluster manager says it went: its tasks are
    /// resubmitted.
    RemoveExecutor {
        /// The executor.
        executor_id: ExecutorId,
        /// Why.
        reason: String,
        /// Whether the application may have caused the loss (see
        /// [`TaskFailureReason::ExecutorLost`]).
        caused_by_app: bool,
    },
    /// Messages from inside the driver process.
    #[serde(skip)]
    Internal(DriverInternal),
}

/// Driver-internal messages of the `CoarseGrainedScheduler` endpoint.
#[derive(Debug)]
pub enum DriverInternal {
    /// Offer free cores to pending tasks (on demand and every
    /// `ember.scheduler.revive.interval`).
    ReviveOffers,
    /// Ask → `bool`: send `StopExecutor` to every executor.
    StopExecutors,
    /// Kill a task attempt.
    KillTask {
        /// The task.
        task_id: TaskId,
        /// Its executor.
        executor_id: ExecutorId,
        /// Whether to interrupt it if it is running.
        interrupt_thread: bool,
        /// Why.
        reason: String,
    },
    /// Timer: declare executors without a heartbeat for `ember.network.timeout` lost.
    CheckHeartbeats,
    /// A worker was lost (from the AppClient).
    RemoveWorker {
        /// The worker's id.
        worker_id: String,
        /// Its host.
        host: String,
        /// Why.
        message: String,
    },
    /// Ask → `usize`: how many executors are registered.
    NumExecutors,
    /// Ask → `Vec<ExecutorId>`: the driver is about to have these executors killed. It offers
    /// them no more tasks, and their loss does not count against their tasks. The answer is
    /// the ones that were registered and not already being killed.
    KillExecutors {
        /// The executors.
        executor_ids: Vec<ExecutorId>,
    },
}

/// The reply to [`DriverMessage::RegisterExecutor`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorRegistration {
    /// The application's id, once the cluster manager gave one.
    pub app_id: Option<String>,
    /// The application's `ember.*` settings (secrets left out), for settings executors read.
    pub conf: Vec<(String, String)>,
}

/// The reply to [`DriverMessage::Heartbeat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// False when the driver no longer knows this executor (it was declared lost): the
    /// executor should exit.
    pub known: bool,
}

/// Everything an executor's `Executor` endpoint receives.
#[derive(Debug, Serialize, Deserialize)]
pub enum ExecutorMessage {
    /// Run these tasks (a batch). `binaries` holds the code of stages this executor has not
    /// been sent yet.
    LaunchTask {
        /// Task binaries new to this executor.
        binaries: Vec<TaskBinary>,
        /// The tasks.
        tasks: Vec<TaskDescription>,
    },
    /// Kill a task attempt: dropped if still queued; if running, its
    /// [`TaskContext`](crate::TaskContext) says it is interrupted, and it is reported KILLED
    /// when it returns (a thread cannot be stopped from outside).
    KillTask {
        /// The task.
        task_id: TaskId,
        /// Whether to interrupt it if running.
        interrupt_thread: bool,
        /// Why.
        reason: String,
    },
    /// These stage attempts are over: forget their binaries.
    ReleaseTaskBinaries {
        /// The stage attempts.
        stages: Vec<StageAttempt>,
    },
    /// Stop: the application is done.
    StopExecutor,
    /// Exit with this status.
    Shutdown {
        /// The exit status.
        exit_code: i32,
    },
    /// Messages from inside the executor process.
    #[serde(skip)]
    Internal(ExecutorInternal),
}

/// Executor-internal messages.
#[derive(Debug)]
pub enum ExecutorInternal {
    /// Timer: send a heartbeat.
    SendHeartbeat,
    /// The heartbeat's answer said the driver forgot this executor, or heartbeats kept failing.
    DriverLostUs {
        /// Why.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::StageId;

    fn round_trip<T: Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
        postcard::from_bytes(&postcard::to_allocvec(value).unwrap()).unwrap()
    }

    #[test]
    fn wire_values_round_trip() {
        let stage = StageAttempt {
            stage_id: StageId(2),
            attempt: 1,
        };
        let desc = TaskDescription {
            task_id: TaskId(9),
            attempt: 3,
            stage,
            partition: 4,
            index: 4,
        };
        assert_eq!(round_trip(&desc), desc);
        let binary = TaskBinary {
            stage,
            kind: TaskKind::Result,
            bytes: ByteBuf(vec![1, 2, 3]),
        };
        assert_eq!(round_trip(&binary), binary);
        for status in [
            TaskStatus {
                task_id: TaskId(1),
                state: TaskState::Running,
                data: StatusData::None,
            },
            TaskStatus {
                task_id: TaskId(1),
                state: TaskState::Finished,
                data: StatusData::Result(TaskResult::Direct(ByteBuf(vec![7; 10]))),
            },
            TaskStatus {
                task_id: TaskId(2),
                state: TaskState::Finished,
                data: StatusData::Result(TaskResult::Indirect {
                    block_id: BlockId::TaskResult(TaskId(2)),
                    size: 1 << 30,
                }),
            },
            TaskStatus {
                task_id: TaskId(3),
                state: TaskState::Failed,
                data: StatusData::Failure(TaskFailureReason::Panic {
                    message: "boom".into(),
                }),
            },
            TaskStatus {
                task_id: TaskId(4),
                state: TaskState::Lost,
                data: StatusData::Failure(TaskFailureReason::ExecutorLost {
                    executor_id: "1".into(),
                    reason: "gone".into(),
                    caused_by_app: false,
                }),
            },
        ] {
            assert_eq!(round_trip(&status), status);
        }
        let reg = ExecutorRegistration {
            app_id: Some("app-1".into()),
            conf: vec![("ember.a".into(), "b".into())],
        };
        assert_eq!(round_trip(&reg), reg);
        assert_eq!(
            round_trip(&HeartbeatResponse { known: true }),
            HeartbeatResponse { known: true }
        );
    }

    #[test]
    fn task_states() {
        use TaskState::*;
        let finished: Vec<_> = [Launching, Running, Finished, Failed, Killed, Lost]
            .into_iter()
            .filter(|s| s.is_finished())
            .collect();
        assert_eq!(finished, [Finished, Failed, Killed, Lost]);
        assert!(!Finished.is_failed() && Lost.is_failed());
        assert_eq!(Lost.to_string(), "LOST");
    }

    #[test]
    fn failure_counting_follows_spark() {
        let lost = |caused_by_app| TaskFailureReason::ExecutorLost {
            executor_id: "0".into(),
            reason: "x".into(),
            caused_by_app,
        };
        assert!(lost(true).counts_towards_failures());
        assert!(!lost(false).counts_towards_failures());
        assert!(!TaskFailureReason::Killed { reason: "x".into() }.counts_towards_failures());
        assert!(
            TaskFailureReason::Panic {
                message: "x".into()
            }
            .counts_towards_failures()
        );
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let _ = postcard::from_bytes::<TaskStatus>(&bytes);
            let _ = postcard::from_bytes::<TaskDescription>(&bytes);
            let _ = postcard::from_bytes::<TaskBinary>(&bytes);
            let _ = postcard::from_bytes::<ExecutorRegistration>(&bytes);
        }
    }
}
