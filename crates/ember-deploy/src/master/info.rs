//! The master's records of workers, applications, executors and drivers: plain data.
//!
//! Spark counterparts: `WorkerInfo`, `ApplicationInfo`, `ExecutorDesc`, `DriverInfo`. Spark's
//! records point at each other and hold endpoint refs; these hold ids and addresses only (the
//! endpoint keeps the refs, keyed by address), so the state machine that owns them stays pure
//! and its tests need no network.

use std::collections::BTreeMap;

use ember_rpc::RpcAddress;

use crate::description::{ApplicationDescription, DriverDescription};
use crate::ids::{AppId, DriverId, ExecutorId, WorkerId};
use crate::master::persistence::WorkerRecord;
use crate::messages::{ApplicationSummary, DriverSummary, ExecutorSummary, WorkerSummary};
use crate::state::{ApplicationState, DriverState, ExecutorState, WorkerState};

/// An executor across applications (Spark's `appId/execId`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExecutorKey {
    /// The application.
    pub app_id: AppId,
    /// The executor within it.
    pub exec_id: ExecutorId,
}

/// What one executor or driver holds on a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// Cores.
    pub cores: u32,
    /// Memory, MiB.
    pub memory_mb: u32,
}

/// A worker as the master knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Its id.
    pub id: WorkerId,
    /// The host it says it runs on.
    pub host: String,
    /// Its RPC port.
    pub port: u16,
    /// The address of its RpcEnv (where its endpoint lives; the key for disconnects).
    pub address: RpcAddress,
    /// Cores offered.
    pub cores: u32,
    /// Memory offered, MiB.
    pub memory_mb: u32,
    /// Its web UI.
    pub web_ui_url: String,
    /// Its state.
    pub state: WorkerState,
    /// Last heartbeat (or registration), ms since the Unix epoch.
    pub last_heartbeat_ms: u64,
    /// Cores held by its executors and drivers.
    pub cores_used: u32,
    /// Memory held by its executors and drivers, MiB.
    pub memory_used_mb: u32,
    /// The executors placed on it.
    pub executors: BTreeMap<ExecutorKey, Allocation>,
    /// The drivers placed on it.
    pub drivers: BTreeMap<DriverId, Allocation>,
}

impl WorkerInfo {
    /// A newly registered (or recovered) worker: ALIVE, nothing used, heard from `now_ms`.
    pub fn new(record: WorkerRecord, now_ms: u64) -> Self {
        let WorkerRecord {
            id,
            host,
            port,
            address,
            cores,
            memory_mb,
            web_ui_url,
        } = record;
        Self {
            id,
            host,
            port,
            address,
            cores,
            memory_mb,
            web_ui_url,
            state: WorkerState::Alive,
            last_heartbeat_ms: now_ms,
            cores_used: 0,
            memory_used_mb: 0,
            executors: BTreeMap::new(),
            drivers: BTreeMap::new(),
        }
    }

    /// Cores not held by anything.
    pub fn cores_free(&self) -> u32 {
        self.cores.saturating_sub(self.cores_used)
    }

    /// Memory not held by anything, MiB.
    pub fn memory_free_mb(&self) -> u32 {
        self.memory_mb.saturating_sub(self.memory_used_mb)
    }

    /// `host:port` of the worker.
    pub fn host_port(&self) -> String {
        RpcAddress::new(self.host.clone(), self.port).to_string()
    }

    /// Whether the worker takes new executors and drivers.
    pub fn is_alive(&self) -> bool {
        self.state == WorkerState::Alive
    }

    /// Places an executor here (no-op if it already is).
    pub fn add_executor(&mut self, key: ExecutorKey, allocation: Allocation) {
        if self.executors.insert(key, allocation).is_none() {
            self.hold(allocation);
        }
    }

    /// Frees what an executor held; false if it was not here.
    pub fn remove_executor(&mut self, key: &ExecutorKey) -> bool {
        let removed = self.executors.remove(key);
        removed.map(|a| self.release(a)).is_some()
    }

    /// Places a driver here (no-op if it already is).
    pub fn add_driver(&mut self, id: DriverId, allocation: Allocation) {
        if self.drivers.insert(id, allocation).is_none() {
            self.hold(allocation);
        }
    }

    /// Frees what a driver held; false if it was not here.
    pub fn remove_driver(&mut self, id: &DriverId) -> bool {
        let removed = self.drivers.remove(id);
        removed.map(|a| self.release(a)).is_some()
    }

