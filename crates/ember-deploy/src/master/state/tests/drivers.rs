//! Drivers: submission, placement, kills, status, relaunch, retention.

use super::*;
use crate::state::DriverState;

fn submit(m: &mut Master, desc: DriverDescription) -> (DriverId, Vec<Effect>) {
    let (response, effects) = m.submit_driver(desc, T0);
    let effects = stored(m, effects, T0);
    assert!(response.success, "{response:?}");
    let id = response.driver_id.expect("an id");
    assert_eq!(
        response.message,
        format!("Driver successfully submitted as {id}")
    );
    (id, effects)
}

#[test]
fn only_an_alive_master_takes_submissions() {
    let mut m = standby_with(config());
    let (response, effects) = m.submit_driver(driver_desc(1, 1, false), T0);
    assert!(!response.success && effects.is_empty());
    assert_eq!(
        response.message,
        "Current state is not alive: STANDBY. Can only accept driver submissions in ALIVE state."
    );
    let (kill, _) = m.kill_driver(&"driver-x".into(), T0);
    assert_eq!(
        kill.message,
        "Current state is not alive: STANDBY. Can only kill drivers in ALIVE state."
    );
    assert!(!m.kill_all_drivers(T0).0.success);
    let status = m.driver_status(&"driver-x".into());
    assert!(!status.found);
    assert_eq!(
        status.exception.as_deref(),
        Some("Current state is not alive: STANDBY. Can only request driver status in ALIVE state.")
    );
    assert!(!m.readyz());
}

#[test]
fn a_submitted_driver_is_persisted_then_launched() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 4, 4096, T0);
    let (id, effects) = submit(&mut m, driver_desc(1, 512, false));
    assert_eq!(id.as_str(), "driver-20261121122140-0000");
    assert_eq!(
        persisted(&effects),
        vec![&PersistOp::AddDriver(m.driver(&id).unwrap().record())]
    );
    assert_eq!(driver_launches(&effects), [("w1".into(), id.clone())]);
    let d = m.driver(&id).unwrap();
    assert_eq!(d.state, DriverState::Running);
    assert_eq!(d.worker.as_ref().map(|w| w.as_str()), Some("w1"));
    assert_eq!(worker(&m, "w1").cores_used, 1);
    let status = m.driver_status(&id);
    assert!(status.found);
    assert_eq!(status.state, Some(DriverState::Running));
    assert_eq!(status.worker_host_port.as_deref(), Some("10.0.0.1:7001"));
    check_invariants(&m);
}

#[test]
fn drivers_spread_out_or_consolidate() {
    // Spark parity: 3 workers (10 cores, 512 MiB), 3 drivers (1 core, 1 MiB).
    for (spread, expect_on_one) in [(true, 1), (false, 3)] {
        let mut c = config();
        c.spread_out_drivers = spread;
        let mut m = alive_with(c);
        for (i, id) in ["w1", "w2", "w3"].into_iter().enumerate() {
            add_worker(&mut m, id, i as u16 + 1, 10, 512, T0);
        }
        for _ in 0..3 {
            submit(&mut m, driver_desc(1, 1, false));
        }
        let most = m.workers().map(|w| w.drivers.len()).max().unwrap();
        assert_eq!(most, expect_on_one, "spread = {spread}");
        if !spread {
            assert_eq!(worker(&m, "w1").drivers.len(), 3, "lowest id first");
        }
    }
}

#[test]
fn max_drivers_holds_the_rest_back() {
    // Spark parity: maxDrivers = 4 with one worker: 3 run; 3 more make 6 with 4 running.
    let mut c = config();
    c.max_drivers = 4;
    let mut m = alive_with(c);
    add_worker(&mut m, "w1", 1, 10, 512, T0);
    for _ in 0..6 {
        submit(&mut m, driver_desc(1, 1, false));
    }
    assert_eq!(m.drivers().count(), 6);
    assert_eq!(m.waiting_drivers().len(), 2);
    assert_eq!(worker(&m, "w1").drivers.len(), 4);
    // One finishes: a waiting one takes its place.
    let running = worker(&m, "w1").drivers.keys().next().unwrap().clone();
    let effects = m.driver_state_changed(&running, DriverState::Finished, None, T0 + 1);
    assert_eq!(driver_launches(&effects).len(), 1);
    assert_eq!(m.waiting_drivers().len(), 1);
    check_invariants(&m);
}

