//! Changes that are acknowledged only once stored: what happens when the store works, and that
//! a failed write leaves the state exactly as it was.

use super::*;
use crate::master::persistence::WorkerRecord;
use crate::state::{ApplicationState, DriverState, WorkerState};

/// The effects after the last input's write failed.
fn refused(m: &mut Master, effects: &[Effect], now: u64) -> Vec<Effect> {
    assert!(
        matches!(effects.last(), Some(Effect::PersistThenApply(_))),
        "{effects:?}"
    );
    m.persisted(false, now)
}

fn acknowledged_workers(effects: &[Effect]) -> usize {
    effects
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::ToWorker {
                    msg: ToWorker::Registered { .. },
                    ..
                }
            )
        })
        .count()
}

#[test]
fn a_registration_changes_nothing_until_its_record_is_stored() {
    let mut m = alive();
    let effects = m.register_worker(reg("w1", 1, 4, 1024), T0);
    assert_eq!(
        effects,
        vec![Effect::PersistThenApply(PersistOp::AddWorker(
            reg("w1", 1, 4, 1024).record()
        ))]
    );
    assert!(m.worker(&"w1".into()).is_none());
    assert_eq!(m.snapshot().workers.len(), 0);
    let effects = m.persisted(true, T0 + 3);
    assert_eq!(acknowledged_workers(&effects), 1);
    // Registered when stored: its heartbeat clock starts then.
    assert_eq!(worker(&m, "w1").last_heartbeat_ms, T0 + 3);
}

#[test]
fn a_worker_whose_record_was_not_stored_is_neither_listed_nor_given_executors() {
    let mut m = alive();
    // An application waits for cores.
    let (app_id, effects) = add_app(&mut m, app_desc(512, None, None), 1, T0);
    assert!(launches(&effects).is_empty());

    let effects = m.register_worker(reg("w1", 1, 4, 1024), T0 + 1);
    let after = refused(&mut m, &effects, T0 + 2);
    // No answer (the worker's retry comes back), no LaunchExecutor, no ExecutorAdded.
    assert!(after.is_empty(), "{after:?}");
    assert_eq!(m.workers().count(), 0);
    let app = m.app(&app_id).unwrap();
    assert!(app.executors.is_empty());
    assert_eq!(
        (app.state, app.cores_granted),
        (ApplicationState::Waiting, 0)
    );
    check_invariants(&m);

    // The retry, with the store working again: registered, and the application gets its
    // executor.
    let effects = add_worker(&mut m, "w1", 1, 4, 1024, T0 + 5_000);
    assert_eq!(
        launches(&effects),
        [("w1".to_owned(), app_id.clone(), ExecutorId(0), 4)]
    );
    assert_eq!(worker(&m, "w1").cores_used, 4);
    check_invariants(&m);
}

#[test]
fn a_failed_write_does_not_replace_a_dead_or_unknown_worker_at_the_address() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 1024, T0);
    m.check_worker_timeouts(T0 + TIMEOUT_MS + 1);
    // A restart at the DEAD worker's host and port: the DEAD entry stays until it is stored.
    let effects = m.register_worker(reg("w1-new", 1, 4, 1024), T0 + TIMEOUT_MS + 2);
    refused(&mut m, &effects, T0 + TIMEOUT_MS + 3);
    let listed: Vec<_> = m.workers().map(|w| (w.id.to_string(), w.state)).collect();
    assert_eq!(listed, [("w1".to_owned(), WorkerState::Dead)]);
}

#[test]
fn an_unknown_worker_moving_address_moves_only_once_stored() {
    let mut m = standby_with(config());
    let record = reg("w1", 1, 4, 1024).record();
    m.elected_leader(
        PersistedData {
            workers: vec![record.clone()],
            ..PersistedData::default()
        },
        T0,
    );
    assert_eq!(m.status(), MasterState::Recovering);
    let moved = WorkerRegistration {
        address: worker_address(7),
        ..reg("w1", 1, 4, 1024)
    };
    let effects = m.register_worker(moved.clone(), T0 + 1);
    assert_eq!(
        effects,
        vec![Effect::PersistThenApply(PersistOp::AddWorker(
            WorkerRecord {
                address: worker_address(7),
                ..record
            }
        ))]
    );
    assert!(refused(&mut m, &effects, T0 + 2).is_empty());
    let w = worker(&m, "w1");
    assert_eq!(
        (w.state, &w.address),
        (WorkerState::Unknown, &worker_address(1))
    );
    assert_eq!(m.status(), MasterState::Recovering);

    let effects = m.register_worker(moved, T0 + 3);
    let effects = stored(&mut m, effects, T0 + 4);
    assert_eq!(acknowledged_workers(&effects), 1);
    let w = worker(&m, "w1");
    assert_eq!(
        (w.state, &w.address),
        (WorkerState::Alive, &worker_address(7))
    );
    assert_eq!(m.status(), MasterState::Alive, "the last UNKNOWN answered");
}

