//! Election, recovery and standby behaviour.

use super::*;
use crate::description::ExecutorDescription;
use crate::master::persistence::{ApplicationRecord, DriverRecord, WorkerRecord};
use crate::state::{ApplicationState, DriverState, ExecutorState, WorkerState};

fn worker_record(id: &str, n: u16) -> WorkerRecord {
    reg(id, n, 8, 8192).record()
}

fn app_record(id: &str, n: u16) -> ApplicationRecord {
    ApplicationRecord {
        id: id.into(),
        desc: app_desc(1024, Some(2), Some(4)),
        start_time_ms: T0 - 1_000,
        driver_address: driver_address(n),
    }
}

fn driver_record(id: &str, supervise: bool) -> DriverRecord {
    DriverRecord {
        id: id.into(),
        desc: driver_desc(1, 512, supervise),
        start_time_ms: T0 - 2_000,
    }
}

fn data() -> PersistedData {
    PersistedData {
        apps: vec![app_record("app-1", 1)],
        drivers: vec![
            driver_record("driver-placed", false),
            driver_record("driver-lost", false),
            driver_record("driver-supervised", true),
        ],
        workers: vec![worker_record("w1", 1), worker_record("w2", 2)],
        skipped: vec![],
    }
}

const T1: u64 = T0 + 100_000;

fn recovering() -> (Master, Vec<Effect>) {
    let mut m = standby_with(config());
    let effects = m.elected_leader(data(), T1);
    assert_eq!(m.status(), MasterState::Recovering);
    (m, effects)
}

#[test]
fn election_with_nothing_persisted_makes_the_master_alive() {
    let m = alive();
    assert!(m.readyz());
    assert_eq!(m.snapshot().status, MasterState::Alive);
}

#[test]
fn election_with_records_starts_recovery() {
    let (m, effects) = recovering();
    assert!(m.readyz(), "RECOVERING counts as ready");
    let changed: Vec<String> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::ToWorker {
                worker_id,
                msg: ToWorker::MasterChanged,
                ..
            } => Some(worker_id.to_string()),
            Effect::ToApp {
                app_id,
                msg: ToApp::MasterChanged,
                ..
            } => Some(app_id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(changed, ["app-1", "w1", "w2"]);
    assert_eq!(
        effects.last(),
        Some(&Effect::ScheduleCompleteRecovery {
            after: Duration::from_millis(TIMEOUT_MS)
        })
    );
    assert!(
        m.workers()
            .all(|w| w.state == WorkerState::Unknown && w.last_heartbeat_ms == T1)
    );
    assert_eq!(
        m.app(&"app-1".into()).unwrap().state,
        ApplicationState::Unknown
    );
    assert_eq!(m.drivers().count(), 3);
    assert!(
        m.drivers()
            .all(|d| d.state == DriverState::Submitted && d.worker.is_none())
    );
    // Nothing is scheduled while recovering.
    assert!(launches(&effects).is_empty() && driver_launches(&effects).is_empty());
}

fn answer_worker(
    m: &mut Master,
    id: &str,
    executors: &[ExecutorDescription],
    drivers: &[&str],
) -> Vec<Effect> {
    let drivers: Vec<DriverId> = drivers.iter().map(|d| DriverId::from(*d)).collect();
    m.worker_scheduler_state(&id.into(), executors, &drivers, T1 + 10)
}

#[test]
fn recovery_completes_when_everyone_answered() {
    let (mut m, _) = recovering();
    let exec = ExecutorDescription {
        app_id: "app-1".into(),
        exec_id: ExecutorId(4),
        cores: 2,
        memory_mb: 1024,
        state: ExecutorState::Running,
    };
    let stray = ExecutorDescription {
        app_id: "app-unknown".into(),
        ..exec.clone()
    };
    answer_worker(&mut m, "w1", &[exec, stray], &["driver-placed"]);
    assert_eq!(worker(&m, "w1").state, WorkerState::Alive);
    assert_eq!(m.status(), MasterState::Recovering);
    m.master_change_acknowledged(&"app-1".into(), T1 + 20);
    assert_eq!(
        m.app(&"app-1".into()).unwrap().state,
        ApplicationState::Waiting
    );
    assert_eq!(m.status(), MasterState::Recovering);
    let effects = answer_worker(&mut m, "w2", &[], &[]);
    assert_eq!(m.status(), MasterState::Alive);
    // The application's executor is back, with its id; its next executor counts on from it.
    let app = m.app(&"app-1".into()).unwrap();
    assert_eq!(app.state, ApplicationState::Running);
    assert_eq!(app.executors[&ExecutorId(4)].state, ExecutorState::Running);
    assert_eq!(app.executors[&ExecutorId(4)].worker_id.as_str(), "w1");
    let new: Vec<ExecutorId> = launches(&effects).iter().map(|l| l.2).collect();
    assert_eq!(new, [ExecutorId(5)], "2 more cores for max 4");
    // The placed driver runs on w1; the unplaced ones were failed or relaunched.
    assert_eq!(
        m.driver(&"driver-placed".into()).unwrap().state,
        DriverState::Running
    );
    let finished: Vec<(String, DriverState)> = m
        .completed_drivers()
        .map(|d| (d.id.to_string(), d.state))
        .collect();
    assert_eq!(
        finished,
        [
            ("driver-lost".into(), DriverState::Error),
            ("driver-supervised".into(), DriverState::Relaunching)
        ]
    );
    assert_eq!(
        driver_launches(&effects).len(),
        1,
        "the relaunched copy is placed"
    );
    check_invariants(&m);
}

#[test]
fn the_recovery_timeout_drops_what_did_not_answer() {
    let (mut m, _) = recovering();
    answer_worker(&mut m, "w1", &[], &[]);
    let effects = m.complete_recovery(T1 + TIMEOUT_MS);
    assert_eq!(m.status(), MasterState::Alive);
    let states: Vec<(String, WorkerState)> =
        m.workers().map(|w| (w.id.to_string(), w.state)).collect();
    assert_eq!(
        states,
        [
            ("w1".into(), WorkerState::Alive),
            ("w2".into(), WorkerState::Dead)
        ]
    );
    assert!(persisted(&effects).contains(&&PersistOp::RemoveWorker("w2".into())));
    assert_eq!(
        m.completed_apps().next().unwrap().state,
        ApplicationState::Finished
    );
    assert!(persisted(&effects).contains(&&PersistOp::RemoveApplication("app-1".into())));
    // Completing twice changes nothing.
    assert!(m.complete_recovery(T1 + 2 * TIMEOUT_MS).is_empty());
    check_invariants(&m);
}

#[test]
fn a_disconnect_during_recovery_can_complete_it() {
    let (mut m, _) = recovering();
    answer_worker(&mut m, "w1", &[], &[]);
    m.master_change_acknowledged(&"app-1".into(), T1);
    // w2's RpcEnv disconnects: it is removed and nothing is left to wait for.
    m.disconnected(&worker_address(2), T1 + 30);
    assert_eq!(m.status(), MasterState::Alive);
}

#[test]
fn an_unknown_worker_registering_again_is_alive() {
    // Spark parity: SPARK-46353, handleRegisterWorker in RECOVERING with an UNKNOWN worker.
    let (mut m, _) = recovering();
    let effects = m.register_worker(reg("w1", 1, 8, 8192), T1 + 5);
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::ToWorker {
            msg: ToWorker::Registered {
                duplicate: true,
                ..
            },
            ..
        }
    )));
    assert_eq!(worker(&m, "w1").state, WorkerState::Alive);
    // A new worker may join while recovering; a restarted one at an UNKNOWN worker's address
    // replaces it.
    add_worker(&mut m, "w9", 9, 4, 4096, T1 + 6);
    let effects = add_worker(&mut m, "w2-restarted", 2, 8, 8192, T1 + 7);
    assert!(persisted(&effects).contains(&&PersistOp::RemoveWorker("w2".into())));
    let w2 = m.workers().find(|w| w.id.as_str() == "w2").unwrap();
    assert_eq!(w2.state, WorkerState::Dead);
}

