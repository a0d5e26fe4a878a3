//! Workers: registration, heartbeats, timeouts, removal, reconciliation, decommissioning.
//!
//! Spark counterparts: `Master.handleRegisterWorker`, `registerWorker`, the `Heartbeat`,
//! `WorkerLatestState`, `WorkerSchedulerStateResponse` and `WorkerDecommissioning` handlers,
//! `timeOutDeadWorkers`, `removeWorker`, `decommissionWorker(s)OnHosts`, `onDisconnected`.
//!
//! # Registration outcomes
//!
//! | situation | answer |
//! |---|---|
//! | master is STANDBY | `MasterInStandby` |
//! | id known, same RpcEnv address (the worker registered again, e.g. after a connection blip the master never saw) | `RegisteredWorker { duplicate: true }` |
//! | id known, worker UNKNOWN (recovering; SPARK-46353) | becomes ALIVE; `RegisteredWorker { duplicate: true }` |
//! | id known, a live worker at another address | `RegisterWorkerFailed("Duplicate worker ID")` |
//! | new id, a live worker already at the same address | `RegisterWorkerFailed("Attempted to re-register worker at same address: …")` |
//! | new id, an UNKNOWN worker at the same address (it restarted during recovery) | the old one is removed; registered |
//! | new id otherwise | registered (DEAD entries at the same host and port are dropped first) |
//!
//! Spark 4 answers every known id with `duplicate = true`. Ember refuses a known id coming from a
//! *different* address while the known worker is alive: two processes claiming one id would
//! otherwise share one record, and the master would keep sending the first one's executors to
//! whichever registered last. A re-registration from the same address, or the answer of a worker
//! the master is still waiting for in recovery, is the same worker and is accepted.
//!
//! A new worker is added only once its record is stored (see [`super`]): if the write fails,
//! the master does not list it, sends no answer and schedules nothing on it, and the worker's
//! registration retry tries again. (`RegisterWorkerFailed` would make a worker that was never
//! registered exit.) A known worker's record is already stored (it was written before its
//! first `RegisteredWorker`, or recovery read it), so a duplicate is answered at once; only an
//! UNKNOWN worker answering from a new address has its record rewritten first.

use std::time::Duration;

use tracing::{info, warn};

use ember_rpc::RpcAddress;

use super::{Master, MasterToAppPlain, MasterToWorkerPlain, Slot, ToApp, ToWorker};
use crate::description::ExecutorDescription;
use crate::ids::{DriverId, WorkerId};
use crate::master::info::{ExecutorKey, WorkerInfo};
use crate::master::persistence::{PersistOp, WorkerRecord};
use crate::state::{DriverState, ExecutorState, MasterState, WorkerState};

/// A `RegisterWorker`, with the worker's ref reduced to its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRegistration {
    /// The id it claims.
    pub id: WorkerId,
    /// Its host.
    pub host: String,
    /// Its RPC port.
    pub port: u16,
    /// The address of the RpcEnv its endpoint lives in.
    pub address: RpcAddress,
    /// Cores offered.
    pub cores: u32,
    /// Memory offered, MiB.
    pub memory_mb: u32,
    /// Its web UI.
    pub web_ui_url: String,
    /// The master address it used.
    pub master_address: RpcAddress,
}

impl WorkerInfo {
    /// What recovery needs of this worker.
    pub fn record(&self) -> WorkerRecord {
        WorkerRecord {
            id: self.id.clone(),
            host: self.host.clone(),
            port: self.port,
            address: self.address.clone(),
            cores: self.cores,
            memory_mb: self.memory_mb,
            web_ui_url: self.web_ui_url.clone(),
        }
    }
}

impl WorkerRegistration {
    /// The worker it describes, as recovery would persist it.
    pub fn record(&self) -> WorkerRecord {
        WorkerRecord {
            id: self.id.clone(),
            host: self.host.clone(),
            port: self.port,
            address: self.address.clone(),
            cores: self.cores,
            memory_mb: self.memory_mb,
            web_ui_url: self.web_ui_url.clone(),
        }
    }
}

impl Master {
    /// `RegisterWorker`.
    pub fn register_worker(&mut self, reg: WorkerRegistration, now: u64) -> Vec<super::Effect> {
        self.begin(now);
        self.handle_register_worker(reg);
        self.finish()
    }

