//! The Worker endpoint's children: launching executors and drivers, following their state
//! changes (reported by their runners) to the master, and cleaning up after applications.
//!
//! Spark counterpart: `Worker`'s `LaunchExecutor`, `LaunchDriver`, `ExecutorStateChanged` and
//! `DriverStateChanged` handlers, `maybeCleanupApplication` and `WorkDirCleanup`. The cores and
//! memory in use are not kept in counters: they are summed over the running children.

use std::collections::HashSet;
use std::path::PathBuf;

use ember_rpc::EndpointContext;
use tracing::{error, info, warn};

use super::WorkerEndpoint;
use crate::description::{ApplicationDescription, DriverDescription, ExecutorDescription};
use crate::error::DeployError;
use crate::ids::{AppId, DriverId, ExecutorId};
use crate::messages::{WorkerMessage, WorkerToMaster};
use crate::state::{DriverState, ExecutorState};
use crate::worker::app_cache::CACHE_DIR_NAME;
use crate::worker::bookkeeping::{
    DriverEntry, ExecutorEntry, create_dir, create_private_dir, safe_component, trim,
};
use crate::worker::command::RunnerHandle;
use crate::worker::driver_runner::{self, DriverLaunch};
use crate::worker::executor_runner::{self, ExecutorLaunch};
use crate::worker::sync::SyncJob;

impl WorkerEndpoint {
    /// What this worker runs, as the master's reconciliation messages list it.
    pub(super) fn executor_descriptions(&self) -> Vec<ExecutorDescription> {
        self.executors
            .values()
            .map(ExecutorEntry::description)
            .collect()
    }

    /// The drivers this worker runs.
    pub(super) fn driver_ids(&self) -> Vec<DriverId> {
        self.drivers.keys().cloned().collect()
    }

    /// Cores held by the running executors and drivers.
    pub(super) fn cores_used(&self) -> u32 {
        let executors: u32 = self.executors.values().map(|e| e.cores).sum();
        executors + self.drivers.values().map(|d| d.desc.cores).sum::<u32>()
    }