#[test]
fn nothing_to_wait_for_means_alive_at_once() {
    // Spark parity: SPARK-46664, only drivers recovered: recovery completes immediately.
    let mut m = standby_with(config());
    let effects = m.elected_leader(
        PersistedData {
            drivers: vec![driver_record("driver-1", false)],
            ..PersistedData::default()
        },
        T1,
    );
    assert_eq!(m.status(), MasterState::Alive);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::ScheduleCompleteRecovery { .. }))
    );
    assert_eq!(
        m.completed_drivers().next().unwrap().state,
        DriverState::Error
    );
}

#[test]
fn a_second_election_is_ignored_and_revocation_exits() {
    let mut m = alive();
    assert!(m.elected_leader(data(), T1).is_empty());
    assert_eq!(m.status(), MasterState::Alive);
    assert_eq!(
        m.revoked_leadership(T1),
        vec![Effect::Exit {
            reason: "leadership revoked".into()
        }]
    );
}

#[test]
fn snapshot_shows_everything_the_ui_needs() {
    let (mut m, _) = recovering();
    answer_worker(&mut m, "w1", &[], &["driver-placed"]);
    answer_worker(&mut m, "w2", &[], &[]);
    m.master_change_acknowledged(&"app-1".into(), T1);
    let s = m.snapshot();
    assert_eq!(s.url(), URL);
    assert_eq!(s.web_ui_url, "http://127.0.0.1:8080");
    assert_eq!(s.status, MasterState::Alive);
    assert_eq!(s.workers.len(), 2);
    assert_eq!(s.active_apps.len(), 1);
    assert_eq!(
        s.active_apps[0].executors.len(),
        2,
        "two executors of 2 cores for max 4"
    );
    assert_eq!(
        s.active_drivers.len(),
        2,
        "the placed one and the relaunched copy"
    );
    assert_eq!(s.completed_drivers.len(), 2);
}
