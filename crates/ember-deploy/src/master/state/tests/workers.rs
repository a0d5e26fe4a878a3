//! Worker registration, heartbeats, timeouts, disconnects, reconciliation, decommissioning.

use super::*;
use crate::description::ExecutorDescription;
use crate::state::{ApplicationState, ExecutorState, WorkerState};

fn reply_to(effects: &[Effect]) -> (&RpcAddress, &ToWorker) {
    match effects {
        [Effect::ToWorker { address, msg, .. }] => (address, msg),
        other => panic!("expected one message to a worker, got {other:?}"),
    }
}

#[test]
fn a_standby_master_answers_master_in_standby() {
    // Spark parity: handleRegisterWorker in STANDBY.
    let mut m = standby_with(config());
    let effects = m.register_worker(reg("w1", 1, 4, 1024), T0);
    let (address, msg) = reply_to(&effects);
    assert_eq!(address, &worker_address(1));
    assert_eq!(
        msg,
        &ToWorker::Message(MasterToWorkerPlain::MasterInStandby)
    );
    assert_eq!(m.workers().count(), 0);
}

#[test]
fn registration_persists_before_acknowledging() {
    let mut m = alive();
    let effects = add_worker(&mut m, "w1", 1, 4, 1024, T0);
    assert_eq!(
        effects,
        vec![
            Effect::PersistThenApply(PersistOp::AddWorker(worker(&m, "w1").record())),
            Effect::ToWorker {
                worker_id: "w1".into(),
                address: worker_address(1),
                msg: ToWorker::Registered {
                    duplicate: false,
                    master_address: RpcAddress::new("127.0.0.1", 7077),
                },
            },
        ]
    );
    let w = worker(&m, "w1");
    assert_eq!(
        (w.state, w.cores, w.memory_mb),
        (WorkerState::Alive, 4, 1024)
    );
    assert_eq!(w.last_heartbeat_ms, T0);
    assert_eq!(m.snapshot().workers.len(), 1);
}

#[test]
fn the_same_worker_registering_again_is_a_duplicate() {
    // Spark parity: SPARK-23191, a repeated registration is answered with duplicate = true.
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 1024, T0);
    // Its record was stored before its first RegisteredWorker: answered at once.
    let effects = m.register_worker(reg("w1", 1, 4, 1024), T0 + 5_000);
    assert!(
        matches!(
            effects.as_slice(),
            [Effect::ToWorker {
                msg: ToWorker::Registered {
                    duplicate: true,
                    ..
                },
                ..
            }]
        ),
        "{effects:?}"
    );
    assert_eq!(m.workers().count(), 1);
    assert_eq!(worker(&m, "w1").last_heartbeat_ms, T0 + 5_000);
}

#[test]
fn a_duplicate_id_from_another_address_is_refused() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 1024, T0);
    let effects = m.register_worker(reg("w1", 2, 4, 1024), T0);
    let (address, msg) = reply_to(&effects);
    assert_eq!(
        address,
        &worker_address(2),
        "the answer goes to the claimant"
    );
    assert_eq!(
        msg,
        &ToWorker::Message(MasterToWorkerPlain::RegisterWorkerFailed {
            message: "Duplicate worker ID".into()
        })
    );
    assert_eq!(worker(&m, "w1").address, worker_address(1));
    assert_eq!(m.workers().count(), 1);
}

#[test]
fn a_live_worker_at_the_same_address_is_not_replaced() {
    // Spark parity: registerWorker returns false for an address a live worker holds.
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 1024, T0);
    let effects = m.register_worker(reg("w2", 1, 4, 1024), T0);
    let (_, msg) = reply_to(&effects);
    assert_eq!(
        msg,
        &ToWorker::Message(MasterToWorkerPlain::RegisterWorkerFailed {
            message: "Attempted to re-register worker at same address: 10.0.0.1:7001".into()
        })
    );
    assert!(m.worker(&"w2".into()).is_none());
}

#[test]
fn dead_workers_at_the_same_host_and_port_are_dropped() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 1024, T0);
    m.check_worker_timeouts(T0 + TIMEOUT_MS + 1);
    assert_eq!(m.workers().next().unwrap().state, WorkerState::Dead);
    // A new worker at the same host and port (a restart) replaces the DEAD entry.
    add_worker(&mut m, "w1-restarted", 1, 4, 1024, T0 + TIMEOUT_MS + 2);
    let ids: Vec<String> = m.workers().map(|w| w.id.to_string()).collect();
    assert_eq!(ids, ["w1-restarted"]);
    // A DEAD entry at another port stays.
    add_worker(&mut m, "w2", 2, 4, 1024, T0 + TIMEOUT_MS + 2);
    m.check_worker_timeouts(T0 + 3 * TIMEOUT_MS);
    add_worker(&mut m, "w3", 3, 4, 1024, T0 + 3 * TIMEOUT_MS);
    assert_eq!(m.workers().count(), 3);
}

