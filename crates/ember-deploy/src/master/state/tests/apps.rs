//! Applications, executors and FIFO scheduling.

use super::*;
use crate::state::{ApplicationState, ExecutorState};

fn three_workers(m: &mut Master) {
    for (i, id) in ["w1", "w2", "w3"].into_iter().enumerate() {
        add_worker(m, id, i as u16 + 1, 10, 4096, T0);
    }
}

fn exec_changed(
    m: &mut Master,
    app: &AppId,
    exec: ExecutorId,
    state: ExecutorState,
    exit: Option<i32>,
) -> Vec<Effect> {
    m.executor_state_changed(app, exec, state, None, exit, T0 + 1)
}

#[test]
fn registration_persists_acknowledges_then_launches() {
    let mut m = alive();
    three_workers(&mut m);
    let (app_id, effects) = add_app(&mut m, app_desc(1024, None, None), 1, T0);
    assert_eq!(app_id.as_str(), "app-20261121122140-0000");
    let persist = position(&effects, |e| {
        matches!(e, Effect::PersistThenApply(PersistOp::AddApplication(_)))
    });
    let ack = position(&effects, |e| {
        matches!(
            e,
            Effect::ToApp {
                msg: ToApp::Registered,
                ..
            }
        )
    });
    assert!(persist < ack);
    // Spark parity: basic scheduling, one executor per worker with all its cores.
    let l = launches(&effects);
    assert_eq!(l.len(), 3);
    assert!(
        l.iter()
            .all(|(_, a, _, cores)| a == &app_id && *cores == 10)
    );
    let ids: Vec<u32> = l.iter().map(|(_, _, e, _)| e.0).collect();
    assert_eq!(ids, [0, 1, 2]);
    let added = to_app(&effects, &app_id);
    assert!(matches!(
        added[0],
        MasterToAppPlain::ExecutorAdded {
            cores: 10,
            memory_mb: 1024,
            ..
        }
    ));
    let app = m.app(&app_id).unwrap();
    assert_eq!(
        (app.state, app.cores_granted),
        (ApplicationState::Running, 30)
    );
    check_invariants(&m);
    // The next application gets an increasing number.
    let (second, effects) = add_app(&mut m, app_desc(1024, None, None), 2, T0);
    assert_eq!(second.as_str(), "app-20261121122140-0001");
    assert!(launches(&effects).is_empty(), "no cores left");
    assert_eq!(m.app(&second).unwrap().state, ApplicationState::Waiting);
}

#[test]
fn a_standby_ignores_registrations_and_a_recovering_master_does_not_schedule() {
    let mut m = standby_with(config());
    assert!(
        m.register_application(app_desc(1, None, None), driver_address(1), T0)
            .is_empty()
    );
    assert_eq!(m.apps().count(), 0);
}

#[test]
fn the_same_driver_registering_again_gets_its_id_back() {
    let mut m = alive();
    let (first, _) = add_app(&mut m, app_desc(512, None, None), 1, T0);
    let effects = m.register_application(app_desc(512, None, None), driver_address(1), T0 + 20_000);
    assert_eq!(
        effects,
        vec![Effect::ToApp {
            app_id: first.clone(),
            address: driver_address(1),
            msg: ToApp::Registered
        }]
    );
    assert_eq!(m.apps().count(), 1);
}

#[test]
fn applications_are_served_first_in_first_out() {
    // Spark parity: startExecutorsOnWorkers is FIFO; the first application takes what it can.
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 8, 8192, T0);
    let (a1, e1) = add_app(&mut m, app_desc(1024, Some(2), Some(6)), 1, T0);
    let (a2, e2) = add_app(&mut m, app_desc(1024, Some(2), None), 2, T0);
    assert_eq!(launches(&e1).len(), 3);
    assert_eq!(launches(&e2).len(), 1, "the second gets the last 2 cores");
    // When the first finishes, the second grows into its cores.
    let effects = m.unregister_application(&a1, T0 + 1);
    assert_eq!(launches(&effects).len(), 3);
    assert!(launches(&effects).iter().all(|(_, a, _, _)| a == &a2));
    assert_eq!(m.app(&a2).unwrap().cores_granted, 8);
    check_invariants(&m);
}