#[test]
fn kills_end_waiting_drivers_and_ask_workers_for_running_ones() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 1, 4096, T0);
    let (running, _) = submit(&mut m, driver_desc(1, 512, false));
    let (waiting, _) = submit(&mut m, driver_desc(1, 512, false));
    assert_eq!(m.waiting_drivers(), std::slice::from_ref(&waiting));
    let (response, effects) = m.kill_driver(&waiting, T0);
    assert!(response.success);
    assert_eq!(
        response.message,
        format!("Kill request for {waiting} submitted")
    );
    assert!(persisted(&effects).contains(&&PersistOp::RemoveDriver(waiting.clone())));
    assert_eq!(
        m.completed_drivers().last().unwrap().state,
        DriverState::Killed
    );
    let (response, effects) = m.kill_driver(&running, T0);
    assert!(response.success);
    assert_eq!(
        to_worker(&effects, "w1"),
        vec![&MasterToWorkerPlain::KillDriver {
            driver_id: running.clone()
        }]
    );
    assert!(
        m.driver(&running).is_some(),
        "it ends when the worker says so"
    );
    m.driver_state_changed(&running, DriverState::Killed, None, T0);
    assert!(m.driver(&running).is_none());
    assert_eq!(worker(&m, "w1").cores_used, 0);
    let (response, _) = m.kill_driver(&running, T0);
    assert!(!response.success);
    assert_eq!(
        response.message,
        format!("Driver {running} has already finished or does not exist")
    );
    // Status still finds finished drivers.
    assert_eq!(m.driver_status(&running).state, Some(DriverState::Killed));
    assert!(!m.driver_status(&"driver-nope".into()).found);
}

#[test]
fn kill_all_drivers_kills_each() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 1, 4096, T0);
    submit(&mut m, driver_desc(1, 512, false));
    submit(&mut m, driver_desc(1, 512, false));
    let (response, effects) = m.kill_all_drivers(T0);
    assert!(response.success);
    assert_eq!(response.message, "Kill request for all drivers submitted");
    assert_eq!(
        to_worker(&effects, "w1").len(),
        1,
        "KillDriver for the running one"
    );
    assert_eq!(m.drivers().count(), 1);
}

#[test]
fn driver_failures_are_recorded_and_unexpected_states_ignored() {
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 1, 4096, T0);
    let (id, _) = submit(&mut m, driver_desc(1, 512, false));
    assert!(
        m.driver_state_changed(&id, DriverState::Running, None, T0)
            .is_empty()
    );
    m.driver_state_changed(&id, DriverState::Failed, Some("exit 3".into()), T0);
    let done = m.completed_drivers().last().unwrap();
    assert_eq!(
        (done.state, done.exception.as_deref()),
        (DriverState::Failed, Some("exit 3"))
    );
    // Unknown driver: logged only.
    assert!(
        m.driver_state_changed(&"driver-x".into(), DriverState::Failed, None, T0)
            .is_empty()
    );
}

#[test]
fn losing_a_worker_relaunches_supervised_drivers_under_a_new_id() {
    // Spark parity: SPARK-19900, the relaunched driver gets a new id.
    let mut m = alive();
    add_worker(&mut m, "w1", 1, 2, 4096, T0);
    let (supervised, _) = submit(&mut m, driver_desc(1, 512, true));
    let (plain, _) = submit(&mut m, driver_desc(1, 512, false));
    add_worker(&mut m, "w2", 2, 2, 4096, T0 + 30_000);
    let effects = m.check_worker_timeouts(T0 + TIMEOUT_MS + 1);
    let relaunched = driver_launches(&effects);
    assert_eq!(relaunched.len(), 1);
    let (on, new_id) = &relaunched[0];
    assert_eq!(on, "w2");
    assert_ne!(new_id, &supervised);
    let finished: Vec<(DriverId, DriverState)> = m
        .completed_drivers()
        .map(|d| (d.id.clone(), d.state))
        .collect();
    assert!(finished.contains(&(supervised.clone(), DriverState::Relaunching)));
    assert!(finished.contains(&(plain.clone(), DriverState::Error)));
    let ops = persisted(&effects);
    assert!(ops.contains(&&PersistOp::RemoveDriver(supervised)));
    assert!(
        ops.iter()
            .any(|op| matches!(op, PersistOp::AddDriver(r) if &r.id == new_id))
    );
    check_invariants(&m);
}

#[test]
fn completed_drivers_are_retained_as_spark_does() {
    let mut c = config();
    c.retained_drivers = 5;
    let mut m = alive_with(c);
    for _ in 0..8 {
        let (id, _) = submit(&mut m, driver_desc(1, 1, false));
        m.kill_driver(&id, T0);
    }
    // Full at 5: drop max(5/10, 1) = 1 before each append.
    assert_eq!(m.completed_drivers().count(), 5);
    assert!(m.clear_completed());
    assert_eq!(m.completed_drivers().count(), 0);
}
