//! A real master on 127.0.0.1:0, talked to by test RpcEnvs playing workers and applications.

mod master_support;

use master_support::*;

#[tokio::test]
async fn workers_register_and_time_out() {
    let m = start_master(&[("ember.worker.timeout", "1s")]).await;
    wait_ready(&m).await;
    assert!(m.master_url().starts_with("ember://127.0.0.1:"));
    let w1 = Worker::start("worker-1", m.rpc_address(), true).await;
    w1.register(4, 2048);
    eventually("RegisteredWorker", || async { w1.registered() == 1 }).await;
    let web_ui = w1.inbox.find(|m| match m {
        MasterToWorker::RegisteredWorker {
            master_web_ui_url,
            duplicate,
            ..
        } => Some((master_web_ui_url.clone(), *duplicate)),
        _ => None,
    });
    assert_eq!(web_ui, Some((m.web_ui_url().to_owned(), false)));

    // The same id from another RpcEnv: refused.
    let impostor = Worker::start("worker-1", m.rpc_address(), true).await;
    impostor.register(4, 2048);
    eventually("RegisterWorkerFailed", || async {
        impostor.inbox.count(|m| {
            matches!(m, MasterToWorker::RegisterWorkerFailed { message }
                if message == "Duplicate worker ID")
        }) == 1
    })
    .await;
    // The real worker registering again is a duplicate, accepted.
    w1.register(4, 2048);
    eventually("duplicate RegisteredWorker", || async {
        w1.inbox.count(|m| {
            matches!(
                m,
                MasterToWorker::RegisteredWorker {
                    duplicate: true,
                    ..
                }
            )
        }) == 1
    })
    .await;

    let s = state(&m).await;
    assert_eq!(s.workers.len(), 1);
    assert_eq!(s.workers[0].state, WorkerState::Alive);
    let json = http_json(m.web_ui_url(), "/json").await;
    assert_eq!(json["aliveworkers"], 1);
    assert_eq!(json["workers"][0]["id"], "worker-1");
    assert_eq!(json["url"], m.master_url());

    // No heartbeats: DEAD after the 1 s timeout, in the state and over HTTP.
    eventually("worker DEAD", || async {
        state(&m).await.workers[0].state == WorkerState::Dead
    })
    .await;
    let json = http_json(m.web_ui_url(), "/json/").await;
    assert_eq!(json["workers"][0]["state"], "DEAD");
    assert_eq!(json["aliveworkers"], 0);
    assert_eq!(
        http_json(m.web_ui_url(), "/json/aliveworkers").await,
        serde_json::json!({"aliveworkers": 0})
    );
    let (status, html) = http_get(m.web_ui_url(), "/").await;
    assert_eq!(status, 200);
    assert!(html.contains("worker-1") && html.contains("DEAD"), "{html}");

    // A heartbeat from the DEAD worker asks it to register again.
    w1.master
        .send(WorkerToMaster::Heartbeat {
            worker_id: w1.id.clone(),
            worker: w1.me.clone(),
        })
        .unwrap();
    eventually("ReconnectWorker", || async {
        w1.inbox
            .count(|m| matches!(m, MasterToWorker::ReconnectWorker { .. }))
            == 1
    })
    .await;

    impostor.env.shutdown().await;
    w1.env.shutdown().await;
    m.shutdown().await;
}