#[test]
fn a_dead_worker_may_register_again_under_its_id() {
    // After a network partition the worker comes back with the same id: a new registration.
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 1024, T0);
    m.check_worker_timeouts(T0 + TIMEOUT_MS + 1);
    assert!(m.worker(&"w1".into()).is_none());
    add_worker(&mut m, "w1", 1, 4, 1024, T0 + TIMEOUT_MS + 2);
    assert_eq!(worker(&m, "w1").state, WorkerState::Alive);
    assert_eq!(m.workers().count(), 1);
}

fn reconnect(id: &str, n: u16) -> Vec<Effect> {
    vec![Effect::ToWorker {
        worker_id: id.into(),
        address: worker_address(n),
        msg: ToWorker::Message(MasterToWorkerPlain::ReconnectWorker {
            master_url: URL.into(),
        }),
    }]
}

#[test]
fn heartbeats_refresh_known_workers_and_reconnect_dead_ones() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 1024, T0);
    assert!(
        m.heartbeat(&"w1".into(), &worker_address(1), T0 + 10_000)
            .is_empty()
    );
    assert_eq!(worker(&m, "w1").last_heartbeat_ms, T0 + 10_000);
    // DEAD but still listed: asked to register again, at the address it heartbeats from
    // (Spark parity: Master's Heartbeat handler).
    m.check_worker_timeouts(T0 + 10_000 + TIMEOUT_MS + 1);
    let effects = m.heartbeat(&"w1".into(), &worker_address(5), T0 + 80_000);
    assert_eq!(effects, reconnect("w1", 5));
    // The answer changes nothing: the worker stays DEAD until it registers.
    assert!(m.worker(&"w1".into()).is_none());
    assert_eq!(m.workers().count(), 1);
}

#[test]
fn a_worker_heartbeating_after_its_dead_entry_was_forgotten_is_asked_to_reconnect() {
    // Spark ignores an id it no longer lists; such a worker (stopped, or partitioned, for longer
    // than the DEAD entry is kept) would then heartbeat forever without being registered.
    let mut config = config();
    config.dead_worker_persistence = 0;
    let mut m = alive_with(config);
    add_worker(&mut m, "w1", 1, 4, 1024, T0);
    m.check_worker_timeouts(T0 + TIMEOUT_MS + 1);
    assert!(m.worker(&"w1".into()).is_none());
    assert_eq!(m.workers().count(), 1, "DEAD, still listed");
    m.check_worker_timeouts(T0 + 2 * TIMEOUT_MS + 2);
    assert_eq!(m.workers().count(), 0, "forgotten");

    let effects = m.heartbeat(&"w1".into(), &worker_address(1), T0 + 3 * TIMEOUT_MS);
    assert_eq!(effects, reconnect("w1", 1));
    assert_eq!(m.workers().count(), 0, "a heartbeat does not register");
    // It registers again and is ALIVE; its heartbeats count again.
    add_worker(&mut m, "w1", 1, 4, 1024, T0 + 3 * TIMEOUT_MS + 5);
    assert_eq!(worker(&m, "w1").state, WorkerState::Alive);
    assert!(
        m.heartbeat(&"w1".into(), &worker_address(1), T0 + 3 * TIMEOUT_MS + 10)
            .is_empty()
    );
    assert_eq!(worker(&m, "w1").last_heartbeat_ms, T0 + 3 * TIMEOUT_MS + 10);
}

#[test]
fn a_heartbeat_from_a_worker_never_registered_is_asked_to_register() {
    let mut m = alive();
    assert_eq!(
        m.heartbeat(&"stranger".into(), &worker_address(9), T0),
        reconnect("stranger", 9)
    );
    assert_eq!(m.workers().count(), 0);
}