#[test]
fn default_cores_cap_applications_without_max_cores() {
    let mut c = config();
    c.default_cores = 3;
    let mut m = alive_with(c);
    three_workers(&mut m);
    let (app_id, effects) = add_app(&mut m, app_desc(512, None, None), 1, T0);
    let cores: u32 = launches(&effects).iter().map(|l| l.3).sum();
    assert_eq!(cores, 3);
    assert_eq!(m.app(&app_id).unwrap().cores_left(), 0);
}

#[test]
fn consolidation_and_selection_policy_apply() {
    let mut c = config();
    c.spread_out_apps = false;
    c.worker_selection_policy = crate::master::config::WorkerSelectionPolicy::WorkerId;
    let mut m = alive_with(c);
    three_workers(&mut m);
    let (_, effects) = add_app(&mut m, app_desc(512, None, Some(16)), 1, T0);
    let l: Vec<(String, u32)> = launches(&effects)
        .into_iter()
        .map(|(w, _, _, c)| (w, c))
        .collect();
    assert_eq!(l, [("w1".into(), 10), ("w2".into(), 6)]);
}

#[test]
fn running_resets_retries_and_exits_free_cores_and_reschedule() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 2, 4096, T0);
    let (app_id, effects) = add_app(&mut m, app_desc(1024, Some(2), Some(2)), 1, T0);
    let (_, _, e0, _) = launches(&effects)[0].clone();
    let effects = exec_changed(&mut m, &app_id, e0, ExecutorState::Running, None);
    assert_eq!(
        to_app(&effects, &app_id),
        vec![&MasterToAppPlain::ExecutorUpdated {
            id: e0,
            state: ExecutorState::Running,
            message: None,
            exit_status: None,
            worker_host: None,
        }]
    );
    // It exits abnormally: its cores return and a replacement is launched at once.
    let effects = exec_changed(&mut m, &app_id, e0, ExecutorState::Exited, Some(1));
    let relaunched = launches(&effects);
    assert_eq!(relaunched.len(), 1);
    assert_eq!(relaunched[0].2, ExecutorId(1));
    let app = m.app(&app_id).unwrap();
    assert_eq!(app.retry_count, 1);
    assert_eq!(app.removed_executors[0].state, ExecutorState::Exited);
    check_invariants(&m);
    exec_changed(&mut m, &app_id, ExecutorId(1), ExecutorState::Running, None);
    assert_eq!(m.app(&app_id).unwrap().retry_count, 0);
    // A normal exit does not count.
    exec_changed(
        &mut m,
        &app_id,
        ExecutorId(1),
        ExecutorState::Exited,
        Some(0),
    );
    assert_eq!(m.app(&app_id).unwrap().retry_count, 0);
}

#[test]
fn an_application_whose_executors_keep_failing_is_removed() {
    // Spark parity: SPARK-27510, a worker failing every LaunchExecutor makes the master try
    // exactly maxExecutorRetries (10) launches, then remove the application.
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 4096, T0);
    let (app_id, effects) = add_app(&mut m, app_desc(1024, None, None), 1, T0);
    let mut launched = launches(&effects).len();
    let mut last = ExecutorId(0);
    for _ in 0..20 {
        let Some(app) = m.app(&app_id) else { break };
        last = *app.executors.keys().next().expect("an executor to fail");
        let effects = exec_changed(&mut m, &app_id, last, ExecutorState::Failed, None);
        launched += launches(&effects).len();
        if m.app(&app_id).is_none() {
            assert_eq!(
                to_app(&effects, &app_id).last(),
                Some(&&MasterToAppPlain::ApplicationRemoved {
                    message: "FAILED".into()
                })
            );
        }
    }
    assert_eq!(launched, 10);
    assert_eq!(last, ExecutorId(9));
    let done = m.completed_apps().next().unwrap();
    assert_eq!(done.state, ApplicationState::Failed);
    assert!(done.end_time_ms.is_some());
    check_invariants(&m);
}