    /// Memory held by the running executors and drivers, MiB.
    pub(super) fn memory_used_mb(&self) -> u32 {
        let executors: u32 = self.executors.values().map(|e| e.memory_mb).sum();
        executors + self.drivers.values().map(|d| d.desc.mem_mb).sum::<u32>()
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn launch_executor(
        &mut self,
        ctx: &EndpointContext<WorkerMessage>,
        master_url: &str,
        app_id: AppId,
        exec_id: ExecutorId,
        app_desc: ApplicationDescription,
        cores: u32,
        memory_mb: u32,
    ) {
        if self.active_master_url().as_deref() != Some(master_url) {
            warn!(%master_url, "invalid master attempted to launch an executor");
            return;
        }
        let key = (app_id.clone(), exec_id);
        if self.executors.contains_key(&key) {
            warn!(%app_id, %exec_id, "asked to launch an executor that is already running");
            return;
        }
        info!(%app_id, %exec_id, app = %app_desc.name, cores, memory_mb, "asked to launch executor");
        let (dir, app_local_dir) = match self.executor_dirs(&app_id, exec_id) {
            Ok(dirs) => dirs,
            Err(e) => {
                error!(%app_id, %exec_id, error = %e, "failed to launch executor");
                self.sync_executor_state(
                    app_id,
                    exec_id,
                    ExecutorState::Failed,
                    Some(e.to_string()),
                    None,
                );
                return;
            }
        };
        self.app_local_dirs
            .insert(app_id.clone(), app_local_dir.clone());
        let handle = RunnerHandle::new();
        let launch = ExecutorLaunch {
            app_id: app_id.clone(),
            exec_id,
            app_desc: app_desc.clone(),
            cores,
            memory_mb,
            dir: dir.clone(),
            app_local_dir,
            terminate_timeout: self.config.executor_terminate_timeout,
        };
        let runner_ctx = self.runner_ctx.clone().expect("set in on_start");
        ctx.spawn(executor_runner::run(runner_ctx, launch, &handle));
        self.executors.insert(
            key,
            ExecutorEntry {
                app_id,
                exec_id,
                cores,
                memory_mb,
                app_desc,
                state: ExecutorState::Launching,
                exit_status: None,
                dir,
                handle,
            },
        );
    }

    /// Creates the executor's directory `<work dir>/<app id>/<exec id>` and, for the
    /// application's first executor here, its private scratch directory `<app id>/local`;
    /// returns both.
    pub(super) fn executor_dirs(
        &self,
        app_id: &AppId,
        exec_id: ExecutorId,
    ) -> Result<(PathBuf, PathBuf), DeployError> {
        safe_component(app_id.as_str())?;
        let app_dir = self.config.work_dir.join(app_id.as_str());
        let dir = app_dir.join(exec_id.to_string());
        create_dir(&dir)?;
        let local = match self.app_local_dirs.get(app_id) {
            Some(local) => local.clone(),
            None => {
                let local = app_dir.join("local");
                create_private_dir(&local)?;
                local
            }
        };
        Ok((dir, local))
    }

    pub(super) fn launch_driver(
        &mut self,
        ctx: &EndpointContext<WorkerMessage>,
        driver_id: DriverId,
        desc: DriverDescription,
    ) {
        if self.drivers.contains_key(&driver_id) {
            warn!(%driver_id, "asked to launch a driver that is already running");
            return;
        }
        info!(%driver_id, "asked to launch driver");
        let dir = self.config.work_dir.join(driver_id.as_str());
        if let Err(e) = safe_component(driver_id.as_str()).and_then(|()| create_dir(&dir)) {
            error!(%driver_id, error = %e, "failed to launch driver");
            if let Some(master) = self.active_master_ref() {
                let _ = master.send(WorkerToMaster::DriverStateChanged {
                    driver_id,
                    state: DriverState::Error,
                    exception: Some(e.to_string()),
                });
            }
            return;
        }
        let handle = RunnerHandle::new();
        let launch = DriverLaunch {
            driver_id: driver_id.clone(),
            desc: desc.clone(),
            dir: dir.clone(),
            terminate_timeout: self.config.driver_terminate_timeout,
        };
        let runner_ctx = self.runner_ctx.clone().expect("set in on_start");
        ctx.spawn(driver_runner::run(runner_ctx, launch, &handle));
        self.drivers.insert(
            driver_id.clone(),
            DriverEntry {
                driver_id,
                desc,
                dir,
                handle,
            },
        );
    }

    pub(super) fn sync_executor_state(
        &self,
        app_id: AppId,
        exec_id: ExecutorId,
        state: ExecutorState,
        message: Option<String>,
        exit_status: Option<i32>,
    ) {
        if self.active_master_ref().is_none() {
            warn!(%app_id, %exec_id, %state, "no master to report an executor state change to");
            return;
        }
        let Some(sync) = &self.sync else { return };
        let _ = sync.send(SyncJob {
            app_id,
            exec_id,
            state,
            message,
            exit_status,
        });
    }

    pub(super) fn executor_state_changed(
        &mut self,
        ctx: &EndpointContext<WorkerMessage>,
        app_id: AppId,
        exec_id: ExecutorId,
        state: ExecutorState,
        message: Option<String>,
        exit_status: Option<i32>,
    ) {
        self.sync_executor_state(app_id.clone(), exec_id, state, message.clone(), exit_status);
        let key = (app_id.clone(), exec_id);
        if let Some(entry) = self.executors.get_mut(&key) {
            entry.state = state;
            entry.exit_status = exit_status;
        }
        if !state.is_finished() {
            return;
        }
        info!(%app_id, %exec_id, %state, ?message, ?exit_status, "executor finished");
        match self.executors.remove(&key) {
            Some(entry) => {
                self.finished_executors.push_back(entry.summary());
                trim(&mut self.finished_executors, self.config.retained_executors);
            }
            None => info!(%app_id, %exec_id, "unknown executor finished"),
        }
        self.maybe_clean_up_application(ctx, &app_id);
    }

    pub(super) fn driver_state_changed(
        &mut self,
        driver_id: DriverId,
        state: DriverState,
        exception: Option<String>,
    ) {
        match state {
            DriverState::Error => warn!(%driver_id, ?exception, "driver failed with an error"),
            DriverState::Failed => warn!(%driver_id, "driver exited with a non-zero code"),
            DriverState::Finished => info!(%driver_id, "driver exited successfully"),
            DriverState::Killed => info!(%driver_id, "driver was killed by the user"),
            other => info!(%driver_id, state = %other, "driver changed state"),
        }
        match self.active_master_ref() {
            Some(master) => {
                let _ = master.send(WorkerToMaster::DriverStateChanged {
                    driver_id: driver_id.clone(),
                    state,
                    exception: exception.clone(),
                });
            }
            None => warn!(%driver_id, "no master to report a driver state change to"),
        }
        if let Some(entry) = self.drivers.remove(&driver_id) {
            self.finished_drivers
                .push_back(entry.summary(state, exception));
            trim(&mut self.finished_drivers, self.config.retained_drivers);
        }
    }

    /// Spark's `maybeCleanupApplication`: once the application finished and none of its
    /// executors runs here, delete its scratch directory (its logs stay for the cleanup timer).
    pub(super) fn maybe_clean_up_application(
        &mut self,
        ctx: &EndpointContext<WorkerMessage>,
        app_id: &AppId,
    ) {
        let running = self.executors.keys().any(|(app, _)| app == app_id);
        if running || !self.finished_apps.contains(app_id) {
            return;
        }
        self.finished_apps.remove(app_id);
        if let Some(dir) = self.app_local_dirs.remove(app_id) {
            info!(%app_id, dir = %dir.display(), "cleaning up the local directory of a finished application");
            ctx.spawn(async move {
                let _ = tokio::fs::remove_dir_all(&dir).await;
            });
        }
    }

    pub(super) fn clean_up_work_dir(&self, ctx: &EndpointContext<WorkerMessage>) {
        let Some(cleanup) = self.config.cleanup.clone() else {
            return;
        };
        let mut in_use: HashSet<String> = self
            .executors
            .keys()
            .map(|(app, _)| app.to_string())
            .chain(self.drivers.keys().map(ToString::to_string))
            .collect();
        in_use.insert(CACHE_DIR_NAME.to_owned());
        let binaries_in_use: HashSet<String> = self
            .executors
            .values()
            .map(|e| &e.app_desc.command.binary.digest)
            .chain(self.drivers.values().map(|d| &d.desc.command.binary.digest))
            .map(|digest| digest.to_ascii_lowercase())
            .collect();
        let work_dir = self.config.work_dir.clone();
        let cache = self.runner_ctx.as_ref().map(|r| r.cache.clone());
        ctx.spawn(async move {
            let _ = tokio::task::spawn_blocking(move || {
                let now = std::time::SystemTime::now();
                crate::worker::cleanup::clean_work_dir(
                    &work_dir,
                    &in_use,
                    cleanup.app_data_ttl,
                    now,
                );
                if let Some(cache) = cache {
                    cache.prune(&binaries_in_use, cleanup.app_data_ttl, now);
                }
            })
            .await;
        });
    }
}