    // `cores_used` and `memory_used_mb` sum the two maps (Spark's `coresUsed`/`memoryUsed`); the
    // four methods above keep them in step through these two.
    fn hold(&mut self, a: Allocation) {
        self.cores_used = self.cores_used.saturating_add(a.cores);
        self.memory_used_mb = self.memory_used_mb.saturating_add(a.memory_mb);
    }

    fn release(&mut self, a: Allocation) {
        self.cores_used = self.cores_used.saturating_sub(a.cores);
        self.memory_used_mb = self.memory_used_mb.saturating_sub(a.memory_mb);
    }

    /// The UI's view.
    pub fn summary(&self) -> WorkerSummary {
        WorkerSummary {
            id: self.id.clone(),
            host: self.host.clone(),
            port: self.port,
            web_ui_address: self.web_ui_url.clone(),
            cores: self.cores,
            cores_used: self.cores_used,
            memory_mb: self.memory_mb,
            memory_used_mb: self.memory_used_mb,
            state: self.state,
            last_heartbeat_ms: self.last_heartbeat_ms,
        }
    }
}

/// An executor granted to an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorDesc {
    /// Its id within the application.
    pub id: ExecutorId,
    /// The application.
    pub app_id: AppId,
    /// The worker it runs on.
    pub worker_id: WorkerId,
    /// That worker's `host:port`.
    pub worker_host_port: String,
    /// That worker's web UI (for log links).
    pub worker_web_ui: String,
    /// Cores granted.
    pub cores: u32,
    /// Memory granted, MiB.
    pub memory_mb: u32,
    /// Its last known state.
    pub state: ExecutorState,
}

impl ExecutorDesc {
    /// Its key across applications.
    pub fn key(&self) -> ExecutorKey {
        ExecutorKey {
            app_id: self.app_id.clone(),
            exec_id: self.id,
        }
    }

    /// What it holds on its worker.
    pub fn allocation(&self) -> Allocation {
        Allocation {
            cores: self.cores,
            memory_mb: self.memory_mb,
        }
    }

    /// The UI's view.
    pub fn summary(&self) -> ExecutorSummary {
        ExecutorSummary {
            id: self.id,
            worker_id: self.worker_id.clone(),
            worker_host_port: self.worker_host_port.clone(),
            worker_web_ui: self.worker_web_ui.clone(),
            cores: self.cores,
            memory_mb: self.memory_mb,
            state: self.state,
        }
    }
}

/// How many removed executors an application keeps for its UI page.
pub const RETAINED_REMOVED_EXECUTORS: usize = 1000;

/// An application as the master knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationInfo {
    /// Its id.
    pub id: AppId,
    /// What it asked for.
    pub desc: ApplicationDescription,
    /// Registration time, ms since the Unix epoch.
    pub start_time_ms: u64,
    /// The address of its driver's RpcEnv (the key for disconnects).
    pub driver_address: RpcAddress,
    /// Its state.
    pub state: ApplicationState,
    /// Its live executors.
    pub executors: BTreeMap<ExecutorId, ExecutorDesc>,
    /// Executors that ended, for the UI.
    pub removed_executors: Vec<ExecutorDesc>,
    /// Cores held by its live executors.
    pub cores_granted: u32,
    /// When it finished.
    pub end_time_ms: Option<u64>,
    /// The id the next executor gets.
    pub next_executor_id: u32,
    /// Abnormal executor exits since an executor last reached RUNNING.
    pub retry_count: u32,
    /// Most executors it wants at once (`ember.executor.instances` or dynamic allocation);
    /// `u32::MAX` when unlimited.
    pub executor_limit: u32,
    /// Cores it wants in total: `ember.cores.max`, else `ember.deploy.defaultCores`.
    pub requested_cores: u32,
}

impl ApplicationInfo {
    /// A newly registered (or recovered) application: WAITING, no executors.
    pub fn new(
        id: AppId,
        desc: ApplicationDescription,
        start_time_ms: u64,
        driver_address: RpcAddress,
        default_cores: u32,
    ) -> Self {
        Self {
            id,
            requested_cores: desc.max_cores.unwrap_or(default_cores),
            executor_limit: desc.initial_executor_limit.unwrap_or(u32::MAX),
            desc,
            start_time_ms,
            driver_address,
            state: ApplicationState::Waiting,
            executors: BTreeMap::new(),
            removed_executors: Vec::new(),
            cores_granted: 0,
            end_time_ms: None,
            next_executor_id: 0,
            retry_count: 0,
        }
    }