#[test]
fn silent_workers_die_after_the_timeout_and_are_culled_later() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 1024, T0);
    add_worker(&mut m, "w2", 2, 4, 1024, T0);
    m.heartbeat(&"w2".into(), &worker_address(2), T0 + 50_000);
    // Exactly at the timeout the worker is still alive (Spark: lastHeartbeat < now - timeout).
    assert!(m.check_worker_timeouts(T0 + TIMEOUT_MS).is_empty());
    let effects = m.check_worker_timeouts(T0 + TIMEOUT_MS + 1);
    assert_eq!(
        persisted(&effects),
        vec![&PersistOp::RemoveWorker("w1".into())]
    );
    let states: Vec<_> = m.workers().map(|w| (w.id.to_string(), w.state)).collect();
    assert_eq!(
        states,
        [
            ("w1".into(), WorkerState::Dead),
            ("w2".into(), WorkerState::Alive)
        ]
    );
    // Still listed (UI) until (15 + 1) timeouts after its last heartbeat.
    m.check_worker_timeouts(T0 + 16 * TIMEOUT_MS);
    assert_eq!(m.workers().count(), 2);
    m.check_worker_timeouts(T0 + 16 * TIMEOUT_MS + 1);
    assert!(!m.workers().any(|w| w.id.as_str() == "w1"));
}

#[test]
fn losing_a_worker_loses_its_executors_and_tells_every_application() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 4096, T0);
    add_worker(&mut m, "w2", 2, 4, 4096, T0);
    let (a1, effects) = add_app(&mut m, app_desc(1024, None, Some(2)), 1, T0);
    assert_eq!(launches(&effects).len(), 2);
    let (a2, _) = add_app(&mut m, app_desc(1024, None, Some(4)), 2, T0);
    m.heartbeat(&"w2".into(), &worker_address(2), T0 + 30_000);
    let on_w1: Vec<ExecutorId> = m
        .app(&a1)
        .unwrap()
        .executors
        .values()
        .filter(|e| e.worker_id.as_str() == "w1")
        .map(|e| e.id)
        .collect();
    assert_eq!(on_w1.len(), 1);
    let effects = m.check_worker_timeouts(T0 + TIMEOUT_MS + 1);
    let msgs = to_app(&effects, &a1);
    assert!(
        msgs.contains(&&MasterToAppPlain::ExecutorUpdated {
            id: on_w1[0],
            state: ExecutorState::Lost,
            message: Some("worker lost: Not receiving heartbeat for 60 seconds".into()),
            exit_status: None,
            worker_host: Some("10.0.0.1".into()),
        }),
        "{msgs:?}"
    );
    for app in [&a1, &a2] {
        assert!(
            to_app(&effects, app).contains(&&MasterToAppPlain::WorkerRemoved {
                id: "w1".into(),
                host: "10.0.0.1".into(),
                message: "Not receiving heartbeat for 60 seconds".into(),
            })
        );
    }
    let app = m.app(&a1).unwrap();
    assert!(app.executors.values().all(|e| e.worker_id.as_str() == "w2"));
    assert_eq!(
        app.removed_executors.last().unwrap().state,
        ExecutorState::Lost
    );
    check_invariants(&m);
}

#[test]
fn a_disconnect_removes_the_worker_or_finishes_the_application() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 4096, T0);
    let (app_id, _) = add_app(&mut m, app_desc(512, None, None), 1, T0);
    let effects = m.disconnected(&worker_address(1), T0 + 1);
    assert_eq!(m.workers().next().unwrap().state, WorkerState::Dead);
    assert!(to_app(&effects, &app_id).iter().any(|msg| matches!(msg,
        MasterToAppPlain::WorkerRemoved { message, .. } if message == "10.0.0.1:7001 got disassociated")));
    let effects = m.disconnected(&driver_address(1), T0 + 2);
    assert!(m.app(&app_id).is_none());
    assert_eq!(
        m.completed_apps().next().unwrap().state,
        ApplicationState::Finished
    );
    // FINISHED: the driver is not told; every worker (DEAD ones too) gets ApplicationFinished.
    assert!(to_app(&effects, &app_id).is_empty());
    assert_eq!(
        to_worker(&effects, "w1"),
        vec![&MasterToWorkerPlain::ApplicationFinished {
            app_id: app_id.clone()
        }]
    );
    // Unknown addresses change nothing.
    assert!(
        m.disconnected(&RpcAddress::new("elsewhere", 1), T0)
            .is_empty()
    );
}

fn exec_desc(app_id: &AppId, id: u32) -> ExecutorDescription {
    ExecutorDescription {
        app_id: app_id.clone(),
        exec_id: ExecutorId(id),
        cores: 1,
        memory_mb: 512,
        state: ExecutorState::Running,
    }
}

