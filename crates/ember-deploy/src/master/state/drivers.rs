//! Drivers submitted in cluster deploy mode.
//!
//! Spark counterparts: the `RequestSubmitDriver`, `RequestKillDriver`, `RequestKillAllDrivers`,
//! `RequestDriverStatus` and `DriverStateChanged` handlers, `createDriver`, `launchDriver`,
//! `removeDriver`, `relaunchDriver` and the driver half of `schedule()`.

use tracing::{info, warn};

use super::{Effect, Master, MasterToWorkerPlain};
use crate::description::DriverDescription;
use crate::ids::DriverId;
use crate::master::info::DriverInfo;
use crate::master::persistence::{DriverRecord, PersistOp};
use crate::master::scheduling::{self, Capacity, DriverAsk};
use crate::messages::{
    DriverStatusResponse, KillAllDriversResponse, KillDriverResponse, SubmitDriverResponse,
};
use crate::state::{DriverState, MasterState};

impl DriverInfo {
    /// What recovery needs of this driver.
    pub fn record(&self) -> DriverRecord {
        DriverRecord {
            id: self.id.clone(),
            desc: self.desc.clone(),
            start_time_ms: self.start_time_ms,
        }
    }
}

/// Spark's `Utils.BACKUP_STANDALONE_MASTER_PREFIX`: clients recognise a standby by it.
pub const NOT_ALIVE_PREFIX: &str = "Current state is not alive";

impl Master {
    fn not_alive(&self, what: &str) -> String {
        format!(
            "{NOT_ALIVE_PREFIX}: {}. Can only {what} in ALIVE state.",
            self.status
        )
    }

    /// `RequestSubmitDriver`. The driver is added once its record is stored (see [`super`]);
    /// the response is for the endpoint to send only then.
    pub fn submit_driver(
        &mut self,
        desc: DriverDescription,
        now: u64,
    ) -> (SubmitDriverResponse, Vec<Effect>) {
        self.begin(now);
        if self.status != MasterState::Alive {
            let message = self.not_alive("accept driver submissions");
            return (
                SubmitDriverResponse {
                    success: false,
                    driver_id: None,
                    message,
                },
                self.finish(),
            );
        }
        let driver = self.create_driver(desc);
        let id = driver.id.clone();
        self.persist_then_apply(
            PersistOp::AddDriver(driver.record()),
            super::Pending::NewDriver(Box::new(driver)),
        );
        let message = format!("Driver successfully submitted as {id}");
        (
            SubmitDriverResponse {
                success: true,
                driver_id: Some(id),
                message,
            },
            self.finish(),
        )
    }

    /// Applies a submission whose record is stored: the driver waits for `schedule()`.
    pub(super) fn accept_driver(&mut self, driver: DriverInfo) {
        let id = driver.id.clone();
        info!(driver_id = %id, "driver submitted");
        self.drivers.insert(id.clone(), driver);
        self.waiting_drivers.push(id);
        self.schedule();
    }

    fn create_driver(&mut self, desc: DriverDescription) -> DriverInfo {
        let id = loop {
            let id = DriverId::generate(self.now, self.next_driver_number);
            self.next_driver_number += 1;
            if !self.drivers.contains_key(&id) && !self.completed_drivers.iter().any(|d| d.id == id)
            {
                break id;
            }
        };
        DriverInfo::new(id, desc, self.now)
    }

    /// `RequestKillDriver`. The kill is asynchronous: a running driver ends when its worker
    /// reports it KILLED.
    pub fn kill_driver(
        &mut self,
        driver_id: &DriverId,
        now: u64,
    ) -> (KillDriverResponse, Vec<Effect>) {
        self.begin(now);
        let (success, message) = if self.status != MasterState::Alive {
            (false, self.not_alive("kill drivers"))
        } else if self.drivers.contains_key(driver_id) {
            self.kill_known_driver(driver_id);
            (true, format!("Kill request for {driver_id} submitted"))
        } else {
            (
                false,
                format!("Driver {driver_id} has already finished or does not exist"),
            )
        };
        (
            KillDriverResponse {
                driver_id: driver_id.clone(),
                success,
                message,
            },
            self.finish(),
        )
    }

