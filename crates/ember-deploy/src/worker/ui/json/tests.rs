//! The worker JSON against a document captured from a Spark 4 worker (`/json` with one running
//! executor; `spark-worker-sample.json`, with the master URL's scheme changed to `ember`).

use serde_json::Value;

use super::*;
use crate::description::{AppBinary, ApplicationDescription, BinaryLocation, Command};
use crate::ids::ExecutorId;
use crate::state::ExecutorState;
use crate::web::json_keys_in_order;

const SPARK_SAMPLE: &str = include_str!("spark-worker-sample.json");

/// The state of the worker in Spark's sample.
fn sample_state() -> WorkerStateResponse {
    WorkerStateResponse {
        host: "127.0.0.1".into(),
        port: 7078,
        worker_id: "worker-20261121122139-127.0.0.1-7078".into(),
        master_url: Some("ember://127.0.0.1:7077".into()),
        master_web_ui_url: Some("http://127.0.0.1:8080".into()),
        cores: 1,
        memory_mb: 4096,
        cores_used: 1,
        memory_used_mb: 2048,
        executors: vec![ExecutorRunnerSummary {
            app_id: "app-20261121122147-0000".into(),
            exec_id: ExecutorId(1),
            cores: 1,
            memory_mb: 2048,
            state: ExecutorState::Running,
            app_desc: ApplicationDescription {
                name: "spark-bench".into(),
                max_cores: Some(2),
                memory_per_executor_mb: 2048,
                cores_per_executor: None,
                initial_executor_limit: None,
                command: Command {
                    binary: AppBinary {
                        name: "spark-bench".into(),
                        digest: "00".into(),
                        size: 1,
                        location: BinaryLocation::LocalPath("/bin/spark-bench".into()),
                    },
                    arguments: vec!["--executor".into()],
                    environment: vec![],
                },
                app_ui_url: None,
                user: "root".into(),
            },
            exit_status: None,
            work_dir: "/work/app-20261121122147-0000/1".into(),
        }],
        finished_executors: vec![],
        drivers: vec![],
        finished_drivers: vec![],
        work_dir: "/work".into(),
    }
}

/// `ours` without what Ember adds to Spark's document, and with the executor's command (the
/// program the worker starts, a JVM command line in Spark's) taken from `spark`.
fn spark_fields_of(mut ours: Value, spark: &Value) -> Value {
    let object = ours.as_object_mut().unwrap();
    assert_eq!(object.remove("drivers"), Some(Value::Array(vec![])));
    assert_eq!(object.remove("finisheddrivers"), Some(Value::Array(vec![])));
    let executor = &mut ours["executors"][0];
    assert_eq!(
        executor.as_object_mut().unwrap().remove("state"),
        Some("RUNNING".into())
    );
    assert_eq!(executor["appdesc"]["command"], "spark-bench --executor");
    executor["appdesc"]["command"] = spark["executors"][0]["appdesc"]["command"].clone();
    ours
}

#[test]
fn worker_json_matches_sparks_document() {
    let text = serde_json::to_string(&worker_state(&sample_state())).unwrap();
    let spark: Value = serde_json::from_str(SPARK_SAMPLE).unwrap();
    let ours = spark_fields_of(serde_json::from_str(&text).unwrap(), &spark);
    assert_eq!(ours, spark);
    // Fields come in Spark's order; Ember's additions after Spark's, in the objects they extend.
    let mut expected = json_keys_in_order(SPARK_SAMPLE);
    let appdesc_end = expected.iter().position(|k| k == "command").unwrap() + 1;
    expected.insert(appdesc_end, "state".into());
    expected.extend(["drivers".into(), "finisheddrivers".into()]);
    assert_eq!(json_keys_in_order(&text), expected, "{text}");
}

#[test]
fn drivers_and_an_unregistered_worker() {
    let mut state = sample_state();
    state.master_url = None;
    state.master_web_ui_url = None;
    state.finished_drivers.push(DriverRunnerSummary {
        driver_id: "driver-20261121122343-0000".into(),
        desc: crate::description::DriverDescription {
            mem_mb: 1024,
            cores: 1,
            supervise: true,
            command: state.executors[0].app_desc.command.clone(),
        },
        state: crate::state::DriverState::Failed,
        exception: Some("exited with code 1".into()),
        work_dir: "/work/driver-20261121122343-0000".into(),
    });
    let text = serde_json::to_string(&worker_state(&state)).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (&json["masterurl"], &json["masterwebuiurl"]),
        (&"".into(), &"".into())
    );
    assert_eq!(
        json["finisheddrivers"][0],
        serde_json::json!({
            "id": "driver-20261121122343-0000",
            "state": "FAILED",
            "cores": 1,
            "memory": 1024,
            "resources": {},
            "supervise": true,
            "command": "spark-bench --executor",
            "exception": "exited with code 1",
        })
    );
    let keys = json_keys_in_order(&text);
    let driver_keys = &keys[keys.len() - 8..];
    assert_eq!(
        driver_keys,
        [
            "id",
            "state",
            "cores",
            "memory",
            "resources",
            "supervise",
            "command",
            "exception"
        ]
    );
}
