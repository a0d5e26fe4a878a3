//! The Master as a pure state machine: inputs and the time in, effects out.
//!
//! Spark counterpart: the bookkeeping of `Master.scala` (`receive`, `receiveAndReply`,
//! `onDisconnected` and everything they call). Each public method is one input — a message, a
//! timer tick, a disconnect, an election — taking `now` (ms since the Unix epoch) and returning
//! the [`Effect`]s the endpoint must perform, in order. Nothing here touches the network, the
//! disk or the clock, so every rule is tested directly (see the `tests` module).
//!
//! # Effect order and persistence
//!
//! Effects are performed in the order returned. An input that adds something a successor must
//! recover and then acknowledges it — a worker's or an application's registration, a driver
//! submission — changes nothing at first: it ends with [`Effect::PersistThenApply`], and the
//! state machine holds the change until the endpoint reports the outcome of the write with
//! [`Master::persisted`]. Only a stored change is applied, answered and scheduled; a change
//! that could not be stored is dropped whole, so the state stays as it was and nothing is
//! acknowledged that a successor could not recover (the peer retries). No other input may
//! arrive in between (the endpoint handles one at a time and awaits the write).
//!
//! Other writes ([`Effect::Persist`]: removals, a supervised driver relaunched under a new id)
//! acknowledge nothing; a failed one is logged and the rest of the input's effects go on.
//!
//! Files: `workers` (registration, heartbeats, timeouts, removal, reconciliation,
//! decommissioning), `apps` (applications, executors, `schedule()`), `drivers`, `recovery`.

mod apps;
mod drivers;
mod recovery;
mod workers;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use tracing::{error, warn};

use ember_rpc::RpcAddress;

use crate::ids::{AppId, DriverId, WorkerId};
use crate::master::config::MasterConfig;
use crate::master::info::{ApplicationInfo, DriverInfo, WorkerInfo};
use crate::master::persistence::PersistOp;
use crate::messages::{MasterStateResponse, MasterToApp, MasterToWorker};
use crate::state::MasterState;

pub use drivers::NOT_ALIVE_PREFIX;
pub use workers::WorkerRegistration;

/// How the master names itself in what it sends and shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterIdentity {
    /// The host it advertises.
    pub host: String,
    /// Its RPC port.
    pub port: u16,
    /// Its web UI, `http://host:port`.
    pub web_ui_url: String,
}

impl MasterIdentity {
    /// `ember://host:port`.
    pub fn url(&self) -> String {
        RpcAddress::new(self.host.clone(), self.port).to_ember_url()
    }
}

/// Something the endpoint must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Change the persisted state (before anything after it in the list); a failure does not
    /// hold back what follows.
    Persist(PersistOp),
    /// Store `op`, then report whether that succeeded with [`Master::persisted`], which applies
    /// the change the input asked for (or drops it) and returns the effects that follow. Always
    /// the last effect of an input.
    PersistThenApply(PersistOp),
    /// Send to a worker's endpoint at `address` (a registered worker, or the sender of the
    /// message being handled).
    ToWorker {
        /// The worker (for logs; may be an id the master refused).
        worker_id: WorkerId,
        /// Its RpcEnv.
        address: RpcAddress,
        /// What to send.
        msg: ToWorker,
    },
    /// Send to an application's driver at `address`.
    ToApp {
        /// The application.
        app_id: AppId,
        /// Its driver's RpcEnv.
        address: RpcAddress,
        /// What to send.
        msg: ToApp,
    },
    /// Send `CompleteRecovery` to the master after `after` (the recovery timeout).
    ScheduleCompleteRecovery {
        /// The delay.
        after: Duration,
    },
    /// Stop the master: it no longer leads.
    Exit {
        /// Why.
        reason: String,
    },
}

/// A message for a worker. The ones that carry the master's own ref are built by the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToWorker {
    /// `RegisteredWorker`.
    Registered {
        /// The id was already registered.
        duplicate: bool,
        /// The master address the worker registered through.
        master_address: RpcAddress,
    },
    /// `MasterChanged`.
    MasterChanged,
    /// Any other message.
    Message(MasterToWorkerPlain),
}

/// A message for an application's driver. The ones that carry the master's own ref are built by
/// the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToApp {
    /// `RegisteredApplication` (with the effect's application id).
    Registered,
    /// `MasterChanged`.
    MasterChanged,
    /// Any other message.
    Message(MasterToAppPlain),
}