    /// Cores it still wants.
    pub fn cores_left(&self) -> u32 {
        self.requested_cores.saturating_sub(self.cores_granted)
    }

    /// Whether it has ended.
    pub fn is_finished(&self) -> bool {
        self.state.is_finished()
    }

    /// Records a new executor on `worker`; `use_id` keeps a recovered executor's id (and moves
    /// the counter past it).
    pub fn add_executor(
        &mut self,
        worker: &WorkerInfo,
        cores: u32,
        memory_mb: u32,
        use_id: Option<ExecutorId>,
    ) -> ExecutorDesc {
        let id = match use_id {
            Some(id) => {
                self.next_executor_id = self.next_executor_id.max(id.0.saturating_add(1));
                id
            }
            None => {
                let id = ExecutorId(self.next_executor_id);
                self.next_executor_id = self.next_executor_id.saturating_add(1);
                id
            }
        };
        let exec = ExecutorDesc {
            id,
            app_id: self.id.clone(),
            worker_id: worker.id.clone(),
            worker_host_port: worker.host_port(),
            worker_web_ui: worker.web_ui_url.clone(),
            cores,
            memory_mb,
            state: ExecutorState::Launching,
        };
        self.cores_granted = self.cores_granted.saturating_add(cores);
        self.executors.insert(id, exec.clone());
        exec
    }

    /// Moves an executor to the removed list and takes back its cores. The list keeps the
    /// last [`RETAINED_REMOVED_EXECUTORS`] (Spark keeps all, which grows without bound when
    /// executors keep failing and `ember.deploy.maxExecutorRetries` is -1).
    pub fn remove_executor(&mut self, id: ExecutorId) -> Option<ExecutorDesc> {
        let exec = self.executors.remove(&id)?;
        self.cores_granted = self.cores_granted.saturating_sub(exec.cores);
        if self.removed_executors.len() >= RETAINED_REMOVED_EXECUTORS {
            self.removed_executors.remove(0);
        }
        self.removed_executors.push(exec.clone());
        Some(exec)
    }

    /// Ends the application.
    pub fn mark_finished(&mut self, state: ApplicationState, now_ms: u64) {
        self.state = state;
        self.end_time_ms = Some(now_ms);
    }

    /// The UI's view: its current executors, then the removed ones.
    pub fn summary(&self) -> ApplicationSummary {
        ApplicationSummary {
            id: self.id.clone(),
            desc: self.desc.clone(),
            start_time_ms: self.start_time_ms,
            end_time_ms: self.end_time_ms,
            cores_granted: self.cores_granted,
            state: self.state,
            executors: self
                .executors
                .values()
                .chain(self.removed_executors.iter())
                .map(ExecutorDesc::summary)
                .collect(),
            driver_address: self.driver_address.clone(),
        }
    }

    /// How long it ran (or has run until `now_ms`), ms.
    pub fn duration_ms(&self, now_ms: u64) -> u64 {
        self.end_time_ms
            .unwrap_or(now_ms)
            .saturating_sub(self.start_time_ms)
    }
}

/// A driver submitted in cluster mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverInfo {
    /// Its id.
    pub id: DriverId,
    /// What to run.
    pub desc: DriverDescription,
    /// Submission time, ms since the Unix epoch.
    pub start_time_ms: u64,
    /// Its state.
    pub state: DriverState,
    /// Why it failed, if it did.
    pub exception: Option<String>,
    /// The worker running it.
    pub worker: Option<WorkerId>,
    /// That worker's `host:port`.
    pub worker_host_port: Option<String>,
}

impl DriverInfo {
    /// A newly submitted (or recovered) driver: SUBMITTED, on no worker.
    pub fn new(id: DriverId, desc: DriverDescription, start_time_ms: u64) -> Self {
        Self {
            id,
            desc,
            start_time_ms,
            state: DriverState::Submitted,
            exception: None,
            worker: None,
            worker_host_port: None,
        }
    }

    /// What it holds on its worker.
    pub fn allocation(&self) -> Allocation {
        Allocation {
            cores: self.desc.cores,
            memory_mb: self.desc.mem_mb,
        }
    }

    /// The UI's view.
    pub fn summary(&self) -> DriverSummary {
        DriverSummary {
            id: self.id.clone(),
            start_time_ms: self.start_time_ms,
            state: self.state,
            desc: self.desc.clone(),
            worker_id: self.worker.clone(),
            exception: self.exception.clone(),
        }
    }
}
