//! A master whose recovery store fails: registrations and submissions are acknowledged only once
//! stored, and one that could not be stored leaves no trace (no listing, no executors or drivers
//! placed, no resources held) until the peer tries again with the store working.

mod master_support;

use master_support::*;

use ember_deploy::description::DriverDescription;
use ember_deploy::master::persistence::MemoryPersistenceEngine;
use ember_deploy::messages::SubmitDriverResponse;

async fn start_with_store(store: &MemoryPersistenceEngine) -> MasterHandle {
    let conf = conf(&[]);
    let config = MasterConfig::from_conf(&conf).unwrap();
    let m = master::start_with_persistence(config, conf, Arc::new(store.clone()))
        .await
        .unwrap();
    wait_ready(&m).await;
    m
}

/// The master's state, asked through `via`: the answer comes after every message sent earlier
/// through the same ref (one connection, handled in order).
async fn state_via(via: &EndpointRef<MasterMessage>) -> MasterStateResponse {
    via.ask(ClientToMaster::RequestMasterState)
        .await
        .expect("the master answers")
}

fn launches(w: &Worker) -> usize {
    w.inbox
        .count(|m| matches!(m, MasterToWorker::LaunchExecutor { .. }))
}

#[tokio::test]
async fn a_worker_is_registered_and_given_executors_only_once_stored() {
    let store = MemoryPersistenceEngine::new();
    let m = start_with_store(&store).await;
    // An application waits for cores.
    let app = App::start(m.rpc_address()).await;
    app.register(app_desc(512, None));
    eventually("RegisteredApplication", || async { app.app_id().is_some() }).await;
    let app_id = app.app_id().unwrap();

    store.refuse_writes(true);
    let w = Worker::start("worker-p", m.rpc_address(), true).await;
    w.register(2, 1024);
    let s = state_via(&w.master).await;
    assert!(s.workers.is_empty(), "listed without a record: {s:?}");
    assert_eq!(s.active_apps[0].cores_granted, 0);
    assert_eq!(w.registered(), 0, "acknowledged without a record");
    assert_eq!(launches(&w), 0);
    assert_eq!(
        app.inbox
            .count(|m| matches!(m, MasterToApp::ExecutorAdded { .. })),
        0
    );
    assert_eq!(store.names(), [format!("app_{app_id}")]);

    // The worker's retry, with the store working again: a fresh registration, stored, answered,
    // and the waiting application's executor placed on it.
    store.refuse_writes(false);
    w.register(2, 1024);
    eventually("RegisteredWorker", || async { w.registered() == 1 }).await;
    assert_eq!(
        w.inbox.count(|m| matches!(
            m,
            MasterToWorker::RegisteredWorker {
                duplicate: false,
                ..
            }
        )),
        1
    );
    eventually("LaunchExecutor", || async { launches(&w) == 1 }).await;
    eventually("ExecutorAdded", || async {
        app.inbox
            .count(|m| matches!(m, MasterToApp::ExecutorAdded { cores: 2, .. }))
            == 1
    })
    .await;
    assert_eq!(
        store.names(),
        [format!("app_{app_id}"), "worker_worker-p".to_owned()]
    );
    let s = state(&m).await;
    assert_eq!(s.workers[0].cores_used, 2);
    assert_eq!(s.active_apps[0].state, ApplicationState::Running);

    w.env.shutdown().await;
    app.env.shutdown().await;
    m.shutdown().await;
}

#[tokio::test]
async fn an_application_is_acknowledged_only_once_stored() {
    let store = MemoryPersistenceEngine::new();
    let m = start_with_store(&store).await;
    let w = Worker::start("worker-a", m.rpc_address(), true).await;
    w.register(2, 2048);
    eventually("RegisteredWorker", || async { w.registered() == 1 }).await;

    store.refuse_writes(true);
    let app = App::start(m.rpc_address()).await;
    app.register(app_desc(512, None));
    let s = state_via(&app.master).await;
    assert!(s.active_apps.is_empty(), "listed without a record: {s:?}");
    assert_eq!(s.workers[0].cores_used, 0, "cores held for it");
    assert!(app.app_id().is_none(), "acknowledged without a record");
    assert_eq!(launches(&w), 0);

    // Its driver registers again: a new registration, stored before it is acknowledged.
    store.refuse_writes(false);
    app.register(app_desc(512, None));
    eventually("RegisteredApplication", || async { app.app_id().is_some() }).await;
    let app_id = app.app_id().unwrap();
    assert_eq!(
        store.names(),
        [format!("app_{app_id}"), "worker_worker-a".to_owned()]
    );
    eventually("LaunchExecutor", || async { launches(&w) == 1 }).await;

    w.env.shutdown().await;
    app.env.shutdown().await;
    m.shutdown().await;
}

#[tokio::test]
async fn a_driver_submission_is_accepted_only_once_stored() {
    let store = MemoryPersistenceEngine::new();
    let m = start_with_store(&store).await;
    let w = Worker::start("worker-d", m.rpc_address(), true).await;
    w.register(2, 2048);
    eventually("RegisteredWorker", || async { w.registered() == 1 }).await;
    let desc = DriverDescription {
        mem_mb: 512,
        cores: 1,
        supervise: false,
        command: app_desc(512, None).command,
    };
    let submit = || {
        m.master_ref()
            .ask::<SubmitDriverResponse>(ClientToMaster::RequestSubmitDriver {
                driver_desc: desc.clone(),
            })
    };

    store.refuse_writes(true);
    let refused = submit().await;
    assert!(refused.is_err(), "{refused:?}");
    let s = state(&m).await;
    assert!(s.active_drivers.is_empty(), "{s:?}");
    assert_eq!(s.workers[0].cores_used, 0);
    assert_eq!(
        w.inbox
            .count(|m| matches!(m, MasterToWorker::LaunchDriver { .. })),
        0
    );

    store.refuse_writes(false);
    let accepted = submit().await.expect("an answer");
    assert!(accepted.success, "{accepted:?}");
    let id = accepted.driver_id.unwrap();
    assert!(store.names().contains(&format!("driver_{id}")));
    eventually("LaunchDriver", || async {
        w.inbox.count(
            |m| matches!(m, MasterToWorker::LaunchDriver { driver_id, .. } if driver_id == &id),
        ) == 1
    })
    .await;

    w.env.shutdown().await;
    m.shutdown().await;
}