/// The [`MasterToWorker`] messages without refs, as plain comparable data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterToWorkerPlain {
    /// `RegisterWorkerFailed`.
    RegisterWorkerFailed {
        /// Why.
        message: String,
    },
    /// `MasterInStandby`.
    MasterInStandby,
    /// `ReconnectWorker`.
    ReconnectWorker {
        /// The master's URL.
        master_url: String,
    },
    /// `LaunchExecutor`.
    LaunchExecutor {
        /// The master's URL.
        master_url: String,
        /// The application.
        app_id: AppId,
        /// The executor.
        exec_id: crate::ids::ExecutorId,
        /// The application's description.
        app_desc: Box<crate::description::ApplicationDescription>,
        /// Cores.
        cores: u32,
        /// Memory, MiB.
        memory_mb: u32,
    },
    /// `KillExecutor`.
    KillExecutor {
        /// The master's URL.
        master_url: String,
        /// The application.
        app_id: AppId,
        /// The executor.
        exec_id: crate::ids::ExecutorId,
    },
    /// `LaunchDriver`.
    LaunchDriver {
        /// The driver.
        driver_id: DriverId,
        /// What to run.
        driver_desc: Box<crate::description::DriverDescription>,
    },
    /// `KillDriver`.
    KillDriver {
        /// The driver.
        driver_id: DriverId,
    },
    /// `ApplicationFinished`.
    ApplicationFinished {
        /// The application.
        app_id: AppId,
    },
    /// `DecommissionWorker`.
    DecommissionWorker,
}

impl From<MasterToWorkerPlain> for MasterToWorker {
    fn from(m: MasterToWorkerPlain) -> Self {
        use MasterToWorkerPlain as P;
        match m {
            P::RegisterWorkerFailed { message } => MasterToWorker::RegisterWorkerFailed { message },
            P::MasterInStandby => MasterToWorker::MasterInStandby,
            P::ReconnectWorker { master_url } => MasterToWorker::ReconnectWorker { master_url },
            P::LaunchExecutor {
                master_url,
                app_id,
                exec_id,
                app_desc,
                cores,
                memory_mb,
            } => MasterToWorker::LaunchExecutor {
                master_url,
                app_id,
                exec_id,
                app_desc: *app_desc,
                cores,
                memory_mb,
            },
            P::KillExecutor {
                master_url,
                app_id,
                exec_id,
            } => MasterToWorker::KillExecutor {
                master_url,
                app_id,
                exec_id,
            },
            P::LaunchDriver {
                driver_id,
                driver_desc,
            } => MasterToWorker::LaunchDriver {
                driver_id,
                driver_desc: *driver_desc,
            },
            P::KillDriver { driver_id } => MasterToWorker::KillDriver { driver_id },
            P::ApplicationFinished { app_id } => MasterToWorker::ApplicationFinished { app_id },
            P::DecommissionWorker => MasterToWorker::DecommissionWorker,
        }
    }
}

/// The [`MasterToApp`] messages without refs, as plain comparable data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterToAppPlain {
    /// `ExecutorAdded`.
    ExecutorAdded {
        /// The executor.
        id: crate::ids::ExecutorId,
        /// Its worker.
        worker_id: WorkerId,
        /// The worker's `host:port`.
        host_port: String,
        /// Cores.
        cores: u32,
        /// Memory, MiB.
        memory_mb: u32,
    },
    /// `ExecutorUpdated`.
    ExecutorUpdated {
        /// The executor.
        id: crate::ids::ExecutorId,
        /// Its new state.
        state: crate::state::ExecutorState,
        /// Why.
        message: Option<String>,
        /// Its exit status.
        exit_status: Option<i32>,
        /// Set when its worker was lost or decommissioned.
        worker_host: Option<String>,
    },
    /// `ApplicationRemoved`.
    ApplicationRemoved {
        /// The final state's name.
        message: String,
    },
    /// `WorkerRemoved`.
    WorkerRemoved {
        /// The worker.
        id: WorkerId,
        /// Its host.
        host: String,
        /// Why.
        message: String,
    },
}

impl From<MasterToAppPlain> for MasterToApp {
    fn from(m: MasterToAppPlain) -> Self {
        use MasterToAppPlain as P;
        match m {
            P::ExecutorAdded {
                id,
                worker_id,
                host_port,
                cores,
                memory_mb,
            } => MasterToApp::ExecutorAdded {
                id,
                worker_id,
                host_port,
                cores,
                memory_mb,
            },
            P::ExecutorUpdated {
                id,
                state,
                message,
                exit_status,
                worker_host,
            } => MasterToApp::ExecutorUpdated {
                id,
                state,
                message,
                exit_status,
                worker_host,
            },
            P::ApplicationRemoved { message } => MasterToApp::ApplicationRemoved { message },
            P::WorkerRemoved { id, host, message } => {
                MasterToApp::WorkerRemoved { id, host, message }
            }
        }
    }
}

/// A change that waits for its record to be stored (see the module docs).
#[derive(Debug)]
enum Pending {
    /// A worker registering with a new id.
    NewWorker(WorkerRegistration),
    /// A recovered (UNKNOWN) worker answering from a new address: its record moves.
    MovedWorker {
        /// Its entry.
        slot: Slot,
        /// The registration.
        reg: WorkerRegistration,
    },
    /// An application registering.
    NewApp(Box<ApplicationInfo>),
    /// A driver submitted.
    NewDriver(Box<DriverInfo>),
}

