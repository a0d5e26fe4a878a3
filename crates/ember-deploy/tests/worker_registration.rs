//! A worker registering with fake masters: in parallel, with retries, heartbeats, reconnection.

mod worker_support;

use std::time::{Duration, Instant};

use ember_deploy::DeployError;
use ember_deploy::messages::MasterToWorker;
use ember_deploy::worker;
use ember_rpc::RpcAddress;
use worker_support::*;

#[tokio::test]
async fn registers_with_every_master_in_parallel_and_heartbeats_the_active_one() {
    let standby = FakeMaster::start(Answer::Standby).await;
    let active = FakeMaster::start(Answer::Accept).await;
    let dir = temp_dir("parallel");
    let (config, conf) = worker_config(&dir, vec![standby.address(), active.address()], &[]);
    let started = Instant::now();
    let worker = worker::start(config, conf).await.unwrap();
    let state = eventually_state(&worker, "registration", |s| s.master_url.is_some()).await;
    let elapsed = started.elapsed();
    eprintln!("worker start -> registered: {elapsed:?}");
    assert_eq!(state.master_url, Some(active.url()));
    assert_eq!(
        state.master_web_ui_url.as_deref(),
        Some("http://fake-master:8080")
    );

    for master in [&standby, &active] {
        let seen = master.seen();
        let Some(Seen::Register {
            id,
            host,
            port,
            cores,
            memory_mb,
            web_ui_url,
            master_address,
            ..
        }) = seen.first().cloned()
        else {
            panic!("no registration at {}: {seen:?}", master.url());
        };
        assert_eq!(&id, worker.worker_id());
        assert_eq!(
            (host.as_str(), port),
            ("127.0.0.1", worker.rpc_address().port)
        );
        assert_eq!((cores, memory_mb), (4, 4096));
        assert_eq!(web_ui_url, worker.web_ui_url());
        assert_eq!(master_address, master.address());
    }
    assert!(worker.worker_id().as_str().starts_with("worker-"));
    assert!(
        worker
            .worker_id()
            .as_str()
            .ends_with(&format!("-127.0.0.1-{}", worker.rpc_address().port))
    );

    // The active master gets WorkerLatestState, then a heartbeat every 100 ms (timeout 400 ms).
    eventually("3 heartbeats", || active.heartbeats() >= 3).await;
    assert!(
        active
            .seen()
            .iter()
            .any(|s| matches!(s, Seen::LatestState(id) if id == worker.worker_id()))
    );
    assert_eq!(standby.heartbeats(), 0);
    // Registered: no more retries to the standby.
    let registrations = standby.registrations();
    let beats = active.heartbeats();
    eventually("2 more heartbeats", || active.heartbeats() >= beats + 2).await;
    assert_eq!(standby.registrations(), registrations);

    worker.shutdown().await.unwrap();
    standby.shutdown().await;
    active.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn gives_up_after_the_bounded_retries_naming_the_masters() {
    let silent = FakeMaster::start(Answer::Silent).await;
    // An address where nothing listens.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        RpcAddress::from(listener.local_addr().unwrap())
    };
    let dir = temp_dir("give-up");
    let (config, conf) = worker_config(
        &dir,
        vec![silent.address(), dead.clone()],
        &[
            ("ember.worker.initialRegistrationRetries", "2"),
            ("ember.worker.maxRegistrationRetries", "4"),
            ("ember.worker.registration.initialInterval", "20ms"),
            ("ember.worker.registration.prolongedInterval", "40ms"),
        ],
    );
    let worker = worker::start(config, conf).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), worker.join())
        .await
        .expect("the worker gives up")
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, DeployError::RegistrationGaveUp { attempts: 5, .. }),
        "{err:?}"
    );
    assert!(
        text.contains(&silent.url()) && text.contains(&dead.to_ember_url()),
        "{text}"
    );
    // The first attempt and four retries, all to every master (none ever answered).
    assert_eq!(silent.registrations(), 5);
    silent.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_refused_registration_stops_the_worker() {
    let master = FakeMaster::start(Answer::Refuse("Duplicate worker ID".into())).await;
    let dir = temp_dir("refused");
    let (config, conf) = worker_config(&dir, vec![master.address()], &[]);
    let worker = worker::start(config, conf).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), worker.join())
        .await
        .expect("the worker stops")
        .unwrap_err();
    assert!(
        matches!(err, DeployError::RegistrationRefused { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("Duplicate worker ID"), "{err}");
    master.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn reconnect_worker_makes_it_register_again() {
    let master = FakeMaster::start(Answer::Accept).await;
    let dir = temp_dir("reconnect");
    let (config, conf) = worker_config(&dir, vec![master.address()], &[]);
    let worker = worker::start(config, conf).await.unwrap();
    eventually("registration", || {
        master.registrations() == 1 && master.heartbeats() >= 1
    })
    .await;
    master.send(MasterToWorker::ReconnectWorker {
        master_url: master.url(),
    });
    eventually("a second registration", || master.registrations() == 2).await;
    let latest = master
        .seen()
        .iter()
        .filter(|s| matches!(s, Seen::LatestState(_)))
        .count();
    assert_eq!(latest, 2, "WorkerLatestState after every registration");
    worker.shutdown().await.unwrap();
    master.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn losing_the_master_connection_re_registers_with_the_restarted_master() {
    let master = FakeMaster::start(Answer::Accept).await;
    let port = master.address().port;
    let dir = temp_dir("restart");
    let (config, conf) = worker_config(&dir, vec![master.address()], &[]);
    let worker = worker::start(config, conf).await.unwrap();
    eventually("registration", || master.heartbeats() >= 1).await;
    master.shutdown().await;

    let restarted = FakeMaster::start_on(port, Answer::Accept).await;
    eventually("registration with the restarted master", || {
        restarted.registrations() >= 1
    })
    .await;
    eventually("heartbeats to the restarted master", || {
        restarted.heartbeats() >= 2
    })
    .await;
    let state = worker.state().await.unwrap();
    assert_eq!(state.master_url, Some(restarted.url()));
    worker.shutdown().await.unwrap();
    restarted.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn master_changed_is_answered_with_the_scheduler_state() {
    let old = FakeMaster::start(Answer::Accept).await;
    let new = FakeMaster::start(Answer::Silent).await;
    let dir = temp_dir("master-changed");
    let (config, conf) = worker_config(&dir, vec![old.address(), new.address()], &[]);
    let worker = worker::start(config, conf).await.unwrap();
    eventually("registration", || {
        old.heartbeats() >= 1 && new.registrations() >= 1
    })
    .await;
    new.send(MasterToWorker::MasterChanged {
        master: new.master_ref.clone(),
        master_web_ui_url: "http://new-master:8080".into(),
    });
    eventually("WorkerSchedulerStateResponse", || {
        new.seen()
            .iter()
            .any(|s| matches!(s, Seen::SchedulerState(id) if id == worker.worker_id()))
    })
    .await;
    eventually("heartbeats to the new master", || new.heartbeats() >= 2).await;
    let state = worker.state().await.unwrap();
    assert_eq!(state.master_url, Some(new.url()));
    assert_eq!(
        state.master_web_ui_url.as_deref(),
        Some("http://new-master:8080")
    );
    worker.shutdown().await.unwrap();
    old.shutdown().await;
    new.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_work_dir_that_cannot_be_created_fails_the_start_naming_it() {
    let master = FakeMaster::start(Answer::Accept).await;
    let dir = temp_dir("bad-dir");
    let file = dir.join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let work = file.join("work");
    let (config, conf) = worker_config(&work, vec![master.address()], &[]);
    let err = worker::start(config, conf).await.unwrap_err();
    assert!(matches!(err, DeployError::Directory { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&work.display().to_string()),
        "{err}"
    );
    assert_eq!(master.registrations(), 0);
    master.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
