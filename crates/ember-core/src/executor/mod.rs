//! The executor side: what an application binary does when a worker starts it as an executor.
//!
//! Spark counterparts: `CoarseGrainedExecutorBackend` (its `main` and endpoint), `Executor`,
//! `WorkerWatcher`.
//!
//! | module | what |
//! |---|---|
//! | [`role`] | the environment variables that select and describe the executor role |
//! | [`backend`] | the `Executor` endpoint: registration, tasks, heartbeats, exit |
//! | [`runner`] | task threads, task attempts, batched status reports (also used in local mode) |
//!
//! The entry point calls [`run_if_executor_role`] first thing: in an executor process it never
//! returns; otherwise it returns at once and the user's code runs as the driver.

pub mod backend;
pub mod role;
pub mod runner;

use std::sync::Arc;
use std::time::Duration;

use ember_rpc::{ConfLoader, RpcEnv, RpcEnvConfig};
use tracing::error;

use crate::error::CoreError;
use crate::scheduler::messages::EXECUTOR_ENDPOINT;
use crate::storage::{BLOCK_MANAGER_ENDPOINT, BlockManagerEndpoint, BlockStore};
use backend::ExecutorBackend;
pub use role::ExecutorRole;

/// How long the executor's RpcEnv may take to shut down before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Runs the executor and exits the process if this process was started in the executor role
/// (`EMBER_EXECUTOR=1`); returns at once otherwise.
pub fn run_if_executor_role() {
    let Some(role) = ExecutorRole::from_env() else {
        return;
    };
    let code = match role.and_then(run_executor) {
        Ok((0, _)) => 0,
        Ok((code, reason)) => {
            eprintln!("ember executor: exiting with status {code}: {reason}");
            code
        }
        Err(e) => {
            error!(error = %e, "executor failed");
            eprintln!("ember executor: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// Runs an executor until the driver stops it or goes away; returns the exit status and why.
pub fn run_executor(role: ExecutorRole) -> Result<(i32, String), CoreError> {
    // Registration carries the binary's digest; hash while the RpcEnv starts and connects.
    let _ = std::thread::Builder::new()
        .name("ember-digest".into())
        .spawn(|| {
            let _ = crate::closure::binary_digest();
        });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CoreError::Io {
            what: "starting the executor's async runtime",
            source,
        })?;
    runtime.block_on(async move {
        let mut conf = ConfLoader::new().entries(&crate::config_entries()).load()?;
        for (key, value) in &role.opts {
            conf.set(key.clone(), value.clone());
        }
        let env = RpcEnv::create(RpcEnvConfig::from_conf(
            "ember-executor",
            role.hostname.clone(),
            0,
            &conf,
        )?)
        .await?;
        let store = Arc::new(BlockStore::new());
        env.setup_endpoint(
            BLOCK_MANAGER_ENDPOINT,
            BlockManagerEndpoint::new(store.clone()),
        )
        .await?;
        let (exit_tx, mut exit_rx) = tokio::sync::mpsc::unbounded_channel();
        let backend = ExecutorBackend::new(&env, role, conf, store, exit_tx);
        if let Err(e) = env.setup_endpoint(EXECUTOR_ENDPOINT, backend).await {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, env.shutdown()).await;
            return Err(CoreError::Rpc(e));
        }
        let exit = exit_rx
            .recv()
            .await
            .unwrap_or_else(|| (1, "the executor endpoint stopped".to_owned()));
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, env.shutdown()).await;
        Ok(exit)
    })
}
