//! The JSON against a document captured from a Spark 4 master (`/json` with two workers and a
//! running application), with the URL scheme changed to `ember`.

use serde_json::{Value, json};

use super::*;
use crate::description::{
    AppBinary, ApplicationDescription, BinaryLocation, Command, DriverDescription,
};
use crate::messages::{ApplicationSummary, DriverSummary, MasterStateResponse, WorkerSummary};
use crate::state::{ApplicationState, MasterState};
use ember_rpc::RpcAddress;

const SPARK_SAMPLE: &str = r#"{
  "url" : "ember://127.0.0.1:7077",
  "workers" : [ {
    "id" : "worker-20261121122139-127.0.0.1-7078",
    "host" : "127.0.0.1", "port" : 7078, "webuiaddress" : "http://127.0.0.1:8081",
    "cores" : 1, "coresused" : 1, "coresfree" : 0,
    "memory" : 4096, "memoryused" : 2048, "memoryfree" : 2048,
    "resources" : { }, "resourcesused" : { }, "resourcesfree" : { },
    "state" : "ALIVE", "lastheartbeat" : 1795263700594
  }, {
    "id" : "worker-20261121122142-127.0.0.1-7079",
    "host" : "127.0.0.1", "port" : 7079, "webuiaddress" : "http://127.0.0.1:8082",
    "cores" : 1, "coresused" : 1, "coresfree" : 0,
    "memory" : 4096, "memoryused" : 2048, "memoryfree" : 2048,
    "resources" : { }, "resourcesused" : { }, "resourcesfree" : { },
    "state" : "ALIVE", "lastheartbeat" : 1795263703615
  } ],
  "aliveworkers" : 2, "cores" : 2, "coresused" : 2, "memory" : 8192, "memoryused" : 4096,
  "resources" : [ { }, { } ], "resourcesused" : [ { }, { } ],
  "activeapps" : [ {
    "id" : "app-20261121122147-0000", "starttime" : 1795263707520, "name" : "spark-bench",
    "cores" : 2, "user" : "root", "memoryperexecutor" : 2048, "memoryperslave" : 2048,
    "resourcesperexecutor" : [ ], "resourcesperslave" : [ ],
    "submitdate" : "Sat Nov 21 12:21:47 UTC 2026", "state" : "RUNNING", "duration" : 427
  } ],
  "completedapps" : [ ], "activedrivers" : [ ], "completeddrivers" : [ ],
  "status" : "ALIVE"
}"#;

fn command(name: &str) -> Command {
    Command {
        binary: AppBinary {
            name: name.into(),
            digest: "00".into(),
            size: 1,
            location: BinaryLocation::LocalPath(name.into()),
        },
        arguments: vec![],
        environment: vec![],
    }
}

fn worker(id: &str, port: u16, ui: u16, heartbeat: u64) -> WorkerSummary {
    WorkerSummary {
        id: id.into(),
        host: "127.0.0.1".into(),
        port,
        web_ui_address: format!("http://127.0.0.1:{ui}"),
        cores: 1,
        cores_used: 1,
        memory_mb: 4096,
        memory_used_mb: 2048,
        state: WorkerState::Alive,
        last_heartbeat_ms: heartbeat,
    }
}

fn sample_state() -> MasterStateResponse {
    MasterStateResponse {
        host: "127.0.0.1".into(),
        port: 7077,
        rest_port: None,
        web_ui_url: "http://127.0.0.1:8080".into(),
        workers: vec![
            worker(
                "worker-20261121122139-127.0.0.1-7078",
                7078,
                8081,
                1_795_263_700_594,
            ),
            worker(
                "worker-20261121122142-127.0.0.1-7079",
                7079,
                8082,
                1_795_263_703_615,
            ),
        ],
        active_apps: vec![ApplicationSummary {
            id: "app-20261121122147-0000".into(),
            desc: ApplicationDescription {
                name: "spark-bench".into(),
                max_cores: None,
                memory_per_executor_mb: 2048,
                cores_per_executor: None,
                initial_executor_limit: None,
                command: command("bench"),
                app_ui_url: None,
                user: "root".into(),
            },
            start_time_ms: 1_795_263_707_520,
            end_time_ms: None,
            cores_granted: 2,
            state: ApplicationState::Running,
            executors: vec![],
            driver_address: RpcAddress::new("127.0.0.1", 40000),
        }],
        completed_apps: vec![],
        active_drivers: vec![],
        completed_drivers: vec![],
        status: MasterState::Alive,
    }
}

