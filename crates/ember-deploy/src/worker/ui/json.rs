//! The worker state as JSON with Spark's field names (`JsonProtocol.writeWorkerState`), plus
//! `drivers` and `finisheddrivers`, which Spark's worker JSON lacks.

use serde_json::{Value, json};

use crate::messages::{DriverRunnerSummary, ExecutorRunnerSummary, WorkerStateResponse};

/// `/json`.
pub(crate) fn worker_state(state: &WorkerStateResponse) -> Value {
    json!({
        "id": state.worker_id.as_str(),
        "masterurl": state.master_url.clone().unwrap_or_default(),
        "masterwebuiurl": state.master_web_ui_url.clone().unwrap_or_default(),
        "cores": state.cores,
        "coresused": state.cores_used,
        "memory": state.memory_mb,
        "memoryused": state.memory_used_mb,
        "resources": {},
        "resourcesused": {},
        "executors": state.executors.iter().map(executor).collect::<Vec<_>>(),
        "finishedexecutors": state.finished_executors.iter().map(executor).collect::<Vec<_>>(),
        "drivers": state.drivers.iter().map(driver).collect::<Vec<_>>(),
        "finisheddrivers": state.finished_drivers.iter().map(driver).collect::<Vec<_>>(),
    })
}

/// Spark's `writeExecutorRunner`.
fn executor(e: &ExecutorRunnerSummary) -> Value {
    let desc = &e.app_desc;
    json!({
        "id": e.exec_id.0,
        "memory": e.memory_mb,
        "resources": {},
        "appid": e.app_id.as_str(),
        "state": e.state.as_str(),
        "appdesc": {
            "name": desc.name,
            "cores": desc.max_cores.unwrap_or(0),
            "memoryperexecutor": desc.memory_per_executor_mb,
            "resourcesperexecutor": [],
            "memoryperslave": desc.memory_per_executor_mb,
            "resourcesperslave": [],
            "user": desc.user,
            "command": desc.command.to_string(),
        },
    })
}

fn driver(d: &DriverRunnerSummary) -> Value {
    json!({
        "id": d.driver_id.as_str(),
        "state": d.state.as_str(),
        "cores": d.desc.cores,
        "memory": d.desc.mem_mb,
        "resources": {},
        "supervise": d.desc.supervise,
        "command": d.desc.command.to_string(),
        "exception": d.exception,
    })
}