#[tokio::test]
async fn applications_get_executors_and_end_when_their_driver_leaves() {
    let m = start_master(&[]).await;
    wait_ready(&m).await;
    let w = Worker::start("worker-a", m.rpc_address(), true).await;
    w.register(4, 4096);
    eventually("RegisteredWorker", || async { w.registered() == 1 }).await;
    let app = App::start(m.rpc_address()).await;
    app.register(app_desc(1024, Some(3)));
    eventually("LaunchExecutor", || async {
        w.inbox.count(|m| {
            matches!(
                m,
                MasterToWorker::LaunchExecutor {
                    cores: 3,
                    memory_mb: 1024,
                    ..
                }
            )
        }) == 1
    })
    .await;
    eventually("ExecutorAdded", || async {
        app.inbox
            .count(|m| matches!(m, MasterToApp::ExecutorAdded { cores: 3, .. }))
            == 1
    })
    .await;
    let app_id = app.app_id().expect("registered");
    let s = state(&m).await;
    assert_eq!(s.active_apps[0].state, ApplicationState::Running);
    assert_eq!(s.workers[0].cores_used, 3);

    // The worker reports the executor running (an ask answered true); the app hears of it.
    let ok: bool = w
        .master
        .ask(WorkerToMaster::ExecutorStateChanged {
            app_id: app_id.clone(),
            exec_id: ExecutorId(0),
            state: ExecutorState::Running,
            message: None,
            exit_status: None,
        })
        .await
        .unwrap();
    assert!(ok);
    eventually("ExecutorUpdated", || async {
        app.inbox.count(|m| {
            matches!(
                m,
                MasterToApp::ExecutorUpdated {
                    state: ExecutorState::Running,
                    ..
                }
            )
        }) == 1
    })
    .await;
    // The worker's latest state names an executor the master never launched: it is killed.
    w.master
        .send(WorkerToMaster::WorkerLatestState {
            id: w.id.clone(),
            executors: vec![ExecutorDescription {
                app_id: "app-stale".into(),
                exec_id: ExecutorId(7),
                cores: 1,
                memory_mb: 1,
                state: ExecutorState::Running,
            }],
            driver_ids: vec![],
        })
        .unwrap();
    eventually("KillExecutor of the stale executor", || async {
        w.inbox.count(|m| {
            matches!(m, MasterToWorker::KillExecutor { app_id, .. }
                if app_id.as_str() == "app-stale")
        }) == 1
    })
    .await;
    let (status, html) = http_get(m.web_ui_url(), &format!("/app/?appId={app_id}")).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("daemon-test") && html.contains("RUNNING"),
        "{html}"
    );

    // The driver's RpcEnv goes away: the application finishes, its executor is killed.
    app.env.shutdown().await;
    eventually("the application FINISHED", || async {
        let s = state(&m).await;
        s.active_apps.is_empty()
            && s.completed_apps.first().map(|a| a.state) == Some(ApplicationState::Finished)
    })
    .await;
    eventually("KillExecutor and ApplicationFinished", || async {
        w.inbox
            .count(|m| matches!(m, MasterToWorker::KillExecutor { app_id: a, .. } if a == &app_id))
            == 1
            && w.inbox
                .count(|m| matches!(m, MasterToWorker::ApplicationFinished { .. }))
                == 1
    })
    .await;
    assert_eq!(state(&m).await.workers[0].cores_used, 0);
    let json = http_json(m.web_ui_url(), "/json").await;
    assert_eq!(json["completedapps"][0]["state"], "FINISHED");
    assert_eq!(json["completedapps"][0]["name"], "daemon-test");
    let util = http_json(m.web_ui_url(), "/json/clusterutilization").await;
    assert_eq!(util["cores"], 4);
    assert_eq!(util["coresutilization"], 0);

    w.env.shutdown().await;
    m.shutdown().await;
}

