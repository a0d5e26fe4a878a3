//! The master's JSON (`/json`, `/json/<field>`, `/json/clusterutilization`), with Spark's field
//! names and shapes.
//!
//! Spark counterpart: `JsonProtocol.writeMasterState`, `writeWorkerInfo`,
//! `writeApplicationInfo`, `writeDriverInfo`, `writeClusterUtilization`. Resources (GPUs and
//! the like) are not scheduled by Ember yet, so the resource fields are present and empty, as
//! Spark shows them for workers without resources. Fields are written in Spark's order.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::ids::civil_from_unix;
use crate::messages::{ApplicationSummary, DriverSummary, MasterStateResponse, WorkerSummary};
use crate::state::{DriverState, WorkerState};

/// `writeWorkerInfo`.
#[derive(Debug, Serialize)]
pub struct WorkerJson {
    id: String,
    host: String,
    port: u16,
    webuiaddress: String,
    cores: u32,
    coresused: u32,
    coresfree: u32,
    memory: u32,
    memoryused: u32,
    memoryfree: u32,
    resources: Map<String, Value>,
    resourcesused: Map<String, Value>,
    resourcesfree: Map<String, Value>,
    state: &'static str,
    lastheartbeat: u64,
}

/// `writeApplicationInfo`.
#[derive(Debug, Serialize)]
pub struct ApplicationJson {
    id: String,
    starttime: u64,
    name: String,
    cores: u32,
    user: String,
    memoryperexecutor: u32,
    memoryperslave: u32,
    resourcesperexecutor: Vec<Value>,
    resourcesperslave: Vec<Value>,
    submitdate: String,
    state: &'static str,
    duration: u64,
}

/// `writeDriverInfo`.
#[derive(Debug, Serialize)]
pub struct DriverJson {
    id: String,
    /// A string in Spark's JSON (unlike the application's number).
    starttime: String,
    state: &'static str,
    cores: u32,
    memory: u32,
    resources: Map<String, Value>,
    submitdate: String,
    worker: String,
    mainclass: String,
}

/// `writeMasterState`.
#[derive(Debug, Serialize)]
pub struct MasterJson {
    url: String,
    workers: Vec<WorkerJson>,
    aliveworkers: usize,
    cores: u64,
    coresused: u64,
    memory: u64,
    memoryused: u64,
    resources: Vec<Map<String, Value>>,
    resourcesused: Vec<Map<String, Value>>,
    activeapps: Vec<ApplicationJson>,
    completedapps: Vec<ApplicationJson>,
    activedrivers: Vec<DriverJson>,
    completeddrivers: Vec<DriverJson>,
    status: &'static str,
}

/// `writeClusterUtilization`.
#[derive(Debug, Serialize)]
pub struct ClusterUtilizationJson {
    #[serde(rename = "waitingDrivers")]
    waiting_drivers: usize,
    cores: u64,
    coresused: u64,
    coresutilization: u64,
    memory: u64,
    memoryused: u64,
    memoryutilization: u64,
}

fn worker_json(w: &WorkerSummary) -> WorkerJson {
    WorkerJson {
        id: w.id.to_string(),
        host: w.host.clone(),
        port: w.port,
        webuiaddress: w.web_ui_address.clone(),
        cores: w.cores,
        coresused: w.cores_used,
        coresfree: w.cores.saturating_sub(w.cores_used),
        memory: w.memory_mb,
        memoryused: w.memory_used_mb,
        memoryfree: w.memory_mb.saturating_sub(w.memory_used_mb),
        resources: Map::new(),
        resourcesused: Map::new(),
        resourcesfree: Map::new(),
        state: w.state.as_str(),
        lastheartbeat: w.last_heartbeat_ms,
    }
}

fn app_json(a: &ApplicationSummary, now_ms: u64) -> ApplicationJson {
    ApplicationJson {
        id: a.id.to_string(),
        starttime: a.start_time_ms,
        name: a.desc.name.clone(),
        cores: a.cores_granted,
        user: a.desc.user.clone(),
        memoryperexecutor: a.desc.memory_per_executor_mb,
        memoryperslave: a.desc.memory_per_executor_mb,
        resourcesperexecutor: Vec::new(),
        resourcesperslave: Vec::new(),
        submitdate: java_date(a.start_time_ms),
        state: a.state.as_str(),
        duration: a
            .end_time_ms
            .unwrap_or(now_ms)
            .saturating_sub(a.start_time_ms),
    }
}