    fn handle_register_worker(&mut self, reg: WorkerRegistration) {
        if self.status == MasterState::Standby {
            self.send_worker_at(
                &reg.id,
                &reg.address,
                ToWorker::Message(MasterToWorkerPlain::MasterInStandby),
            );
            return;
        }
        if let Some(problem) = registration_problem(&reg) {
            warn!(worker_id = %reg.id, address = %reg.address, problem, "refusing a malformed registration");
            self.send_worker_at(
                &reg.id,
                &reg.address,
                ToWorker::Message(MasterToWorkerPlain::RegisterWorkerFailed {
                    message: format!("Invalid registration: {problem}"),
                }),
            );
            return;
        }
        let Some(&slot) = self.id_to_worker.get(&reg.id) else {
            self.register_new_worker(reg);
            return;
        };
        let existing = &self.workers[&slot];
        let same_worker = existing.address == reg.address || existing.state == WorkerState::Unknown;
        if !same_worker {
            warn!(worker_id = %reg.id, address = %reg.address, existing = %existing.address,
                "refusing a worker that claims the id of a live worker at another address");
            self.send_worker_at(
                &reg.id,
                &reg.address,
                ToWorker::Message(MasterToWorkerPlain::RegisterWorkerFailed {
                    message: "Duplicate worker ID".to_owned(),
                }),
            );
            return;
        }
        self.reregister_worker(slot, reg);
    }

    /// A registration of a known id from the same worker: it is ALIVE again (if it was UNKNOWN,
    /// at the address it now gives, once that is stored) and told it was a duplicate.
    fn reregister_worker(&mut self, slot: Slot, reg: WorkerRegistration) {
        let worker = &self.workers[&slot];
        if worker.address != reg.address {
            let mut record = worker.record();
            record.address = reg.address.clone();
            self.persist_then_apply(
                PersistOp::AddWorker(record),
                super::Pending::MovedWorker { slot, reg },
            );
            return;
        }
        self.accept_reregistration(slot, reg);
    }

    /// Applies an accepted re-registration.
    pub(super) fn accept_reregistration(&mut self, slot: Slot, reg: WorkerRegistration) {
        info!(worker_id = %reg.id, "worker registered again (duplicate registration)");
        let now = self.now;
        let Some(worker) = self.workers.get_mut(&slot) else {
            return;
        };
        let old_address = worker.address.clone();
        if worker.state == WorkerState::Unknown {
            worker.state = WorkerState::Alive;
        }
        worker.last_heartbeat_ms = now;
        if old_address != reg.address {
            // An UNKNOWN worker answering from a new address: follow it.
            worker.address = reg.address.clone();
            self.address_to_worker.remove(&old_address);
            self.address_to_worker.insert(reg.address.clone(), slot);
        }
        self.send_worker_at(
            &reg.id,
            &reg.address,
            ToWorker::Registered {
                duplicate: true,
                master_address: reg.master_address,
            },
        );
        self.check_recovery_done();
    }

    /// A registration of a new id: refused if a live worker holds its address, else added once
    /// its record is stored.
    fn register_new_worker(&mut self, reg: WorkerRegistration) {
        if self.address_held(&reg.address) {
            self.refuse_held_address(&reg);
            return;
        }
        self.persist_then_apply(
            PersistOp::AddWorker(reg.record()),
            super::Pending::NewWorker(reg),
        );
    }

    /// Applies a new worker's registration, its record stored: it is listed, told, and
    /// `schedule()` may place work on it.
    pub(super) fn accept_new_worker(&mut self, reg: WorkerRegistration) {
        // Nothing ran since the address was checked (one input at a time), so this succeeds.
        let Ok(slot) = self.add_worker(WorkerInfo::new(reg.record(), self.now)) else {
            self.refuse_held_address(&reg);
            return;
        };
        let w = &self.workers[&slot];
        info!(worker_id = %w.id, address = %w.address, cores = w.cores,
            memory_mb = w.memory_mb, "registered worker");
        self.send_worker_at(
            &reg.id,
            &reg.address,
            ToWorker::Registered {
                duplicate: false,
                master_address: reg.master_address,
            },
        );
        self.schedule();
    }

    /// Whether a live (not UNKNOWN) worker holds `address`: Spark's `registerWorker` refuses a
    /// new worker there.
    fn address_held(&self, address: &RpcAddress) -> bool {
        self.address_to_worker
            .get(address)
            .is_some_and(|slot| self.workers[slot].state != WorkerState::Unknown)
    }