/// A slot in the worker table. Spark keeps `WorkerInfo`s in a set where a DEAD entry and a
/// live one may share an id; slots let both exist while ids and addresses index the live ones.
type Slot = u64;

/// The master's state.
#[derive(Debug)]
pub struct Master {
    config: MasterConfig,
    identity: MasterIdentity,
    status: MasterState,
    now: u64,
    effects: Vec<Effect>,
    /// The change of the last input, until [`Master::persisted`] says whether it was stored.
    pending: Option<Pending>,
    /// Every worker known, DEAD ones included until culled, in registration order.
    workers: BTreeMap<Slot, WorkerInfo>,
    next_slot: Slot,
    /// Live (not DEAD) workers by id and by RpcEnv address.
    id_to_worker: HashMap<WorkerId, Slot>,
    address_to_worker: HashMap<RpcAddress, Slot>,
    /// Applications not finished.
    apps: BTreeMap<AppId, ApplicationInfo>,
    /// The same applications in registration order: the FIFO of `schedule()`.
    waiting_apps: Vec<AppId>,
    address_to_app: HashMap<RpcAddress, AppId>,
    completed_apps: VecDeque<ApplicationInfo>,
    /// Drivers not finished.
    drivers: BTreeMap<DriverId, DriverInfo>,
    /// Drivers not yet placed on a worker, in submission order.
    waiting_drivers: Vec<DriverId>,
    completed_drivers: VecDeque<DriverInfo>,
    next_app_number: u64,
    next_driver_number: u64,
    recovery_started_ms: Option<u64>,
    rng: u64,
}

impl Master {
    /// A STANDBY master. `seed` drives the shuffle of `ember.deploy.spreadOutDrivers`.
    pub fn new(config: MasterConfig, identity: MasterIdentity, seed: u64) -> Self {
        Self {
            config,
            identity,
            status: MasterState::Standby,
            now: 0,
            effects: Vec::new(),
            pending: None,
            workers: BTreeMap::new(),
            next_slot: 0,
            id_to_worker: HashMap::new(),
            address_to_worker: HashMap::new(),
            apps: BTreeMap::new(),
            waiting_apps: Vec::new(),
            address_to_app: HashMap::new(),
            completed_apps: VecDeque::new(),
            drivers: BTreeMap::new(),
            waiting_drivers: Vec::new(),
            completed_drivers: VecDeque::new(),
            next_app_number: 0,
            next_driver_number: 0,
            recovery_started_ms: None,
            rng: seed | 1,
        }
    }

    /// The master's state.
    pub fn status(&self) -> MasterState {
        self.status
    }

    /// Its configuration.
    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    /// How it names itself.
    pub fn identity(&self) -> &MasterIdentity {
        &self.identity
    }

    /// Every worker known, DEAD ones included, in registration order.
    pub fn workers(&self) -> impl Iterator<Item = &WorkerInfo> {
        self.workers.values()
    }

    /// The live (not DEAD) worker with this id.
    pub fn worker(&self, id: &WorkerId) -> Option<&WorkerInfo> {
        self.id_to_worker.get(id).and_then(|s| self.workers.get(s))
    }

    /// Whether an active application's driver is at this address.
    pub fn knows_app_address(&self, address: &RpcAddress) -> bool {
        self.address_to_app.contains_key(address)
    }

    /// An active application.
    pub fn app(&self, id: &AppId) -> Option<&ApplicationInfo> {
        self.apps.get(id)
    }

    /// Active applications, by id.
    pub fn apps(&self) -> impl Iterator<Item = &ApplicationInfo> {
        self.apps.values()
    }

    /// Finished applications kept for the UI, oldest first.
    pub fn completed_apps(&self) -> impl Iterator<Item = &ApplicationInfo> {
        self.completed_apps.iter()
    }

    /// An active driver.
    pub fn driver(&self, id: &DriverId) -> Option<&DriverInfo> {
        self.drivers.get(id)
    }

    /// Active drivers, by id.
    pub fn drivers(&self) -> impl Iterator<Item = &DriverInfo> {
        self.drivers.values()
    }

    /// Drivers waiting for a worker, in submission order.
    pub fn waiting_drivers(&self) -> &[DriverId] {
        &self.waiting_drivers
    }

    /// Finished drivers kept for the UI, oldest first.
    pub fn completed_drivers(&self) -> impl Iterator<Item = &DriverInfo> {
        self.completed_drivers.iter()
    }

    /// `RequestReadyz`: whether the master leads (RECOVERING counts, as in Spark).
    pub fn readyz(&self) -> bool {
        self.status != MasterState::Standby
    }