#[test]
fn failures_never_remove_an_application_with_a_running_executor_or_when_disabled() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 2, 4096, T0);
    add_worker(&mut m, "w2", 2, 2, 4096, T0);
    let (app_id, _) = add_app(&mut m, app_desc(512, Some(1), Some(2)), 1, T0);
    let execs: Vec<ExecutorId> = m.app(&app_id).unwrap().executors.keys().copied().collect();
    exec_changed(&mut m, &app_id, execs[0], ExecutorState::Running, None);
    let mut failing = execs[1];
    for _ in 0..15 {
        exec_changed(&mut m, &app_id, failing, ExecutorState::Failed, None);
        failing = *m.app(&app_id).unwrap().executors.keys().last().unwrap();
    }
    let app = m.app(&app_id).expect("kept: one executor is RUNNING");
    assert!(app.retry_count >= 10);

    let mut c = config();
    c.max_executor_retries = None;
    let mut m = alive_with(c);
    add_worker(&mut m, "w1", 1, 1, 4096, T0);
    let (app_id, _) = add_app(&mut m, app_desc(512, None, None), 1, T0);
    for _ in 0..30 {
        let e = *m.app(&app_id).unwrap().executors.keys().next().unwrap();
        exec_changed(&mut m, &app_id, e, ExecutorState::Failed, None);
    }
    assert_eq!(m.app(&app_id).unwrap().retry_count, 30);
}

#[test]
fn odd_executor_updates_are_logged_and_ignored() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 2, 4096, T0);
    let (app_id, _) = add_app(&mut m, app_desc(512, None, None), 1, T0);
    assert!(
        exec_changed(
            &mut m,
            &"app-nope".into(),
            ExecutorId(0),
            ExecutorState::Running,
            None
        )
        .is_empty()
    );
    assert!(
        exec_changed(
            &mut m,
            &app_id,
            ExecutorId(77),
            ExecutorState::Running,
            None
        )
        .is_empty()
    );
    exec_changed(&mut m, &app_id, ExecutorId(0), ExecutorState::Running, None);
    // RUNNING again (a retried ask): Spark would fail the ask; here it is ignored.
    assert!(exec_changed(&mut m, &app_id, ExecutorId(0), ExecutorState::Running, None).is_empty());
    assert_eq!(
        m.app(&app_id).unwrap().executors[&ExecutorId(0)].state,
        ExecutorState::Running
    );
}

#[test]
fn decommissioned_executors_do_not_count_as_failures() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 2, 4096, T0);
    let (app_id, _) = add_app(&mut m, app_desc(512, None, None), 1, T0);
    exec_changed(
        &mut m,
        &app_id,
        ExecutorId(0),
        ExecutorState::Decommissioned,
        None,
    );
    exec_changed(
        &mut m,
        &app_id,
        ExecutorId(0),
        ExecutorState::Exited,
        Some(143),
    );
    assert_eq!(m.app(&app_id).unwrap().retry_count, 0);
}

