//! Applications and their executors, and `schedule()`.
//!
//! Spark counterparts: the `RegisterApplication`, `UnregisterApplication`,
//! `MasterChangeAcknowledged`, `ExecutorStateChanged`, `RequestExecutors` and `KillExecutors`
//! handlers, `createApplication`, `registerApplication`, `removeApplication`, `schedule`,
//! `startExecutorsOnWorkers`, `allocateWorkerResourceToExecutors`, `launchExecutor`,
//! `killExecutor`. The placement arithmetic itself is in [`crate::master::scheduling`].

use tracing::{debug, error, info, warn};

use ember_rpc::RpcAddress;

use super::{Effect, Master, MasterToAppPlain, MasterToWorkerPlain, ToApp};
use crate::description::ApplicationDescription;
use crate::ids::{AppId, ExecutorId};
use crate::master::info::ApplicationInfo;
use crate::master::persistence::{ApplicationRecord, PersistOp};
use crate::master::scheduling::{self, Capacity, ExecutorAsk};
use crate::state::{ApplicationState, ExecutorState, MasterState};

impl ApplicationInfo {
    /// What recovery needs of this application.
    pub fn record(&self) -> ApplicationRecord {
        ApplicationRecord {
            id: self.id.clone(),
            desc: self.desc.clone(),
            start_time_ms: self.start_time_ms,
            driver_address: self.driver_address.clone(),
        }
    }
}

impl Master {
    /// `RegisterApplication` from the driver at `driver_address`. A standby ignores it (the
    /// driver tries the other masters).
    ///
    /// A new application is registered, answered and scheduled only once its record is stored
    /// (see [`super`]); if the write fails, nothing changes and the driver is not answered (its
    /// app client retries).
    ///
    /// A driver address that already has an application gets that application's id again
    /// (its `RegisteredApplication` was lost or is late; the app client retries). That
    /// application's record is stored already: it was written before its first
    /// `RegisteredApplication`, or recovery read it. Spark ignores the second registration but
    /// still acknowledges a fresh id it never recorded.
    pub fn register_application(
        &mut self,
        desc: ApplicationDescription,
        driver_address: RpcAddress,
        now: u64,
    ) -> Vec<Effect> {
        self.begin(now);
        if self.status == MasterState::Standby {
            return self.finish();
        }
        if let Some(app_id) = self.address_to_app.get(&driver_address).cloned() {
            info!(%app_id, %driver_address, "application registered again from the same driver");
            self.send_app(&app_id, ToApp::Registered);
            return self.finish();
        }
        let id = self.new_app_id();
        let app = ApplicationInfo::new(
            id.clone(),
            desc,
            now,
            driver_address,
            self.config.default_cores,
        );
        self.persist_then_apply(
            PersistOp::AddApplication(app.record()),
            super::Pending::NewApp(Box::new(app)),
        );
        self.finish()
    }

    /// Applies a registration whose record is stored: the application is listed, told its id,
    /// and `schedule()` gives it executors.
    pub(super) fn accept_application(&mut self, app: ApplicationInfo) {
        info!(app_id = %app.id, name = %app.desc.name, "registered application");
        let id = app.id.clone();
        self.insert_application(app);
        self.send_app(&id, ToApp::Registered);
        self.schedule();
    }

    fn new_app_id(&mut self) -> AppId {
        loop {
            let id = AppId::generate(self.now, self.next_app_number);
            self.next_app_number += 1;
            if !self.apps.contains_key(&id) && !self.completed_apps.iter().any(|a| a.id == id) {
                return id;
            }
        }
    }

    /// Spark's `registerApplication`.
    pub(super) fn insert_application(&mut self, app: ApplicationInfo) {
        self.address_to_app
            .insert(app.driver_address.clone(), app.id.clone());
        self.waiting_apps.push(app.id.clone());
        self.apps.insert(app.id.clone(), app);
    }