    /// `RequestKillAllDrivers`.
    pub fn kill_all_drivers(&mut self, now: u64) -> (KillAllDriversResponse, Vec<Effect>) {
        self.begin(now);
        let response = if self.status != MasterState::Alive {
            KillAllDriversResponse {
                success: false,
                message: self.not_alive("kill drivers"),
            }
        } else {
            let ids: Vec<DriverId> = self.drivers.keys().cloned().collect();
            for id in &ids {
                self.kill_known_driver(id);
            }
            KillAllDriversResponse {
                success: true,
                message: "Kill request for all drivers submitted".to_owned(),
            }
        };
        (response, self.finish())
    }

    fn kill_known_driver(&mut self, driver_id: &DriverId) {
        info!(%driver_id, "asked to kill driver");
        if self.waiting_drivers.contains(driver_id) {
            // Never launched: it ends here (Spark sends itself DriverStateChanged(KILLED)).
            self.waiting_drivers.retain(|id| id != driver_id);
            self.remove_driver(driver_id, DriverState::Killed, None);
        } else if let Some(worker_id) = self.drivers.get(driver_id).and_then(|d| d.worker.clone())
            && let Some(slot) = self.slot_of_any(&worker_id)
        {
            self.send_worker_slot(
                slot,
                MasterToWorkerPlain::KillDriver {
                    driver_id: driver_id.clone(),
                },
            );
        }
    }

    /// `RequestDriverStatus`.
    pub fn driver_status(&self, driver_id: &DriverId) -> DriverStatusResponse {
        if self.status != MasterState::Alive {
            return DriverStatusResponse {
                found: false,
                state: None,
                worker_id: None,
                worker_host_port: None,
                exception: Some(self.not_alive("request driver status")),
            };
        }
        let driver = self
            .drivers
            .get(driver_id)
            .or_else(|| self.completed_drivers.iter().find(|d| &d.id == driver_id));
        match driver {
            Some(d) => DriverStatusResponse {
                found: true,
                state: Some(d.state),
                worker_id: d.worker.clone(),
                worker_host_port: d.worker_host_port.clone(),
                exception: d.exception.clone(),
            },
            None => DriverStatusResponse {
                found: false,
                state: None,
                worker_id: None,
                worker_host_port: None,
                exception: None,
            },
        }
    }

    /// `DriverStateChanged` from the driver's worker. Only final states are expected.
    pub fn driver_state_changed(
        &mut self,
        driver_id: &DriverId,
        state: DriverState,
        exception: Option<String>,
        now: u64,
    ) -> Vec<Effect> {
        self.begin(now);
        match state {
            DriverState::Error
            | DriverState::Finished
            | DriverState::Killed
            | DriverState::Failed => {
                self.remove_driver(driver_id, state, exception);
            }
            other => {
                warn!(%driver_id, state = %other, "unexpected driver state update; ignoring it")
            }
        }
        self.finish()
    }

    /// Spark's `removeDriver`.
    pub(super) fn remove_driver(
        &mut self,
        driver_id: &DriverId,
        state: DriverState,
        exception: Option<String>,
    ) {
        let Some(mut driver) = self.drivers.remove(driver_id) else {
            warn!(%driver_id, "asked to remove an unknown driver");
            return;
        };
        info!(%driver_id, %state, "removing driver");
        self.waiting_drivers.retain(|id| id != driver_id);
        if self.completed_drivers.len() >= self.config.retained_drivers {
            let drop = (self.config.retained_drivers / 10).max(1);
            for _ in 0..drop.min(self.completed_drivers.len()) {
                self.completed_drivers.pop_front();
            }
        }
        self.persist(PersistOp::RemoveDriver(driver_id.clone()));
        driver.state = state;
        driver.exception = exception;
        if let Some(worker_id) = &driver.worker
            && let Some(slot) = self.slot_of_any(worker_id)
            && let Some(w) = self.workers.get_mut(&slot)
        {
            w.remove_driver(driver_id);
        }
        self.completed_drivers.push_back(driver);
        self.schedule();
    }

