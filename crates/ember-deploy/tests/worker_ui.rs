//! The worker's web UI over HTTP: JSON with Spark's field names, the status page, log pages.

mod worker_support;

use std::os::unix::fs::PermissionsExt;

use ember_deploy::file_server::FileServer;
use ember_deploy::ids::ExecutorId;
use ember_deploy::messages::MasterToWorker;
use ember_deploy::state::ExecutorState;
use ember_deploy::worker;
use ember_rpc::{RpcEnv, RpcEnvConfig};
use serde_json::{Value, json};
use worker_support::*;

const SCRIPT: &str =
    "#!/bin/sh\necho 'hello <b>bold & co</b>'\necho \"pid $$\"\necho 'oops' >&2\nexec sleep 60\n";

#[tokio::test]
async fn json_pages_and_logs_over_http() {
    let dir = temp_dir("ui");
    let master = FakeMaster::start(Answer::Accept).await;
    let driver_env = RpcEnv::create(RpcEnvConfig::new("driver", "127.0.0.1", 0))
        .await
        .unwrap();
    let server = FileServer::start(&driver_env).await.unwrap();
    let script = dir.join("app.sh");
    std::fs::write(&script, SCRIPT).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = server.add_file(&script).await.unwrap();
    let (config, conf) = worker_config(&dir.join("work"), vec![master.address()], &[]);
    let worker = worker::start(config, conf).await.unwrap();
    let pids = PidGuard::default();
    eventually("registration", || master.heartbeats() >= 1).await;
    master.send(MasterToWorker::LaunchExecutor {
        master_url: master.url(),
        app_id: "app-u".into(),
        exec_id: ExecutorId(0),
        app_desc: app_desc(binary.clone(), &["--x", "{{EXECUTOR_ID}}"], &[]),
        cores: 1,
        memory_mb: 256,
    });
    let stdout = dir.join("work").join("app-u").join("0").join("stdout");
    eventually("the executor's output", || {
        std::fs::read_to_string(&stdout)
            .unwrap_or_default()
            .contains("pid ")
    })
    .await;
    let pid: i32 = std::fs::read_to_string(&stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("pid "))
        .unwrap()
        .parse()
        .unwrap();
    pids.add(pid);
    eventually("RUNNING", || {
        master
            .executor_states()
            .iter()
            .any(|s| s.0 == ExecutorState::Running)
    })
    .await;
    let ui = worker.web_ui_url().to_owned();

    // JSON, with and without the trailing slash.
    for path in ["/json", "/json/"] {
        let (status, body) = http_get(&ui, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["id"], json!(worker.worker_id().as_str()));
        assert_eq!(v["masterurl"], json!(master.url()));
        assert_eq!(v["masterwebuiurl"], json!("http://fake-master:8080"));
        assert_eq!(
            (v["cores"].clone(), v["coresused"].clone()),
            (json!(4), json!(1))
        );
        assert_eq!(
            (v["memory"].clone(), v["memoryused"].clone()),
            (json!(4096), json!(256))
        );
        assert_eq!(
            (v["resources"].clone(), v["resourcesused"].clone()),
            (json!({}), json!({}))
        );
        assert_eq!(v["finishedexecutors"], json!([]));
        let e = &v["executors"][0];
        assert_eq!(e["id"], json!(0));
        assert_eq!(e["memory"], json!(256));
        assert_eq!(e["resources"], json!({}));
        assert_eq!(e["appid"], json!("app-u"));
        assert_eq!(
            e["appdesc"],
            json!({
                "name": "test-app",
                "cores": 4,
                "memoryperexecutor": 256,
                "resourcesperexecutor": [],
                "memoryperslave": 256,
                "resourcesperslave": [],
                "user": "tester",
                "command": "app.sh --x {{EXECUTOR_ID}}",
            })
        );
        assert_eq!(v["drivers"], json!([]));
    }

    // The status page links to the logs.
    let (status, page) = http_get(&ui, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains(worker.worker_id().as_str()), "{page}");
    assert!(page.contains(&master.url()), "{page}");
    assert!(
        page.contains("logPage/?appId=app-u&amp;executorId=0&amp;logType=stdout"),
        "{page}"
    );
    assert!(
        page.contains("logPage/?appId=app-u&amp;executorId=0&amp;logType=stderr"),
        "{page}"
    );

    // The log page escapes the text; the raw log does not.
    let (status, page) = http_get(&ui, "/logPage/?appId=app-u&executorId=0&logType=stdout").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("hello &lt;b&gt;bold &amp; co&lt;/b&gt;"),
        "{page}"
    );
    assert!(!page.contains("<b>bold"), "{page}");
    let (status, raw) = http_get(&ui, "/log/?appId=app-u&executorId=0&logType=stdout").await;
    assert_eq!(status, 200);
    let log = std::fs::read_to_string(&stdout).unwrap();
    assert_eq!(
        raw,
        format!(
            "==== Bytes 0-{n} of {n} of {} ====\n{log}",
            stdout.display(),
            n = log.len()
        )
    );
    let (_, raw) = http_get(
        &ui,
        "/log?appId=app-u&executorId=0&logType=stdout&offset=0&byteLength=5",
    )
    .await;
    assert!(raw.ends_with("====\nhello"), "{raw}");
    let (_, raw) = http_get(&ui, "/log/?appId=app-u&executorId=0&logType=stderr").await;
    assert!(
        raw.contains("Ember Executor Command: ") && raw.ends_with("oops\n"),
        "{raw}"
    );

    // Nothing outside the known runner directories, and only stdout or stderr.
    for (path, expected) in [
        (
            "/logPage/?appId=../../../../etc&executorId=0&logType=stdout",
            404,
        ),
        (
            "/logPage/?appId=app-u&executorId=0&logType=../../../../etc/passwd",
            400,
        ),
        (
            "/logPage/?appId=app-u&executorId=0&logType=stdout%2F..%2F..%2Fapp.sh",
            400,
        ),
        ("/log/?driverId=../../../etc&logType=stdout", 404),
        ("/logPage/?appId=app-u&executorId=..&logType=stdout", 400),
        ("/logPage/?appId=app-u&executorId=7&logType=stdout", 404),
        ("/logPage/?logType=stdout", 400),
    ] {
        let (status, body) = http_get(&ui, path).await;
        assert_eq!(status, expected, "{path}: {body}");
        assert!(!body.contains("root:"), "{path}: {body}");
    }

    // A finished executor's logs stay available.
    master.send(MasterToWorker::KillExecutor {
        master_url: master.url(),
        app_id: "app-u".into(),
        exec_id: ExecutorId(0),
    });
    eventually_state(&worker, "the executor killed", |s| {
        s.finished_executors.len() == 1
    })
    .await;
    let (status, page) = http_get(&ui, "/logPage/?appId=app-u&executorId=0&logType=stdout").await;
    assert_eq!(status, 200);
    assert!(page.contains("hello &lt;b&gt;"), "{page}");
    let (_, body) = http_get(&ui, "/json").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["executors"], json!([]));
    assert_eq!(v["finishedexecutors"][0]["appid"], json!("app-u"));

    worker.shutdown().await.unwrap();
    assert!(!pid_alive(pid));
    master.shutdown().await;
    driver_env.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
