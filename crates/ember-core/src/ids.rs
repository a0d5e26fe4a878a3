//! Identifiers of the application runtime: jobs, stages, tasks and executors.
//!
//! Spark uses bare `Int`s, `Long`s and `String`s; here each is a newtype with `Display`, so a
//! stage id cannot be passed where a job id is expected. Numbers are unique per driver and
//! printed as Spark prints them (`stage 3.0` is attempt 0 of stage 3, `TID 17` is task 17).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

numeric_id!(
    /// A job: one action (`run_job`), numbered from 0 per driver.
    JobId
);
numeric_id!(
    /// A stage: a set of tasks computing the same function over partitions, numbered from 0 per
    /// driver across all jobs.
    StageId
);
numeric_id!(
    /// A task attempt, numbered from 0 per driver (Spark's `TID`). A retried partition gets a new
    /// task id.
    TaskId
);

/// A source of increasing ids, safe to share between threads.
#[derive(Debug, Default)]
pub(crate) struct IdCounter(AtomicU64);

impl IdCounter {
    /// The next value, starting at 0.
    pub(crate) fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// One attempt of a stage: the task set that runs it (Spark prints it as `3.0`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StageAttempt {
    /// The stage.
    pub stage_id: StageId,
    /// The attempt, from 0; a stage is re-attempted when shuffle output it reads is lost.
    pub attempt: u32,
}

impl fmt::Display for StageAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.stage_id, self.attempt)
    }
}

impl fmt::Debug for StageAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StageAttempt({self})")
    }
}

/// An executor as the driver names it: the standalone executor number as text (`"0"`, `"1"`),
/// or `"driver"` for the in-process executor of local mode.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExecutorId(pub String);

impl ExecutorId {
    /// The id of the executor inside the driver process in local mode (Spark's
    /// `SparkContext.DRIVER_IDENTIFIER`).
    pub fn driver() -> Self {
        Self("driver".to_owned())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExecutorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ExecutorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExecutorId({})", self.0)
    }
}

impl From<&str> for ExecutorId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for ExecutorId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<ember_deploy::ids::ExecutorId> for ExecutorId {
    fn from(id: ember_deploy::ids::ExecutorId) -> Self {
        Self(id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_like_spark() {
        let attempt = StageAttempt {
            stage_id: StageId(3),
            attempt: 1,
        };
        assert_eq!(attempt.to_string(), "3.1");
        assert_eq!(TaskId(17).to_string(), "17");
        assert_eq!(format!("{:?}", JobId(2)), "JobId(2)");
        assert_eq!(ExecutorId::driver().to_string(), "driver");
        assert_eq!(
            ExecutorId::from(ember_deploy::ids::ExecutorId(4)).as_str(),
            "4"
        );
        let counter = IdCounter::default();
        assert_eq!((counter.next(), counter.next()), (0, 1));
    }
}