    /// `UnregisterApplication`: the application ended normally.
    pub fn unregister_application(&mut self, app_id: &AppId, now: u64) -> Vec<Effect> {
        self.begin(now);
        info!(%app_id, "application unregistered");
        self.remove_application(app_id, ApplicationState::Finished);
        self.finish()
    }

    /// `RequestKillApplication` (the web UI's kill link): whether the application was known.
    pub fn kill_application(&mut self, app_id: &AppId, now: u64) -> (bool, Vec<Effect>) {
        self.begin(now);
        let known = self.apps.contains_key(app_id);
        if known {
            info!(%app_id, "killing application on request");
            self.remove_application(app_id, ApplicationState::Killed);
        }
        (known, self.finish())
    }

    /// `MasterChangeAcknowledged`: a recovered application's driver answered.
    pub fn master_change_acknowledged(&mut self, app_id: &AppId, now: u64) -> Vec<Effect> {
        self.begin(now);
        match self.apps.get_mut(app_id) {
            Some(app) => {
                info!(%app_id, "application re-registered after the master change");
                app.state = ApplicationState::Waiting;
            }
            None => warn!(%app_id, "master change acknowledged by an unknown application"),
        }
        self.check_recovery_done();
        self.finish()
    }

    /// `ExecutorStateChanged` (an ask; the reply is always `true`).
    pub fn executor_state_changed(
        &mut self,
        app_id: &AppId,
        exec_id: ExecutorId,
        state: ExecutorState,
        message: Option<String>,
        exit_status: Option<i32>,
        now: u64,
    ) -> Vec<Effect> {
        self.begin(now);
        let Some(app) = self.apps.get_mut(app_id) else {
            if state.is_finished() && self.completed_apps.iter().any(|a| &a.id == app_id) {
                // Removing an application kills its executors; their final states arrive
                // after it is gone. Expected, so not worth a warning.
                debug!(%app_id, %exec_id, %state, "final state of an executor of a finished application");
            } else {
                warn!(%app_id, %exec_id, "status update for an executor of an unknown application");
            }
            return self.finish();
        };
        let Some(exec) = app.executors.get_mut(&exec_id) else {
            warn!(%app_id, %exec_id, "status update for an unknown executor");
            return self.finish();
        };
        let old = exec.state;
        if state == ExecutorState::Running && old != ExecutorState::Launching {
            // Spark asserts here, which fails the worker's ask and makes it retry and finally
            // exit. A repeated RUNNING (a retried ask) is harmless: keep the state as it is.
            warn!(%app_id, %exec_id, from = %old, "ignoring an illegal transition to RUNNING");
            return self.finish();
        }
        exec.state = state;
        let worker_id = exec.worker_id.clone();
        let key = exec.key();
        if state == ExecutorState::Running {
            app.retry_count = 0;
        }
        self.send_app(
            app_id,
            ToApp::Message(MasterToAppPlain::ExecutorUpdated {
                id: exec_id,
                state,
                message,
                exit_status,
                worker_host: None,
            }),
        );
        if state.is_finished() {
            info!(%app_id, %exec_id, %state, ?exit_status, "executor finished");
            let app = self.apps.get_mut(app_id).expect("checked above");
            app.remove_executor(exec_id);
            if let Some(slot) = self.id_to_worker.get(&worker_id)
                && let Some(w) = self.workers.get_mut(slot)
            {
                w.remove_executor(&key);
            }
            let normal_exit = exit_status == Some(0);
            if !normal_exit && old != ExecutorState::Decommissioned {
                app.retry_count += 1;
                if let Some(max) = self.config.max_executor_retries
                    && app.retry_count >= max
                    && !app
                        .executors
                        .values()
                        .any(|e| e.state == ExecutorState::Running)
                {
                    error!(%app_id, name = %app.desc.name, failures = app.retry_count,
                        "application failed too many times in a row; removing it");
                    self.remove_application(app_id, ApplicationState::Failed);
                }
            }
        }
        self.schedule();
        self.finish()
    }