    /// `RequestClearCompletedDriversAndApps`: forgets finished applications and drivers.
    pub fn clear_completed(&mut self) -> bool {
        self.completed_apps.clear();
        self.completed_drivers.clear();
        true
    }

    /// `RequestMasterState`: everything the UI shows.
    pub fn snapshot(&self) -> MasterStateResponse {
        MasterStateResponse {
            host: self.identity.host.clone(),
            port: self.identity.port,
            rest_port: None,
            web_ui_url: self.identity.web_ui_url.clone(),
            workers: self.workers.values().map(WorkerInfo::summary).collect(),
            active_apps: self.apps.values().map(ApplicationInfo::summary).collect(),
            completed_apps: self
                .completed_apps
                .iter()
                .map(ApplicationInfo::summary)
                .collect(),
            active_drivers: self.drivers.values().map(DriverInfo::summary).collect(),
            completed_drivers: self
                .completed_drivers
                .iter()
                .map(DriverInfo::summary)
                .collect(),
            status: self.status,
        }
    }

    /// The outcome of the last input's [`Effect::PersistThenApply`]: when `stored`, the change
    /// is applied and the effects that follow it (the acknowledgement, what `schedule()`
    /// launches) are returned; otherwise the change is dropped and the state is as it was
    /// before that input.
    pub fn persisted(&mut self, stored: bool, now: u64) -> Vec<Effect> {
        let Some(pending) = self.pending.take() else {
            warn!("a persistence outcome with no change waiting for it");
            return Vec::new();
        };
        self.begin(now);
        match (pending, stored) {
            (Pending::NewWorker(reg), true) => self.accept_new_worker(reg),
            (Pending::MovedWorker { slot, reg }, true) => self.accept_reregistration(slot, reg),
            (Pending::NewApp(app), true) => self.accept_application(*app),
            (Pending::NewDriver(driver), true) => self.accept_driver(*driver),
            (Pending::NewWorker(reg) | Pending::MovedWorker { reg, .. }, false) => {
                error!(worker_id = %reg.id, address = %reg.address,
                    "could not persist the worker; not registering it (it will retry)");
            }
            (Pending::NewApp(app), false) => {
                error!(app_id = %app.id, driver = %app.driver_address,
                    "could not persist the application; not registering it (its driver will retry)");
            }
            (Pending::NewDriver(driver), false) => {
                error!(driver_id = %driver.id, "could not persist the driver; refusing the submission");
            }
        }
        self.finish()
    }

    // ---- helpers shared by the input files ----

    /// Starts handling an input at `now`.
    fn begin(&mut self, now: u64) {
        self.now = now;
        debug_assert!(self.effects.is_empty());
        debug_assert!(
            self.pending.is_none(),
            "an input arrived while a change waited for persistence"
        );
        if let Some(pending) = self.pending.take() {
            error!(
                ?pending,
                "an input arrived while a change waited for persistence; dropping the change"
            );
        }
    }

    /// Ends an input: its effects, in order.
    fn finish(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    fn persist(&mut self, op: PersistOp) {
        self.effects.push(Effect::Persist(op));
    }

    /// Ends the input's decisions: `change` happens once `op` is stored.
    fn persist_then_apply(&mut self, op: PersistOp, change: Pending) {
        debug_assert!(self.pending.is_none());
        self.effects.push(Effect::PersistThenApply(op));
        self.pending = Some(change);
    }

    fn send_worker_at(&mut self, worker_id: &WorkerId, address: &RpcAddress, msg: ToWorker) {
        self.effects.push(Effect::ToWorker {
            worker_id: worker_id.clone(),
            address: address.clone(),
            msg,
        });
    }

    fn send_worker_slot(&mut self, slot: Slot, msg: MasterToWorkerPlain) {
        if let Some(w) = self.workers.get(&slot) {
            let (id, address) = (w.id.clone(), w.address.clone());
            self.send_worker_at(&id, &address, ToWorker::Message(msg));
        }
    }

    fn send_app(&mut self, app_id: &AppId, msg: ToApp) {
        if let Some(app) = self.apps.get(app_id) {
            let address = app.driver_address.clone();
            self.effects.push(Effect::ToApp {
                app_id: app_id.clone(),
                address,
                msg,
            });
        }
    }

    fn master_url(&self) -> String {
        self.identity.url()
    }

    /// The worker entry with this id: the live one, else a DEAD one not yet culled.
    fn slot_of_any(&self, id: &WorkerId) -> Option<Slot> {
        self.id_to_worker.get(id).copied().or_else(|| {
            self.workers
                .iter()
                .rev()
                .find(|(_, w)| &w.id == id)
                .map(|(s, _)| *s)
        })
    }

    /// xorshift64*: a small deterministic generator for the driver shuffle.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