    fn refuse_held_address(&mut self, reg: &WorkerRegistration) {
        warn!(worker_id = %reg.id, address = %reg.address,
            "refusing a worker at the address of a live worker");
        self.send_worker_at(
            &reg.id,
            &reg.address,
            ToWorker::Message(MasterToWorkerPlain::RegisterWorkerFailed {
                message: format!(
                    "Attempted to re-register worker at same address: {}",
                    reg.address
                ),
            }),
        );
    }

    /// Spark's `registerWorker`: adds `worker` unless a live worker holds its address.
    pub(super) fn add_worker(&mut self, worker: WorkerInfo) -> Result<Slot, ()> {
        self.workers.retain(|_, w| {
            !(w.state == WorkerState::Dead && w.host == worker.host && w.port == worker.port)
        });
        if self.address_held(&worker.address) {
            return Err(());
        }
        if let Some(&old) = self.address_to_worker.get(&worker.address) {
            self.remove_worker(old, "Worker replaced by a new worker with same address");
        }
        let slot = self.next_slot;
        self.next_slot += 1;
        self.id_to_worker.insert(worker.id.clone(), slot);
        self.address_to_worker.insert(worker.address.clone(), slot);
        self.workers.insert(slot, worker);
        Ok(slot)
    }

    /// `Heartbeat` from the worker endpoint at `sender`: a live worker's heartbeat is refreshed;
    /// any other worker is asked to register again, at the address it heartbeats from.
    ///
    /// Spark sends `ReconnectWorker` only while a DEAD entry with the id is still listed and
    /// ignores an id it does not list at all. Ember answers both: a worker that was silent for
    /// longer than `(ember.dead.worker.persistence + 1) × ember.worker.timeout` (stopped,
    /// partitioned) still believes it is registered, and would otherwise heartbeat into the void
    /// forever. A heartbeat from a worker that never registered gets the same answer; the
    /// registration that follows goes through every rule of `RegisterWorker`.
    pub fn heartbeat(
        &mut self,
        worker_id: &WorkerId,
        sender: &RpcAddress,
        now: u64,
    ) -> Vec<super::Effect> {
        self.begin(now);
        if let Some(&slot) = self.id_to_worker.get(worker_id) {
            if let Some(w) = self.workers.get_mut(&slot) {
                w.last_heartbeat_ms = now;
            }
            return self.finish();
        }
        if self.workers.values().any(|w| &w.id == worker_id) {
            warn!(%worker_id, %sender, "heartbeat from a worker marked DEAD; asking it to re-register");
        } else {
            warn!(%worker_id, %sender,
                "got heartbeat from unregistered worker; asking it to re-register");
        }
        let url = self.master_url();
        self.send_worker_at(
            worker_id,
            sender,
            ToWorker::Message(MasterToWorkerPlain::ReconnectWorker { master_url: url }),
        );
        self.finish()
    }