    /// `RequestExecutors`: the application's executor limit is now `total` (lowering it never
    /// kills executors). Whether the application is known.
    pub fn request_executors(
        &mut self,
        app_id: &AppId,
        total: u32,
        now: u64,
    ) -> (bool, Vec<Effect>) {
        self.begin(now);
        let Some(app) = self.apps.get_mut(app_id) else {
            warn!(%app_id, "executors requested by an unknown application");
            return (false, self.finish());
        };
        info!(%app_id, total, "application changed its executor limit");
        app.executor_limit = total;
        self.schedule();
        (true, self.finish())
    }

    /// `KillExecutors`: kills the named executors the application has. Whether the application
    /// is known.
    pub fn kill_executors(
        &mut self,
        app_id: &AppId,
        executor_ids: &[ExecutorId],
        now: u64,
    ) -> (bool, Vec<Effect>) {
        self.begin(now);
        let Some(app) = self.apps.get_mut(app_id) else {
            warn!(%app_id, "kill requested by an unknown application");
            return (false, self.finish());
        };
        let mut killed = Vec::new();
        for &exec_id in executor_ids {
            match app.executors.get_mut(&exec_id) {
                Some(exec) => {
                    exec.state = ExecutorState::Killed;
                    if let Some(exec) = app.remove_executor(exec_id) {
                        killed.push(exec);
                    }
                }
                None => warn!(%app_id, %exec_id, "asked to kill an unknown executor"),
            }
        }
        for exec in killed {
            self.kill_executor_on_worker(&exec.worker_id, &exec.key());
        }
        self.schedule();
        (true, self.finish())
    }

    /// Frees an executor on its worker and tells the worker to kill it.
    fn kill_executor_on_worker(
        &mut self,
        worker_id: &crate::ids::WorkerId,
        key: &crate::master::info::ExecutorKey,
    ) {
        let Some(slot) = self.slot_of_any(worker_id) else {
            return;
        };
        if let Some(w) = self.workers.get_mut(&slot) {
            w.remove_executor(key);
        }
        let url = self.master_url();
        self.send_worker_slot(
            slot,
            MasterToWorkerPlain::KillExecutor {
                master_url: url,
                app_id: key.app_id.clone(),
                exec_id: key.exec_id,
            },
        );
    }

    /// Spark's `removeApplication`: the application ends in `state`; its executors are killed;
    /// the driver is told unless it finished normally; every worker is told.
    pub(super) fn remove_application(&mut self, app_id: &AppId, state: ApplicationState) {
        let Some(mut app) = self.apps.remove(app_id) else {
            return;
        };
        info!(%app_id, %state, "removing application");
        if self.address_to_app.get(&app.driver_address) == Some(app_id) {
            self.address_to_app.remove(&app.driver_address);
        }
        self.waiting_apps.retain(|id| id != app_id);
        if self.completed_apps.len() >= self.config.retained_applications {
            let drop = (self.config.retained_applications / 10).max(1);
            for _ in 0..drop.min(self.completed_apps.len()) {
                self.completed_apps.pop_front();
            }
        }
        let executors: Vec<_> = app
            .executors
            .values()
            .map(|e| (e.worker_id.clone(), e.key()))
            .collect();
        for exec in app.executors.values_mut() {
            exec.state = ExecutorState::Killed;
        }
        for (worker_id, key) in executors {
            self.kill_executor_on_worker(&worker_id, &key);
        }
        app.mark_finished(state, self.now);
        self.persist(PersistOp::RemoveApplication(app_id.clone()));
        if state != ApplicationState::Finished {
            self.effects.push(Effect::ToApp {
                app_id: app_id.clone(),
                address: app.driver_address.clone(),
                msg: ToApp::Message(MasterToAppPlain::ApplicationRemoved {
                    message: state.to_string(),
                }),
            });
        }
        self.completed_apps.push_back(app);
        self.schedule();
        let slots: Vec<_> = self.workers.keys().copied().collect();
        for slot in slots {
            self.send_worker_slot(
                slot,
                MasterToWorkerPlain::ApplicationFinished {
                    app_id: app_id.clone(),
                },
            );
        }
    }