fn driver_json(d: &DriverSummary) -> DriverJson {
    DriverJson {
        id: d.id.to_string(),
        starttime: d.start_time_ms.to_string(),
        state: d.state.as_str(),
        cores: d.desc.cores,
        memory: d.desc.mem_mb,
        resources: Map::new(),
        submitdate: java_date(d.start_time_ms),
        worker: d
            .worker_id
            .as_ref()
            .map_or_else(|| "None".to_owned(), ToString::to_string),
        // Spark shows the user's main class; an Ember driver is a binary.
        mainclass: d.desc.command.binary.name.clone(),
    }
}

fn alive(state: &MasterStateResponse) -> impl Iterator<Item = &WorkerSummary> {
    state
        .workers
        .iter()
        .filter(|w| w.state == WorkerState::Alive)
}

/// The whole state, as `/json` shows it.
pub fn master_json(state: &MasterStateResponse, now_ms: u64) -> MasterJson {
    let alive_count = alive(state).count();
    MasterJson {
        url: state.url(),
        workers: state.workers.iter().map(worker_json).collect(),
        aliveworkers: alive_count,
        cores: alive(state).map(|w| u64::from(w.cores)).sum(),
        coresused: alive(state).map(|w| u64::from(w.cores_used)).sum(),
        memory: alive(state).map(|w| u64::from(w.memory_mb)).sum(),
        memoryused: alive(state).map(|w| u64::from(w.memory_used_mb)).sum(),
        resources: vec![Map::new(); alive_count],
        resourcesused: vec![Map::new(); alive_count],
        activeapps: state
            .active_apps
            .iter()
            .map(|a| app_json(a, now_ms))
            .collect(),
        completedapps: state
            .completed_apps
            .iter()
            .map(|a| app_json(a, now_ms))
            .collect(),
        activedrivers: state.active_drivers.iter().map(driver_json).collect(),
        completeddrivers: state.completed_drivers.iter().map(driver_json).collect(),
        status: state.status.as_str(),
    }
}

/// One field of the state, as `/json/<field>` shows it: `{"<field>": value}`, or
/// `{"<field>": ""}` for a field that does not exist.
pub fn master_json_field(state: &MasterStateResponse, field: &str, now_ms: u64) -> Value {
    let all = serde_json::to_value(master_json(state, now_ms)).unwrap_or(Value::Null);
    let value = all
        .get(field)
        .cloned()
        .unwrap_or_else(|| Value::String(String::new()));
    let mut out = Map::new();
    out.insert(field.to_owned(), value);
    Value::Object(out)
}

/// `/json/clusterutilization`.
pub fn cluster_utilization(state: &MasterStateResponse) -> ClusterUtilizationJson {
    let cores: u64 = alive(state).map(|w| u64::from(w.cores)).sum();
    let cores_used: u64 = alive(state).map(|w| u64::from(w.cores_used)).sum();
    let memory: u64 = alive(state).map(|w| u64::from(w.memory_mb)).sum();
    let memory_used: u64 = alive(state).map(|w| u64::from(w.memory_used_mb)).sum();
    let percent = |used: u64, total: u64| (100 * used).checked_div(total).unwrap_or(100);
    ClusterUtilizationJson {
        waiting_drivers: state
            .active_drivers
            .iter()
            .filter(|d| d.state == DriverState::Submitted)
            .count(),
        cores,
        coresused: cores_used,
        coresutilization: percent(cores_used, cores),
        memory,
        memoryused: memory_used,
        memoryutilization: percent(memory_used, memory),
    }
}

/// A time as Java's `Date.toString` prints it in UTC: `Sat Nov 21 12:21:47 UTC 2026`.
pub fn java_date(unix_millis: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = unix_millis / 1000;
    let (y, mo, d, h, mi, s) = civil_from_unix(secs);
    // 1970-01-01 was a Thursday.
    let weekday = DAYS[((secs / 86_400 + 4) % 7) as usize];
    let month = MONTHS[(mo as usize).saturating_sub(1).min(11)];
    format!("{weekday} {month} {d:02} {h:02}:{mi:02}:{s:02} UTC {y}")
}

#[cfg(test)]
mod tests;