#[test]
fn removing_an_application_kills_its_executors_and_tells_everyone() {
    let mut m = alive();
    three_workers(&mut m);
    let (app_id, _) = add_app(&mut m, app_desc(1024, None, Some(2)), 1, T0);
    let (known, effects) = m.kill_application(&app_id, T0 + 5);
    assert!(known);
    let kills: Vec<_> = effects
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::ToWorker {
                    msg: ToWorker::Message(MasterToWorkerPlain::KillExecutor { .. }),
                    ..
                }
            )
        })
        .collect();
    assert_eq!(kills.len(), 2);
    assert!(
        to_app(&effects, &app_id).contains(&&MasterToAppPlain::ApplicationRemoved {
            message: "KILLED".into()
        })
    );
    assert!(persisted(&effects).contains(&&PersistOp::RemoveApplication(app_id.clone())));
    for w in ["w1", "w2", "w3"] {
        assert!(
            to_worker(&effects, w).contains(&&MasterToWorkerPlain::ApplicationFinished {
                app_id: app_id.clone()
            })
        );
    }
    assert!(m.workers().all(|w| w.cores_used == 0));
    let done = m.completed_apps().next().unwrap();
    assert_eq!(done.state, ApplicationState::Killed);
    assert_eq!(done.duration_ms(T0 + 1_000_000), 5);
    assert!(
        done.executors
            .values()
            .all(|e| e.state == ExecutorState::Killed)
    );
    assert!(!m.kill_application(&app_id, T0).0);
}

#[test]
fn completed_applications_are_retained_as_spark_does() {
    // Spark parity: when retainedApplications are kept, the oldest tenth is dropped.
    let mut c = config();
    c.retained_applications = 20;
    let mut m = alive_with(c);
    let mut ids = Vec::new();
    for i in 0..21 {
        let (id, _) = add_app(&mut m, app_desc(1, None, None), i, T0);
        m.unregister_application(&id, T0);
        ids.push(id);
    }
    let kept: Vec<AppId> = m.completed_apps().map(|a| a.id.clone()).collect();
    assert_eq!(kept.len(), 19);
    assert_eq!(kept, ids[2..]);
    assert!(m.clear_completed());
    assert_eq!(m.completed_apps().count(), 0);
}

#[test]
fn dynamic_allocation_moves_the_limit_and_kills_on_request() {
    let mut m = alive();
    three_workers(&mut m);
    let mut desc = app_desc(1024, Some(2), None);
    desc.initial_executor_limit = Some(1);
    let (app_id, effects) = add_app(&mut m, desc, 1, T0);
    assert_eq!(launches(&effects).len(), 1);
    let (known, effects) = m.request_executors(&app_id, 4, T0);
    assert!(known);
    assert_eq!(launches(&effects).len(), 3);
    // Lowering the limit kills nothing.
    let (_, effects) = m.request_executors(&app_id, 1, T0);
    assert!(effects.is_empty());
    assert_eq!(m.app(&app_id).unwrap().executors.len(), 4);
    let (known, effects) = m.kill_executors(&app_id, &[ExecutorId(0), ExecutorId(99)], T0);
    assert!(known);
    assert_eq!(
        effects
            .iter()
            .filter(|e| matches!(
                e,
                Effect::ToWorker {
                    msg: ToWorker::Message(MasterToWorkerPlain::KillExecutor {
                        exec_id: ExecutorId(0),
                        ..
                    }),
                    ..
                }
            ))
            .count(),
        1
    );
    assert!(
        launches(&effects).is_empty(),
        "over the limit: no replacement"
    );
    let app = m.app(&app_id).unwrap();
    assert_eq!(app.executors.len(), 3);
    assert_eq!(app.removed_executors[0].state, ExecutorState::Killed);
    check_invariants(&m);
    assert!(!m.request_executors(&"app-x".into(), 1, T0).0);
    assert!(!m.kill_executors(&"app-x".into(), &[], T0).0);
}

#[test]
fn an_application_bigger_than_any_worker_waits() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 1024, T0);
    let (app_id, effects) = add_app(&mut m, app_desc(2048, None, None), 1, T0);
    assert!(launches(&effects).is_empty());
    assert_eq!(m.app(&app_id).unwrap().state, ApplicationState::Waiting);
    // A big enough worker arrives: it gets the executor.
    let effects = add_worker(&mut m, "w2", 2, 4, 4096, T0);
    assert_eq!(launches(&effects).len(), 1);
}