#[tokio::test]
async fn a_restarted_master_recovers_from_its_directory() {
    let dir = TempDir::new("recovery");
    let dir_text = dir.0.display().to_string();
    let pairs = [
        ("ember.deploy.recoveryMode", "FILESYSTEM"),
        ("ember.deploy.recoveryDirectory", dir_text.as_str()),
        ("ember.worker.timeout", "30s"),
    ];
    let first = start_master(&pairs).await;
    wait_ready(&first).await;
    let w = Worker::start("worker-r", first.rpc_address(), false).await;
    w.register(2, 2048);
    eventually("RegisteredWorker", || async { w.registered() == 1 }).await;
    let app = App::start(first.rpc_address()).await;
    app.register(app_desc(512, None));
    eventually("RegisteredApplication", || async { app.app_id().is_some() }).await;
    let app_id = app.app_id().unwrap();
    first.shutdown().await;

    let mut files: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, [format!("app_{app_id}"), "worker_worker-r".into()]);

    // A new master (another port) on the same directory: RECOVERING, MasterChanged to both.
    let second = start_master(&pairs).await;
    eventually("RECOVERING", || async {
        state(&second).await.status == MasterState::Recovering
    })
    .await;
    let s = state(&second).await;
    assert_eq!(s.workers[0].state, WorkerState::Unknown);
    assert_eq!(s.active_apps[0].state, ApplicationState::Unknown);
    assert_eq!(
        http_json(second.web_ui_url(), "/json/status").await["status"],
        "RECOVERING"
    );
    eventually("MasterChanged at the worker and the app", || async {
        w.inbox
            .count(|m| matches!(m, MasterToWorker::MasterChanged { .. }))
            == 1
            && app
                .inbox
                .count(|m| matches!(m, MasterToApp::MasterChanged { .. }))
                == 1
    })
    .await;
    // The worker answers with what it runs (the application's executor).
    let new_master = w
        .inbox
        .find(|m| match m {
            MasterToWorker::MasterChanged { master, .. } => Some(master.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(new_master.address(), second.rpc_address());
    new_master
        .send(WorkerToMaster::WorkerSchedulerStateResponse {
            id: w.id.clone(),
            executors: vec![ExecutorDescription {
                app_id: app_id.clone(),
                exec_id: ExecutorId(0),
                cores: 2,
                memory_mb: 512,
                state: ExecutorState::Running,
            }],
            driver_ids: vec![],
        })
        .unwrap();
    eventually("worker ALIVE", || async {
        state(&second).await.workers[0].state == WorkerState::Alive
    })
    .await;
    assert_eq!(
        state(&second).await.status,
        MasterState::Recovering,
        "the application has not answered yet"
    );
    new_master
        .send(AppToMaster::MasterChangeAcknowledged {
            app_id: app_id.clone(),
        })
        .unwrap();
    eventually("ALIVE", || async {
        state(&second).await.status == MasterState::Alive
    })
    .await;
    let s = state(&second).await;
    assert_eq!(s.active_apps[0].state, ApplicationState::Running);
    assert_eq!(s.active_apps[0].cores_granted, 2);
    assert_eq!(s.workers[0].cores_used, 2);

    w.env.shutdown().await;
    app.env.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn bad_input_does_not_disturb_the_master() {
    let m = start_master(&[]).await;
    wait_ready(&m).await;
    // Garbage on the RPC port: that connection is dropped, the master keeps serving.
    let mut raw = tokio::net::TcpStream::connect(m.rpc_address().to_string())
        .await
        .unwrap();
    let _ = raw
        .write_all(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 9, 1, 2, 3])
        .await;
    drop(raw);
    let client = RpcEnv::create(RpcEnvConfig::new("client", "127.0.0.1", 0))
        .await
        .unwrap();
    let master: EndpointRef<MasterMessage> = client
        .setup_endpoint_ref(m.rpc_address(), MASTER_ENDPOINT)
        .await
        .unwrap();
    // Asking a one-way message is refused with an error, not processed.
    let worker: EndpointRef<WorkerMessage> =
        client.endpoint_ref(client.address().clone(), WORKER_ENDPOINT);
    let err = master
        .ask::<bool>(WorkerToMaster::Heartbeat {
            worker_id: "w".into(),
            worker,
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("one-way"), "{err}");
    // Messages about things the master never heard of are ignored.
    master
        .send(AppToMaster::UnregisterApplication {
            app_id: "app-nope".into(),
        })
        .unwrap();
    let known: bool = master
        .ask(AppToMaster::KillExecutors {
            app_id: "app-nope".into(),
            executor_ids: vec![ExecutorId(1)],
        })
        .await
        .unwrap();
    assert!(!known);
    // A message of another type does not decode and is refused.
    let wrong: EndpointRef<String> = client.endpoint_ref(m.rpc_address().clone(), MASTER_ENDPOINT);
    assert!(wrong.ask::<bool>("hello".to_owned()).await.is_err());
    assert!(
        master
            .ask::<bool>(ClientToMaster::RequestReadyz)
            .await
            .unwrap()
    );
    assert_eq!(
        http_json(m.web_ui_url(), "/json/nonsense").await,
        serde_json::json!({"nonsense": ""})
    );
    assert_eq!(
        http_get(m.web_ui_url(), "/app/?appId=app-nope").await.0,
        404
    );
    client.shutdown().await;
    m.shutdown().await;
}

#[tokio::test]
async fn the_ui_escapes_text_and_kills_applications() {
    let m = start_master(&[]).await;
    wait_ready(&m).await;
    let app = App::start(m.rpc_address()).await;
    let mut desc = app_desc(512, None);
    desc.name = "<script>alert(1)</script>".into();
    app.register(desc);
    eventually("RegisteredApplication", || async { app.app_id().is_some() }).await;
    let app_id = app.app_id().unwrap();
    let (_, html) = http_get(m.web_ui_url(), "/").await;
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    let (status, location) = http_post(
        m.web_ui_url(),
        &format!("/app/kill?id={app_id}&terminate=true"),
    )
    .await;
    assert_eq!((status, location.as_deref()), (303, Some("/")));
    eventually("ApplicationRemoved(KILLED)", || async {
        app.inbox.count(
            |m| matches!(m, MasterToApp::ApplicationRemoved { message } if message == "KILLED"),
        ) == 1
    })
    .await;
    let json = http_json(m.web_ui_url(), "/json").await;
    assert_eq!(json["completedapps"][0]["state"], "KILLED");
    app.env.shutdown().await;
    m.shutdown().await;
}

#[tokio::test]
async fn revoked_leadership_stops_the_master() {
    let m = start_master(&[]).await;
    wait_ready(&m).await;
    m.master_ref()
        .send(MasterInternal::RevokedLeadership)
        .unwrap();
    let why = tokio::time::timeout(Duration::from_secs(10), m.stopped())
        .await
        .expect("the master stops by itself");
    assert!(matches!(why, DeployError::LeadershipRevoked), "{why}");
    m.shutdown().await;
}

#[tokio::test]
async fn run_serves_until_cancelled() {
    let token = tokio_util::sync::CancellationToken::new();
    let conf = conf(&[]);
    let config = MasterConfig::from_conf(&conf).unwrap();
    let running = tokio::spawn(master::run(config, conf, token.clone()));
    token.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("run returns")
        .unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
}
