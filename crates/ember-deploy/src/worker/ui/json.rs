//! The worker state as JSON with Spark's field names, in Spark's order
//! (`JsonProtocol.writeWorkerState`, `writeExecutorRunner`, `writeApplicationDescription`),
//! plus what Spark's worker JSON lacks, after Spark's fields: each executor's `state`, and
//! `drivers` and `finisheddrivers`.
//!
//! Each object is a struct whose fields serialize in declaration order (a `serde_json` map would
//! sort its keys). Resources (GPUs and the like) are not scheduled by Ember yet, so the resource
//! fields are present and empty, as Spark shows them for workers without resources.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::messages::{DriverRunnerSummary, ExecutorRunnerSummary, WorkerStateResponse};

/// `writeWorkerState`, then Ember's drivers.
#[derive(Debug, Serialize)]
pub(crate) struct WorkerStateJson {
    id: String,
    masterurl: String,
    masterwebuiurl: String,
    cores: u32,
    coresused: u32,
    memory: u32,
    memoryused: u32,
    resources: Map<String, Value>,
    resourcesused: Map<String, Value>,
    executors: Vec<ExecutorRunnerJson>,
    finishedexecutors: Vec<ExecutorRunnerJson>,
    drivers: Vec<DriverRunnerJson>,
    finisheddrivers: Vec<DriverRunnerJson>,
}

/// `writeExecutorRunner`, then Ember's `state`.
#[derive(Debug, Serialize)]
struct ExecutorRunnerJson {
    id: u32,
    memory: u32,
    resources: Map<String, Value>,
    appid: String,
    appdesc: ApplicationDescriptionJson,
    state: &'static str,
}

/// `writeApplicationDescription`.
#[derive(Debug, Serialize)]
struct ApplicationDescriptionJson {
    name: String,
    cores: u32,
    memoryperexecutor: u32,
    resourcesperexecutor: Vec<Value>,
    memoryperslave: u32,
    resourcesperslave: Vec<Value>,
    user: String,
    command: String,
}

/// A driver the worker runs (Ember's; Spark's worker JSON has none).
#[derive(Debug, Serialize)]
struct DriverRunnerJson {
    id: String,
    state: &'static str,
    cores: u32,
    memory: u32,
    resources: Map<String, Value>,
    supervise: bool,
    command: String,
    exception: Option<String>,
}

/// `/json`.
pub(crate) fn worker_state(state: &WorkerStateResponse) -> WorkerStateJson {
    WorkerStateJson {
        id: state.worker_id.to_string(),
        masterurl: state.master_url.clone().unwrap_or_default(),
        masterwebuiurl: state.master_web_ui_url.clone().unwrap_or_default(),
        cores: state.cores,
        coresused: state.cores_used,
        memory: state.memory_mb,
        memoryused: state.memory_used_mb,
        resources: Map::new(),
        resourcesused: Map::new(),
        executors: state.executors.iter().map(executor).collect(),
        finishedexecutors: state.finished_executors.iter().map(executor).collect(),
        drivers: state.drivers.iter().map(driver).collect(),
        finisheddrivers: state.finished_drivers.iter().map(driver).collect(),
    }
}

fn executor(e: &ExecutorRunnerSummary) -> ExecutorRunnerJson {
    let desc = &e.app_desc;
    ExecutorRunnerJson {
        id: e.exec_id.0,
        memory: e.memory_mb,
        resources: Map::new(),
        appid: e.app_id.to_string(),
        appdesc: ApplicationDescriptionJson {
            name: desc.name.clone(),
            cores: desc.max_cores.unwrap_or(0),
            memoryperexecutor: desc.memory_per_executor_mb,
            resourcesperexecutor: Vec::new(),
            memoryperslave: desc.memory_per_executor_mb,
            resourcesperslave: Vec::new(),
            user: desc.user.clone(),
            command: desc.command.to_string(),
        },
        state: e.state.as_str(),
    }
}

fn driver(d: &DriverRunnerSummary) -> DriverRunnerJson {
    DriverRunnerJson {
        id: d.driver_id.to_string(),
        state: d.state.as_str(),
        cores: d.desc.cores,
        memory: d.desc.mem_mb,
        resources: Map::new(),
        supervise: d.desc.supervise,
        command: d.desc.command.to_string(),
        exception: d.exception.clone(),
    }
}

#[cfg(test)]
mod tests;
