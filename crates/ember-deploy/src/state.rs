//! Lifecycle states of masters, workers, applications, drivers and executors.
//!
//! Spark counterparts: `RecoveryState`, `WorkerState`, `ApplicationState`, `DriverState`,
//! `ExecutorState`. Names serialize in upper case, as Spark's JSON shows them.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! display_as_serde_name {
    ($name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $name {
            /// The state's name as Spark prints it (`ALIVE`, `RUNNING`, …).
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// Whether a master leads the cluster.
///
/// ```text
///   STANDBY ──elected, nothing persisted──────────────────────────────▶ ALIVE
///      │                                                                  ▲
///      └──elected, state persisted──▶ RECOVERING ──all answered or ──▶ COMPLETING_RECOVERY
///                                                  recovery timeout
///   any ──leadership revoked──▶ (process exits)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MasterState {
    /// Not the leader: refuses registrations and submissions.
    Standby,
    /// Leading: schedules.
    Alive,
    /// Leading, waiting for the workers and applications it read back to answer.
    Recovering,
    /// Removing what did not answer; ALIVE right after.
    CompletingRecovery,
}
display_as_serde_name!(MasterState {
    Standby => "STANDBY",
    Alive => "ALIVE",
    Recovering => "RECOVERING",
    CompletingRecovery => "COMPLETING_RECOVERY",
});

/// A worker as the master sees it.
///
/// ```text
///   (registered) ──▶ ALIVE ──heartbeat timeout / disconnect / replaced──▶ DEAD ──culled──▶ (gone)
///                     ▲  │
///     answered        │  └──master recovery──▶ UNKNOWN ──no answer in time──▶ DEAD
///     MasterChanged ──┘◀──────────────────────────┘
///   ALIVE ──decommissioned──▶ DECOMMISSIONED ──heartbeat timeout──▶ DEAD
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkerState {
    /// Registered and heartbeating; only ALIVE workers get executors.
    Alive,
    /// Timed out, disconnected or replaced; kept for the UI until culled.
    Dead,
    /// Being drained: gets no new executors.
    Decommissioned,
    /// Read back during recovery and not yet heard from.
    Unknown,
}
display_as_serde_name!(WorkerState {
    Alive => "ALIVE",
    Dead => "DEAD",
    Decommissioned => "DECOMMISSIONED",
    Unknown => "UNKNOWN",
});

/// An application as the master sees it.
///
/// ```text
///   (registered) ──▶ WAITING ──first executor──▶ RUNNING ──unregistered / driver gone──▶ FINISHED
///                       │                           ├──too many executor failures──────▶ FAILED
///                       │                           └──killed from the UI──────────────▶ KILLED
///   recovery: any ──▶ UNKNOWN ──driver acknowledged──▶ WAITING; no answer ──▶ FINISHED
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApplicationState {
    /// Registered, no executor granted yet.
    Waiting,
    /// Has had executors.
    Running,
    /// Ended normally.
    Finished,
    /// Removed after too many executor failures.
    Failed,
    /// Killed by a user.
    Killed,
    /// Read back during recovery, not yet acknowledged by its driver.
    Unknown,
}
display_as_serde_name!(ApplicationState {
    Waiting => "WAITING",
    Running => "RUNNING",
    Finished => "FINISHED",
    Failed => "FAILED",
    Killed => "KILLED",
    Unknown => "UNKNOWN",
});

impl ApplicationState {
    /// Whether the application has ended.
    pub fn is_finished(self) -> bool {
        !matches!(self, ApplicationState::Waiting | ApplicationState::Running)
    }
}

/// A driver submitted in cluster mode.
///
/// ```text
///   SUBMITTED ──launched on a worker──▶ RUNNING ──exit 0──▶ FINISHED
///      │                                  ├──exit ≠ 0, not supervised──▶ FAILED
///      │                                  ├──worker lost, supervised──▶ RELAUNCHING (a new driver id is SUBMITTED)
///      │                                  ├──could not start / worker lost──▶ ERROR
///      └──killed while waiting──▶ KILLED  └──killed──▶ KILLED
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DriverState {
    /// Accepted, waiting for a worker.
    Submitted,
    /// Assigned to a worker.
    Running,
    /// Exited with status 0.
    Finished,
    /// Being restarted under a new id.
    Relaunching,
    /// Temporarily unknown during recovery.
    Unknown,
    /// Killed by a user.
    Killed,
    /// Exited with a non-zero status and was not supervised.
    Failed,
    /// Could not be run or restarted.
    Error,
}
display_as_serde_name!(DriverState {
    Submitted => "SUBMITTED",
    Running => "RUNNING",
    Finished => "FINISHED",
    Relaunching => "RELAUNCHING",
    Unknown => "UNKNOWN",
    Killed => "KILLED",
    Failed => "FAILED",
    Error => "ERROR",
});

impl DriverState {
    /// Whether the driver has ended.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            DriverState::Finished
                | DriverState::Killed
                | DriverState::Failed
                | DriverState::Error
                | DriverState::Relaunching
        )
    }
}

/// An executor process.
///
/// ```text
///   LAUNCHING ──process started──▶ RUNNING ──exited──▶ EXITED
///       │                            ├──killed────────▶ KILLED
///       └──could not start──▶ FAILED ├──worker lost───▶ LOST
///                                    └──decommissioned──▶ DECOMMISSIONED (alive, no new tasks)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutorState {
    /// Being started by its worker.
    Launching,
    /// Process running.
    Running,
    /// Killed on request.
    Killed,
    /// Could not be started, or failed.
    Failed,
    /// Its worker was lost.
    Lost,
    /// The process exited by itself.
    Exited,
    /// Its worker is being drained.
    Decommissioned,
}
display_as_serde_name!(ExecutorState {
    Launching => "LAUNCHING",
    Running => "RUNNING",
    Killed => "KILLED",
    Failed => "FAILED",
    Lost => "LOST",
    Exited => "EXITED",
    Decommissioned => "DECOMMISSIONED",
});

impl ExecutorState {
    /// Whether the executor is gone (DECOMMISSIONED is not: the process still runs).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            ExecutorState::Killed
                | ExecutorState::Failed
                | ExecutorState::Lost
                | ExecutorState::Exited
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_sparks_json() {
        assert_eq!(
            serde_json::to_string(&WorkerState::Alive).unwrap(),
            "\"ALIVE\""
        );
        assert_eq!(
            serde_json::to_string(&MasterState::CompletingRecovery).unwrap(),
            "\"COMPLETING_RECOVERY\""
        );
        assert_eq!(
            MasterState::CompletingRecovery.to_string(),
            "COMPLETING_RECOVERY"
        );
        assert_eq!(ExecutorState::Decommissioned.as_str(), "DECOMMISSIONED");
        assert!(!ExecutorState::Decommissioned.is_finished());
        assert!(ExecutorState::Lost.is_finished());
        assert!(ApplicationState::Killed.is_finished());
        assert!(!ApplicationState::Running.is_finished());
    }
}