#[test]
fn an_application_whose_record_was_not_stored_is_not_registered() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 4096, T0);
    let effects = m.register_application(app_desc(512, None, None), driver_address(1), T0);
    let after = refused(&mut m, &effects, T0 + 1);
    // No RegisteredApplication, no executors, no cores held on the worker.
    assert!(after.is_empty(), "{after:?}");
    assert_eq!(m.apps().count(), 0);
    assert!(!m.knows_app_address(&driver_address(1)));
    assert_eq!(worker(&m, "w1").cores_used, 0);
    check_invariants(&m);

    // The driver's retry is a new registration, stored before it is acknowledged; a later
    // retry from the same driver gets the same id, whose record is stored already.
    let effects = m.register_application(app_desc(512, None, None), driver_address(1), T0 + 10);
    assert!(matches!(
        effects.as_slice(),
        [Effect::PersistThenApply(PersistOp::AddApplication(_))]
    ));
    let effects = stored(&mut m, effects, T0 + 11);
    let (app_id, effects) = match effects.iter().find_map(|e| match e {
        Effect::ToApp {
            app_id,
            msg: ToApp::Registered,
            ..
        } => Some(app_id.clone()),
        _ => None,
    }) {
        Some(id) => (id, effects),
        None => panic!("not acknowledged: {effects:?}"),
    };
    assert_eq!(launches(&effects).len(), 1);
    let again = m.register_application(app_desc(512, None, None), driver_address(1), T0 + 20);
    assert!(persisted(&again).is_empty());
    assert!(matches!(again.as_slice(),
        [Effect::ToApp { app_id: id, msg: ToApp::Registered, .. }] if id == &app_id));
    check_invariants(&m);
}

#[test]
fn a_driver_whose_record_was_not_stored_is_not_submitted() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 4096, T0);
    let (response, effects) = m.submit_driver(driver_desc(1, 512, false), T0);
    // The response is what the endpoint sends if, and only if, the write succeeds.
    assert!(response.success);
    let after = refused(&mut m, &effects, T0 + 1);
    assert!(after.is_empty(), "{after:?}");
    assert_eq!(m.drivers().count(), 0);
    assert!(m.waiting_drivers().is_empty());
    assert_eq!(worker(&m, "w1").cores_used, 0);
    let status = m.driver_status(response.driver_id.as_ref().unwrap());
    assert!(!status.found);

    let (response, effects) = m.submit_driver(driver_desc(1, 512, false), T0 + 2);
    let effects = stored(&mut m, effects, T0 + 3);
    let id = response.driver_id.unwrap();
    assert_eq!(driver_launches(&effects), [("w1".to_owned(), id.clone())]);
    assert_eq!(m.driver(&id).unwrap().state, DriverState::Running);
    check_invariants(&m);
}

#[test]
fn other_writes_are_effects_that_do_not_wait() {
    // Removals and a relaunched supervised driver acknowledge nothing: plain Persist effects.
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 4096, T0);
    let (response, effects) = m.submit_driver(driver_desc(1, 512, true), T0);
    stored(&mut m, effects, T0);
    let effects = m.check_worker_timeouts(T0 + TIMEOUT_MS + 1);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::PersistThenApply(_))),
        "{effects:?}"
    );
    let ops = persisted(&effects);
    assert!(ops.contains(&&PersistOp::RemoveWorker("w1".into())));
    assert!(ops.contains(&&PersistOp::RemoveDriver(response.driver_id.unwrap())));
    assert!(ops.iter().any(|op| matches!(op, PersistOp::AddDriver(_))));
    // Nothing waits: the next input is accepted.
    add_worker(&mut m, "w2", 2, 4, 4096, T0 + TIMEOUT_MS + 2);
}

#[test]
fn an_outcome_without_a_waiting_change_does_nothing() {
    let mut m = alive();
    assert!(m.persisted(true, T0).is_empty());
    assert!(m.persisted(false, T0).is_empty());
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "an input arrived while a change waited for persistence")]
fn no_input_may_come_between_a_write_and_its_outcome() {
    let mut m = alive();
    let _ = m.register_worker(reg("w1", 1, 4, 1024), T0);
    let _ = m.heartbeat(&"w1".into(), &worker_address(1), T0 + 1);
}
