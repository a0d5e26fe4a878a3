//! Leadership and recovery.
//!
//! Spark counterparts: the `ElectedLeader`, `CompleteRecovery` and `RevokedLeadership`
//! handlers, `beginRecovery`, `canCompleteRecovery`, `completeRecovery`.
//!
//! ```text
//!   STANDBY ──elected, nothing persisted──────────────────────────────────────────▶ ALIVE
//!      └──elected, records read──▶ RECOVERING: workers and apps UNKNOWN, MasterChanged sent
//!            │  each WorkerSchedulerStateResponse / MasterChangeAcknowledged / disconnect:
//!            │  all answered? ──▶ complete
//!            └─ recovery timeout ──▶ complete: silent workers removed, silent apps finished,
//!                                    unplaced drivers relaunched (supervised) or failed ──▶ ALIVE
//! ```

use tracing::{error, info};

use super::{Effect, Master, ToApp, ToWorker};
use crate::master::info::{ApplicationInfo, DriverInfo, WorkerInfo};
use crate::master::persistence::PersistedData;
use crate::state::{ApplicationState, DriverState, MasterState, WorkerState};

impl Master {
    /// `ElectedLeader`, with what the persistence engine read back.
    pub fn elected_leader(&mut self, data: PersistedData, now: u64) -> Vec<Effect> {
        self.begin(now);
        if self.status != MasterState::Standby {
            info!(status = %self.status, "elected again while leading; nothing to do");
            return self.finish();
        }
        if data.is_empty() {
            self.status = MasterState::Alive;
            info!("elected leader; nothing to recover; ALIVE");
            self.schedule();
            return self.finish();
        }
        self.status = MasterState::Recovering;
        self.recovery_started_ms = Some(now);
        info!(
            apps = data.apps.len(),
            drivers = data.drivers.len(),
            workers = data.workers.len(),
            "elected leader; recovering"
        );
        for record in data.apps {
            let mut app = ApplicationInfo::new(
                record.id,
                record.desc,
                record.start_time_ms,
                record.driver_address,
                self.config.default_cores,
            );
            app.state = ApplicationState::Unknown;
            let id = app.id.clone();
            if self.address_to_app.contains_key(&app.driver_address) {
                info!(app_id = %id, "two recovered applications share a driver address; keeping the first");
                continue;
            }
            self.insert_application(app);
            self.send_app(&id, ToApp::MasterChanged);
        }
        for record in data.drivers {
            let driver = DriverInfo::new(record.id, record.desc, record.start_time_ms);
            self.drivers.insert(driver.id.clone(), driver);
        }
        for record in data.workers {
            let mut worker = WorkerInfo::new(record, now);
            worker.state = WorkerState::Unknown;
            let (id, address) = (worker.id.clone(), worker.address.clone());
            if self.id_to_worker.contains_key(&id) || self.add_worker(worker).is_err() {
                info!(worker_id = %id, "a recovered worker clashes with another; skipping it");
                continue;
            }
            self.send_worker_at(&id, &address, ToWorker::MasterChanged);
        }
        if self.can_complete_recovery() {
            // Nothing to wait for (SPARK-46664).
            self.complete_recovery_now();
        } else {
            self.effects.push(Effect::ScheduleCompleteRecovery {
                after: self.config.recovery_timeout,
            });
        }
        self.finish()
    }

    /// `CompleteRecovery` (the recovery timer): ends recovery if it has not ended yet.
    pub fn complete_recovery(&mut self, now: u64) -> Vec<Effect> {
        self.begin(now);
        self.complete_recovery_now();
        self.finish()
    }

    /// `RevokedLeadership`: another master leads; this one stops.
    pub fn revoked_leadership(&mut self, now: u64) -> Vec<Effect> {
        self.begin(now);
        error!("leadership has been revoked; master shutting down");
        self.effects.push(Effect::Exit {
            reason: "leadership revoked".to_owned(),
        });
        self.finish()
    }

    fn can_complete_recovery(&self) -> bool {
        !self
            .workers
            .values()
            .any(|w| w.state == WorkerState::Unknown)
            && !self
                .apps
                .values()
                .any(|a| a.state == ApplicationState::Unknown)
    }

    /// Ends recovery early once every recovered worker and application has answered.
    pub(super) fn check_recovery_done(&mut self) {
        if self.status == MasterState::Recovering && self.can_complete_recovery() {
            self.complete_recovery_now();
        }
    }

    fn complete_recovery_now(&mut self) {
        if self.status != MasterState::Recovering {
            return;
        }
        self.status = MasterState::CompletingRecovery;
        let silent_workers: Vec<_> = self
            .workers
            .iter()
            .filter(|(_, w)| w.state == WorkerState::Unknown)
            .map(|(s, _)| *s)
            .collect();
        for slot in silent_workers {
            self.remove_worker(slot, "Not responding for recovery");
        }
        let silent_apps: Vec<_> = self
            .apps
            .values()
            .filter(|a| a.state == ApplicationState::Unknown)
            .map(|a| a.id.clone())
            .collect();
        for app_id in silent_apps {
            self.remove_application(&app_id, ApplicationState::Finished);
        }
        for app in self.apps.values_mut() {
            if app.state == ApplicationState::Waiting {
                app.state = ApplicationState::Running;
            }
        }
        let unplaced: Vec<_> = self
            .drivers
            .values()
            .filter(|d| d.worker.is_none())
            .map(|d| (d.id.clone(), d.desc.supervise))
            .collect();
        for (driver_id, supervise) in unplaced {
            if supervise {
                self.relaunch_driver(&driver_id);
            } else {
                self.remove_driver(&driver_id, DriverState::Error, None);
            }
        }
        self.status = MasterState::Alive;
        let took = self
            .recovery_started_ms
            .map(|t| self.now.saturating_sub(t))
            .unwrap_or(0);
        info!(took_ms = took, "recovery complete; ALIVE");
        self.schedule();
    }
}