#[test]
fn latest_state_kills_what_the_master_does_not_know() {
    // Spark parity: SPARK-13604.
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 4096, T0);
    let (app_id, _) = add_app(&mut m, app_desc(512, Some(1), Some(1)), 1, T0);
    let known = exec_desc(&app_id, 0);
    let stray = exec_desc(&"app-gone".into(), 3);
    let effects = m.worker_latest_state(&"w1".into(), &[known, stray], &["driver-gone".into()], T0);
    assert_eq!(
        to_worker(&effects, "w1"),
        vec![
            &MasterToWorkerPlain::KillExecutor {
                master_url: URL.into(),
                app_id: "app-gone".into(),
                exec_id: ExecutorId(3),
            },
            &MasterToWorkerPlain::KillDriver {
                driver_id: "driver-gone".into()
            },
        ]
    );
    assert!(
        m.worker_latest_state(&"nobody".into(), &[exec_desc(&app_id, 9)], &[], T0)
            .is_empty()
    );
}

#[test]
fn decommissioning_stops_new_executors_and_reports_the_current_ones() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 4096, T0);
    add_worker(&mut m, "Other", 2, 4, 4096, T0);
    let (app_id, _) = add_app(&mut m, app_desc(512, None, Some(1)), 1, T0);
    let on = m
        .app(&app_id)
        .unwrap()
        .executors
        .values()
        .next()
        .unwrap()
        .clone();
    let (count, effects) = m.decommission_workers_on_hosts(&["10.0.0.1".to_uppercase()], T0);
    assert_eq!(count, 2);
    assert_eq!(persisted(&effects).len(), 2);
    assert!(to_worker(&effects, "w1").contains(&&MasterToWorkerPlain::DecommissionWorker));
    assert!(
        to_app(&effects, &app_id).contains(&&MasterToAppPlain::ExecutorUpdated {
            id: on.id,
            state: ExecutorState::Decommissioned,
            message: Some("worker decommissioned".into()),
            exit_status: None,
            worker_host: Some("10.0.0.1".into()),
        })
    );
    assert!(m.workers().all(|w| w.state == WorkerState::Decommissioned));
    // No new executors land on decommissioned workers.
    let (_, effects) = add_app(&mut m, app_desc(512, None, None), 2, T0);
    assert!(launches(&effects).is_empty());
    // Registering again keeps it decommissioned and out of the recovery state.
    let effects = m.register_worker(reg("w1", 1, 4, 4096), T0);
    assert!(persisted(&effects).is_empty(), "{effects:?}");
    assert_eq!(worker(&m, "w1").state, WorkerState::Decommissioned);
    // Again: idempotent, nothing new to tell.
    let (count, effects) = m.decommission_workers_on_hosts(&["10.0.0.1".into()], T0);
    assert_eq!(count, 2);
    assert!(persisted(&effects).is_empty());
    // A worker announcing its own decommissioning; a standby answers MasterInStandby.
    let mut s = standby_with(config());
    let effects = s.worker_decommissioning(&"w1".into(), &worker_address(1), T0);
    assert_eq!(
        reply_to(&effects).1,
        &ToWorker::Message(MasterToWorkerPlain::MasterInStandby)
    );
    assert_eq!(
        s.decommission_workers_on_hosts(&["10.0.0.1".into()], T0).0,
        0
    );
}

#[test]
fn worker_timeout_rounds_with_saturating_time() {
    // A clock before the first timeout must not underflow.
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 1024, 5);
    assert!(m.check_worker_timeouts(10).is_empty());
}

#[test]
fn malformed_registrations_are_refused() {
    let mut m = alive();
    for r in [
        WorkerRegistration {
            id: "".into(),
            ..reg("x", 1, 1, 1)
        },
        WorkerRegistration {
            id: "a\nb".into(),
            ..reg("x", 1, 1, 1)
        },
        WorkerRegistration {
            host: " ".into(),
            ..reg("x", 1, 1, 1)
        },
        WorkerRegistration {
            port: 0,
            ..reg("x", 1, 1, 1)
        },
    ] {
        let effects = m.register_worker(r, T0);
        assert!(
            matches!(reply_to(&effects).1,
            ToWorker::Message(MasterToWorkerPlain::RegisterWorkerFailed { message })
                if message.starts_with("Invalid registration")),
            "{effects:?}"
        );
    }
    assert_eq!(m.workers().count(), 0);
}
