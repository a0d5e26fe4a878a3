//! Stages: a set of tasks computing one function over partitions, and the stages they wait on.
//!
//! Spark counterparts: `Stage`, `ResultStage` (and later `ShuffleMapStage`). A job today is one
//! result stage with no parents; the parent list and the stage kinds are where shuffle map
//! stages will slot in.

use std::collections::HashSet;
use std::sync::Arc;

use crate::ids::{JobId, StageId};
use crate::scheduler::messages::TaskBinary;

/// What a stage computes.
#[derive(Debug)]
pub(crate) enum StageKind {
    /// The last stage of a job: its tasks compute the job's results (Spark's `ResultStage`).
    Result {
        /// The job it belongs to.
        job: JobId,
        /// The encoded closure, without a stage attempt yet.
        func: Arc<Vec<u8>>,
    },
}

/// One stage.
#[derive(Debug)]
pub(crate) struct Stage {
    pub(crate) id: StageId,
    /// Stages whose output this one reads; it runs once they are all available.
    pub(crate) parents: Vec<StageId>,
    /// How many partitions the stage's data has.
    pub(crate) num_partitions: usize,
    /// The job that created it (its task sets are scheduled with this job's priority).
    pub(crate) first_job: JobId,
    /// The next attempt number.
    pub(crate) next_attempt: u32,
    /// Partitions whose tasks have not succeeded in the current attempt.
    pub(crate) pending_partitions: HashSet<usize>,
    pub(crate) kind: StageKind,
    /// The binary of the latest attempt.
    pub(crate) latest_binary: Option<Arc<TaskBinary>>,
}