    /// `CheckForWorkerTimeOut`: workers silent for `ember.worker.timeout` become DEAD; DEAD
    /// ones silent for `(ember.dead.worker.persistence + 1)` timeouts are forgotten.
    pub fn check_worker_timeouts(&mut self, now: u64) -> Vec<super::Effect> {
        self.begin(now);
        let timeout = duration_ms(self.config.worker_timeout);
        let cull_after = timeout.saturating_mul(u64::from(self.config.dead_worker_persistence) + 1);
        let deadline = now.saturating_sub(timeout);
        let cull_deadline = now.saturating_sub(cull_after);
        let silent: Vec<(Slot, WorkerState, u64)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.last_heartbeat_ms < deadline)
            .map(|(s, w)| (*s, w.state, w.last_heartbeat_ms))
            .collect();
        for (slot, state, last) in silent {
            if state != WorkerState::Dead {
                let secs = self.config.worker_timeout.as_secs_f64();
                self.remove_worker(slot, &format!("Not receiving heartbeat for {secs} seconds"));
            } else if last < cull_deadline
                && let Some(w) = self.workers.remove(&slot)
            {
                info!(worker_id = %w.id, "forgetting a DEAD worker");
            }
        }
        self.finish()
    }

    /// Spark's `removeWorker`: the worker is DEAD, its executors LOST, its drivers relaunched
    /// (supervised) or failed, every application told.
    pub(super) fn remove_worker(&mut self, slot: Slot, reason: &str) {
        let Some(w) = self.workers.get_mut(&slot) else {
            return;
        };
        if w.state == WorkerState::Dead {
            return;
        }
        info!(worker_id = %w.id, address = %w.address, %reason, "removing worker");
        w.state = WorkerState::Dead;
        let (id, host, address) = (w.id.clone(), w.host.clone(), w.address.clone());
        let executors: Vec<ExecutorKey> = w.executors.keys().cloned().collect();
        let drivers: Vec<DriverId> = w.drivers.keys().cloned().collect();
        if self.id_to_worker.get(&id) == Some(&slot) {
            self.id_to_worker.remove(&id);
        }
        if self.address_to_worker.get(&address) == Some(&slot) {
            self.address_to_worker.remove(&address);
        }
        self.persist(PersistOp::RemoveWorker(id.clone()));
        self.end_executors(
            executors,
            ExecutorState::Lost,
            &format!("worker lost: {reason}"),
            &host,
        );
        for driver_id in drivers {
            let supervise = self.drivers.get(&driver_id).map(|d| d.desc.supervise);
            match supervise {
                Some(true) => self.relaunch_driver(&driver_id),
                Some(false) => self.remove_driver(&driver_id, DriverState::Error, None),
                None => {}
            }
        }
        let active: Vec<_> = self.apps.keys().cloned().collect();
        for app_id in active {
            self.send_app(
                &app_id,
                ToApp::Message(MasterToAppPlain::WorkerRemoved {
                    id: id.clone(),
                    host: host.clone(),
                    message: reason.to_owned(),
                }),
            );
        }
        self.schedule();
    }

    /// `WorkerLatestState`: kill what the worker runs that this master does not know
    /// (SPARK-13604).
    pub fn worker_latest_state(
        &mut self,
        worker_id: &WorkerId,
        executors: &[ExecutorDescription],
        driver_ids: &[DriverId],
        now: u64,
    ) -> Vec<super::Effect> {
        self.begin(now);
        let Some(&slot) = self.id_to_worker.get(worker_id) else {
            warn!(%worker_id, "worker state from an unknown worker");
            return self.finish();
        };
        let url = self.master_url();
        for exec in executors {
            let key = ExecutorKey {
                app_id: exec.app_id.clone(),
                exec_id: exec.exec_id,
            };
            if !self.workers[&slot].executors.contains_key(&key) {
                self.send_worker_slot(
                    slot,
                    MasterToWorkerPlain::KillExecutor {
                        master_url: url.clone(),
                        app_id: key.app_id,
                        exec_id: key.exec_id,
                    },
                );
            }
        }
        for driver_id in driver_ids {
            if !self.workers[&slot].drivers.contains_key(driver_id) {
                self.send_worker_slot(
                    slot,
                    MasterToWorkerPlain::KillDriver {
                        driver_id: driver_id.clone(),
                    },
                );
            }
        }
        self.finish()
    }

    /// `WorkerSchedulerStateResponse`: a worker answered `MasterChanged` with what it runs; it is
    /// ALIVE again and its executors and drivers are re-attached.
    pub fn worker_scheduler_state(
        &mut self,
        worker_id: &WorkerId,
        executors: &[ExecutorDescription],
        driver_ids: &[DriverId],
        now: u64,
    ) -> Vec<super::Effect> {
        self.begin(now);
        if let Some(&slot) = self.id_to_worker.get(worker_id) {
            info!(%worker_id, "worker re-registered after the master change");
            let w = self.workers.get_mut(&slot).expect("indexed slot exists");
            w.state = WorkerState::Alive;
            w.last_heartbeat_ms = now;
            for desc in executors {
                let Some(app) = self.apps.get_mut(&desc.app_id) else {
                    continue;
                };
                if app.executors.contains_key(&desc.exec_id) {
                    continue; // answered twice
                }
                let w = &self.workers[&slot];
                let mut exec = app.add_executor(w, desc.cores, desc.memory_mb, Some(desc.exec_id));
                exec.state = desc.state;
                app.executors.insert(exec.id, exec.clone());
                let w = self.workers.get_mut(&slot).expect("indexed slot exists");
                w.add_executor(exec.key(), exec.allocation());
            }
            for driver_id in driver_ids {
                let Some(d) = self.drivers.get_mut(driver_id) else {
                    continue;
                };
                let w = self.workers.get_mut(&slot).expect("indexed slot exists");
                d.worker = Some(w.id.clone());
                d.worker_host_port = Some(w.host_port());
                d.state = DriverState::Running;
                w.add_driver(driver_id.clone(), d.allocation());
                self.waiting_drivers.retain(|id| id != driver_id);
            }
        } else {
            warn!(%worker_id, "scheduler state from an unknown worker");
        }
        self.check_recovery_done();
        self.finish()
    }

    /// `WorkerDecommissioning` from the worker endpoint at `sender`.
    pub fn worker_decommissioning(
        &mut self,
        worker_id: &WorkerId,
        sender: &RpcAddress,
        now: u64,
    ) -> Vec<super::Effect> {
        self.begin(now);
        if self.status == MasterState::Standby {
            self.send_worker_at(
                worker_id,
                sender,
                ToWorker::Message(MasterToWorkerPlain::MasterInStandby),
            );
        } else if let Some(&slot) = self.id_to_worker.get(worker_id) {
            self.decommission_worker(slot);
        }
        self.finish()
    }

    /// `DecommissionWorkersOnHosts`: decommissions the live workers whose address host is one
    /// of `hosts` (case-insensitive) and tells them; returns how many.
    pub fn decommission_workers_on_hosts(
        &mut self,
        hosts: &[String],
        now: u64,
    ) -> (u32, Vec<super::Effect>) {
        self.begin(now);
        if self.status == MasterState::Standby {
            return (0, self.finish());
        }
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_lowercase()).collect();
        let mut slots: Vec<Slot> = self
            .address_to_worker
            .iter()
            .filter(|(addr, _)| hosts.contains(&addr.host.to_lowercase()))
            .map(|(_, s)| *s)
            .collect();
        slots.sort_unstable();
        for &slot in &slots {
            self.decommission_worker(slot);
            self.send_worker_slot(slot, MasterToWorkerPlain::DecommissionWorker);
        }
        (slots.len() as u32, self.finish())
    }

    /// Spark's `decommissionWorker`: no new executors; the current ones are reported
    /// DECOMMISSIONED to their applications; the worker is not recovered by a successor.
    fn decommission_worker(&mut self, slot: Slot) {
        let Some(w) = self.workers.get_mut(&slot) else {
            return;
        };
        if w.state == WorkerState::Decommissioned {
            return;
        }
        info!(worker_id = %w.id, "decommissioning worker");
        w.state = WorkerState::Decommissioned;
        let (id, host) = (w.id.clone(), w.host.clone());
        let executors: Vec<ExecutorKey> = w.executors.keys().cloned().collect();
        self.end_executors(
            executors,
            ExecutorState::Decommissioned,
            "worker decommissioned",
            &host,
        );
        self.persist(PersistOp::RemoveWorker(id));
    }

    /// `executors`, of a worker lost or decommissioned, leave their applications in `state`;
    /// each application is told, with `message` and the worker's `host`.
    fn end_executors(
        &mut self,
        executors: Vec<ExecutorKey>,
        state: ExecutorState,
        message: &str,
        host: &str,
    ) {
        for key in executors {
            let Some(app) = self.apps.get_mut(&key.app_id) else {
                continue;
            };
            let Some(exec) = app.executors.get_mut(&key.exec_id) else {
                continue;
            };
            exec.state = state;
            app.remove_executor(key.exec_id);
            self.send_app(
                &key.app_id,
                ToApp::Message(MasterToAppPlain::ExecutorUpdated {
                    id: key.exec_id,
                    state,
                    message: Some(message.to_owned()),
                    exit_status: None,
                    worker_host: Some(host.to_owned()),
                }),
            );
        }
    }

    /// The RpcEnv at `address` disconnected: a worker there is removed, an application whose
    /// driver is there finishes.
    pub fn disconnected(&mut self, address: &RpcAddress, now: u64) -> Vec<super::Effect> {
        self.begin(now);
        if let Some(&slot) = self.address_to_worker.get(address) {
            self.remove_worker(slot, &format!("{address} got disassociated"));
        }
        if let Some(app_id) = self.address_to_app.get(address).cloned() {
            info!(%app_id, %address, "driver disconnected; finishing its application");
            self.remove_application(&app_id, crate::state::ApplicationState::Finished);
        }
        self.check_recovery_done();
        self.finish()
    }
}

/// What makes a registration unusable (Spark asserts a valid host and a port > 0 when the
/// message is built; a peer here could send anything).
fn registration_problem(reg: &WorkerRegistration) -> Option<&'static str> {
    if reg.id.as_str().trim().is_empty() || reg.id.as_str().chars().any(char::is_control) {
        Some("the worker id is empty or has control characters")
    } else if reg.host.trim().is_empty() {
        Some("the host is empty")
    } else if reg.port == 0 {
        Some("the port is 0")
    } else {
        None
    }
}

pub(super) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