    /// Spark's `schedule()`: place waiting drivers, then executors. Only an ALIVE master
    /// schedules.
    pub(super) fn schedule(&mut self) {
        if self.status != MasterState::Alive {
            return;
        }
        self.schedule_drivers();
        self.start_executors_on_workers();
    }

    /// Spark's `startExecutorsOnWorkers`: applications in registration order (FIFO), each
    /// taking what it can before the next is considered.
    fn start_executors_on_workers(&mut self) {
        let order = self.waiting_apps.clone();
        for app_id in order {
            let Some(app) = self.apps.get(&app_id) else {
                continue;
            };
            let ask = ExecutorAsk {
                cores_per_executor: app.desc.cores_per_executor,
                memory_per_executor_mb: app.desc.memory_per_executor_mb,
                cores_left: app.cores_left(),
                executors_now: app.executors.len() as u32,
                executor_limit: app.executor_limit,
            };
            if ask.cores_left < ask.min_cores() {
                continue;
            }
            let alive = self
                .workers
                .iter()
                .filter(|(_, w)| w.is_alive())
                .map(|(slot, w)| {
                    (
                        (w.id.clone(), *slot),
                        Capacity {
                            cores_free: w.cores_free(),
                            memory_free_mb: w.memory_free_mb(),
                        },
                    )
                });
            let usable =
                scheduling::usable_workers(alive, &ask, self.config.worker_selection_policy);
            if usable.is_empty() {
                if self.waiting_apps.len() == 1 && app.executors.is_empty() {
                    warn!(%app_id, "the application needs more resources than any worker has");
                }
                continue;
            }
            let capacities: Vec<Capacity> = usable.iter().map(|(_, c)| *c).collect();
            let assigned = scheduling::schedule_executors_on_workers(
                &ask,
                &capacities,
                self.config.spread_out_apps,
            );
            for (((_, slot), _), cores) in usable.into_iter().zip(assigned) {
                if cores > 0 {
                    self.allocate_executors(&app_id, slot, cores);
                }
            }
        }
    }

    /// Spark's `allocateWorkerResourceToExecutors` + `launchExecutor`.
    fn allocate_executors(&mut self, app_id: &AppId, slot: super::Slot, assigned_cores: u32) {
        let Some(app) = self.apps.get_mut(app_id) else {
            return;
        };
        let (count, cores_each) =
            scheduling::executors_from_cores(assigned_cores, app.desc.cores_per_executor);
        let memory = app.desc.memory_per_executor_mb;
        let url = self.master_url();
        for _ in 0..count {
            let app = self.apps.get_mut(app_id).expect("checked above");
            let w = self.workers.get_mut(&slot).expect("usable workers exist");
            let exec = app.add_executor(w, cores_each, memory, None);
            app.state = ApplicationState::Running;
            w.add_executor(exec.key(), exec.allocation());
            info!(%app_id, exec_id = %exec.id, worker_id = %w.id, cores = cores_each,
                memory_mb = memory, "launching executor");
            let desc = Box::new(app.desc.clone());
            let host_port = w.host_port();
            let worker_id = w.id.clone();
            self.send_worker_slot(
                slot,
                MasterToWorkerPlain::LaunchExecutor {
                    master_url: url.clone(),
                    app_id: app_id.clone(),
                    exec_id: exec.id,
                    app_desc: desc,
                    cores: cores_each,
                    memory_mb: memory,
                },
            );
            self.send_app(
                app_id,
                ToApp::Message(MasterToAppPlain::ExecutorAdded {
                    id: exec.id,
                    worker_id,
                    host_port,
                    cores: cores_each,
                    memory_mb: memory,
                }),
            );
        }
    }
}