    /// Spark's `relaunchDriver`: the driver ends as RELAUNCHING and a copy is submitted under a
    /// new id (SPARK-19900: late messages about the old id cannot touch the new one).
    pub(super) fn relaunch_driver(&mut self, driver_id: &DriverId) {
        let Some(desc) = self.drivers.get(driver_id).map(|d| d.desc.clone()) else {
            return;
        };
        self.remove_driver(driver_id, DriverState::Relaunching, None);
        let driver = self.create_driver(desc);
        info!(old = %driver_id, new = %driver.id, "relaunching supervised driver");
        self.persist(PersistOp::AddDriver(driver.record()));
        let id = driver.id.clone();
        self.drivers.insert(id.clone(), driver);
        self.waiting_drivers.push(id);
        self.schedule();
    }

    /// The driver half of Spark's `schedule()`.
    pub(super) fn schedule_drivers(&mut self) {
        if self.waiting_drivers.is_empty() {
            return;
        }
        let mut order: Vec<super::Slot> = self
            .workers
            .iter()
            .filter(|(_, w)| w.is_alive())
            .map(|(s, _)| *s)
            .collect();
        if self.config.spread_out_drivers {
            // Fisher-Yates with the master's own generator.
            for i in (1..order.len()).rev() {
                let j = (self.next_random() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
        } else {
            order.sort_by(|a, b| self.workers[a].id.cmp(&self.workers[b].id).then(a.cmp(b)));
        }
        let capacities: Vec<Capacity> = order
            .iter()
            .map(|s| Capacity {
                cores_free: self.workers[s].cores_free(),
                memory_free_mb: self.workers[s].memory_free_mb(),
            })
            .collect();
        let waiting = self.waiting_drivers.clone();
        let asks: Vec<DriverAsk> = waiting
            .iter()
            .map(|id| {
                let d = &self.drivers[id];
                DriverAsk {
                    cores: d.desc.cores,
                    memory_mb: d.desc.mem_mb,
                }
            })
            .collect();
        let running = (self.drivers.len() - self.waiting_drivers.len()) as u32;
        let placed = scheduling::place_drivers(
            &asks,
            &capacities,
            self.config.spread_out_drivers,
            running,
            self.config.max_drivers,
        );
        for ((driver_id, ask), choice) in waiting.iter().zip(&asks).zip(placed) {
            match choice {
                Some(pos) => self.launch_driver(driver_id, order[pos]),
                None => {
                    let fits_somewhere = self.workers.values().filter(|w| w.is_alive()).any(|w| {
                        ask.fits(Capacity {
                            cores_free: w.cores,
                            memory_free_mb: w.memory_mb,
                        })
                    });
                    if !fits_somewhere && running < self.config.max_drivers {
                        warn!(%driver_id, "the driver needs more resources than any worker has");
                    }
                }
            }
        }
    }

    /// Spark's `launchDriver`.
    fn launch_driver(&mut self, driver_id: &DriverId, slot: super::Slot) {
        let Some(d) = self.drivers.get_mut(driver_id) else {
            return;
        };
        let w = self.workers.get_mut(&slot).expect("alive workers exist");
        info!(%driver_id, worker_id = %w.id, "launching driver");
        w.add_driver(driver_id.clone(), d.allocation());
        d.worker = Some(w.id.clone());
        d.worker_host_port = Some(w.host_port());
        d.state = DriverState::Running;
        let desc = Box::new(d.desc.clone());
        self.waiting_drivers.retain(|id| id != driver_id);
        self.send_worker_slot(
            slot,
            MasterToWorkerPlain::LaunchDriver {
                driver_id: driver_id.clone(),
                driver_desc: desc,
            },
        );
    }
}