#[test]
fn master_json_matches_sparks_document() {
    let ours = serde_json::to_value(master_json(&sample_state(), 1_795_263_707_947)).unwrap();
    let spark: Value = serde_json::from_str(SPARK_SAMPLE).unwrap();
    assert_eq!(ours, spark);
    // Fields come in Spark's order, in every object.
    let text = serde_json::to_string(&master_json(&sample_state(), 0)).unwrap();
    assert_eq!(
        crate::web::json_keys_in_order(&text),
        crate::web::json_keys_in_order(SPARK_SAMPLE),
        "{text}"
    );
}

#[test]
fn drivers_and_dead_workers() {
    let mut state = sample_state();
    state.workers[1].state = WorkerState::Dead;
    state.active_drivers.push(DriverSummary {
        id: "driver-20261121122343-0000".into(),
        start_time_ms: 1_795_263_823_068,
        state: DriverState::Running,
        desc: DriverDescription {
            mem_mb: 1024,
            cores: 1,
            supervise: false,
            command: command("bench.SparkBench"),
        },
        worker_id: Some("worker-20261121122341-127.0.0.1-7079".into()),
        exception: None,
    });
    let mut waiting = state.active_drivers[0].clone();
    waiting.worker_id = None;
    waiting.state = DriverState::Submitted;
    state.active_drivers.push(waiting);
    let ours = serde_json::to_value(master_json(&state, 0)).unwrap();
    assert_eq!(
        ours["activedrivers"][0],
        json!({
            "id": "driver-20261121122343-0000",
            "starttime": "1795263823068",
            "state": "RUNNING",
            "cores": 1,
            "memory": 1024,
            "resources": {},
            "submitdate": "Sat Nov 21 12:23:43 UTC 2026",
            "worker": "worker-20261121122341-127.0.0.1-7079",
            "mainclass": "bench.SparkBench"
        })
    );
    assert_eq!(ours["activedrivers"][1]["worker"], "None");
    // Totals count ALIVE workers only.
    assert_eq!(ours["aliveworkers"], 1);
    assert_eq!(ours["cores"], 1);
    assert_eq!(ours["resources"], json!([{}]));
    assert_eq!(ours["workers"][1]["state"], "DEAD");

    let util = serde_json::to_value(cluster_utilization(&state)).unwrap();
    assert_eq!(
        util,
        json!({
            "waitingDrivers": 1,
            "cores": 1, "coresused": 1, "coresutilization": 100,
            "memory": 4096, "memoryused": 2048, "memoryutilization": 50
        })
    );
}

#[test]
fn single_fields() {
    let state = sample_state();
    assert_eq!(
        master_json_field(&state, "aliveworkers", 0),
        json!({"aliveworkers": 2})
    );
    assert_eq!(
        master_json_field(&state, "status", 0),
        json!({"status": "ALIVE"})
    );
    assert_eq!(
        master_json_field(&state, "nonsense", 0),
        json!({"nonsense": ""})
    );
    let empty = MasterStateResponse {
        workers: vec![],
        active_apps: vec![],
        ..state
    };
    let util = serde_json::to_value(cluster_utilization(&empty)).unwrap();
    assert_eq!(
        util["coresutilization"], 100,
        "no cores counts as fully used, as in Spark"
    );
}

#[test]
fn dates_print_like_java() {
    assert_eq!(java_date(1_795_263_707_520), "Sat Nov 21 12:21:47 UTC 2026");
    assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
    assert_eq!(java_date(951_782_400_000), "Tue Feb 29 00:00:00 UTC 2000");
}
