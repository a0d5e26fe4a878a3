//! ember-core: Ember's application runtime.
//!
//! The Rust counterpart of Spark core: the [`Context`], the DAG and task schedulers, the
//! scheduler backends, executors, and the block store; RDDs and shuffle come next. Its
//! [`closure`] module turns user functions in the driver into code executors can run; it is
//! the only module in Ember allowed `unsafe`.
//!
//! | module | Spark |
//! |---|---|
//! | [`context`] | `SparkContext` |
//! | [`master_url`] | `SparkMasterRegex` |
//! | [`local_cluster`] | `LocalSparkCluster` |
//! | [`config`] | `internal/config` entries of core |
//! | [`scheduler`] | `org.apache.spark.scheduler` (+ `cluster`, `local`) |
//! | [`executor`] | `org.apache.spark.executor` |
//! | [`storage`] | `BlockManager` (the part that serves blocks) |
//! | [`task_context`] | `TaskContext` |
//! | [`ui`] | `ConsoleProgressBar` |
//! | [`closure`] | closure serialization and the class loader, by other means |

pub mod closure;
pub mod config;
pub mod context;
pub mod error;
pub mod executor;
pub mod ids;
pub mod local_cluster;
pub mod master_url;
pub mod scheduler;
pub mod storage;
pub mod task_context;
pub mod ui;
pub mod util;

pub use context::{Context, ContextBuilder};
pub use error::{CoreError, JobFailure};
pub use executor::run_if_executor_role;
pub use master_url::MasterUrl;
pub use task_context::TaskContext;

/// Every configuration key the runtime reads: its own, the RPC layer's and the application
/// client's.
pub fn config_entries() -> Vec<ember_rpc::ConfigEntryDoc> {
    let mut entries = config::config_entries();
    entries.extend(ember_rpc::env::config_entries());
    entries.extend(ember_deploy::client::config_entries());
    entries
}
