//! What applications, drivers and executors ask for, and how a worker starts their processes.
//!
//! Spark counterparts: `ApplicationDescription`, `DriverDescription`, `ExecutorDescription`,
//! `Command`. Ember starts one binary in several roles: the driver's own executable is fetched by
//! workers (verified by its SHA-256 digest) and run in the executor role, so a command names a
//! binary and its arguments rather than a JVM main class and a classpath.

use serde::{Deserialize, Serialize};

use crate::ids::{AppId, ExecutorId};
use crate::state::ExecutorState;
use ember_rpc::RpcAddress;

/// Placeholders a worker substitutes in [`Command::arguments`] and [`Command::environment`].
pub mod placeholder {
    /// The executor id within its application.
    pub const EXECUTOR_ID: &str = "{{EXECUTOR_ID}}";
    /// The worker's host.
    pub const HOSTNAME: &str = "{{HOSTNAME}}";
    /// Cores granted to the executor.
    pub const CORES: &str = "{{CORES}}";
    /// Memory granted to the executor, in MiB.
    pub const MEMORY_MB: &str = "{{MEMORY_MB}}";
    /// The application id.
    pub const APP_ID: &str = "{{APP_ID}}";
    /// The worker endpoint's URL (`ember://Worker@host:port`), so the child can watch its worker.
    pub const WORKER_URL: &str = "{{WORKER_URL}}";
}

/// Where a worker gets an application binary from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinaryLocation {
    /// The `FileServer` endpoint of an RpcEnv (normally the driver's), which serves files by
    /// digest.
    FileServer(RpcAddress),
    /// A path readable on the worker's host (shared storage, or the same machine).
    LocalPath(String),
}

/// An application binary, identified by its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppBinary {
    /// File name to give it (for logs and `ps`), e.g. `pi`.
    pub name: String,
    /// SHA-256 of its bytes, lower-case hex; the worker refuses a binary whose digest differs.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Where to fetch it.
    pub location: BinaryLocation,
}

/// How to start a process: which binary, with which arguments and environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The binary to run.
    pub binary: AppBinary,
    /// Arguments, possibly containing [`placeholder`]s.
    pub arguments: Vec<String>,
    /// Extra environment variables, possibly containing [`placeholder`]s.
    pub environment: Vec<(String, String)>,
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.binary.name)?;
        for arg in &self.arguments {
            write!(f, " {arg}")?;
        }
        Ok(())
    }
}

/// What an application asks the master for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationDescription {
    /// `ember.app.name`.
    pub name: String,
    /// `ember.cores.max`; `None` means the master's `ember.deploy.defaultCores`.
    pub max_cores: Option<u32>,
    /// `ember.executor.memory`, in MiB.
    pub memory_per_executor_mb: u32,
    /// `ember.executor.cores`; `None` means one executor per worker taking every free core.
    pub cores_per_executor: Option<u32>,
    /// `ember.executor.instances` or a later request; `None` means no limit.
    pub initial_executor_limit: Option<u32>,
    /// How workers start this application's executors.
    pub command: Command,
    /// The driver's application UI, if it has one.
    pub app_ui_url: Option<String>,
    /// The user running the driver.
    pub user: String,
}

/// What a driver submitted in cluster mode asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverDescription {
    /// Memory for the driver process, in MiB.
    pub mem_mb: u32,
    /// Cores for the driver process.
    pub cores: u32,
    /// Restart the driver when it exits with a non-zero status or its worker is lost.
    pub supervise: bool,
    /// How a worker starts the driver.
    pub command: Command,
}

/// An executor as its worker reports it (after registration and in recovery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorDescription {
    /// Its application.
    pub app_id: AppId,
    /// Its id within the application.
    pub exec_id: ExecutorId,
    /// Cores it holds.
    pub cores: u32,
    /// Memory it holds, in MiB.
    pub memory_mb: u32,
    /// Its state on the worker.
    pub state: ExecutorState,
}
