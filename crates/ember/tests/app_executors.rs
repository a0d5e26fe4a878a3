//! What an application does to its tasks and executors while it runs, as real processes (see
//! `support::apps`): running tasks killed when their job fails, executors killed and asked for.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use serde_closure::Fn;
use support::{TempDir, scenario, scenario_context, spawn_driver, tell, wait_until};

/// Waits in a task until `path` exists (another process creates it), for at most a minute.
fn wait_for_file(path: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if Path::new(path).exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn touch(path: &str) {
    let _ = std::fs::write(path, b"");
}

// ---------------------------------------------------------------------------------------------
// Running tasks of a failed job are killed.
// ---------------------------------------------------------------------------------------------

/// Partition 0 panics once partition 1 runs; partition 1 runs until it is killed, and leaves a
/// marker when it sees the kill. The job fails with the panic, the marker appears, and the next
/// job gets every core.
#[test]
fn scenario_running_tasks_killed() {
    scenario("scenario_running_tasks_killed", || {
        let ctx = scenario_context()?;
        let dir = std::env::var("APP_TEST_DIR").context("APP_TEST_DIR")?;
        let err = ctx
            .run_job(
                2,
                Fn!(move |p: usize| {
                    let running = format!("{}/running", dir);
                    if p == 0 {
                        wait_for_file(&running);
                        panic!("partition 0 gives up");
                    }
                    touch(&running);
                    let ctx = ember::TaskContext::get().expect("tasks have a context");
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while Instant::now() < deadline {
                        if ctx.is_interrupted() {
                            let reason = ctx.kill_reason().unwrap_or_default();
                            let _ = std::fs::write(format!("{}/interrupted", dir), reason);
                            return 1;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    1
                }),
            )
            .err()
            .context("the job should fail")?;
        tell("ERROR", &err);
        let marker = format!("{}/interrupted", std::env::var("APP_TEST_DIR")?);
        wait_until("the running task to see its kill", || {
            Path::new(&marker).exists()
        });
        tell("KILL_REASON", std::fs::read_to_string(&marker)?);
        // Both cores are free again: two tasks that wait for each other finish.
        let both = std::env::var("APP_TEST_DIR")? + "/both";
        let after = ctx.run_job(
            2,
            Fn!(move |p: usize| {
                touch(&format!("{}-{}", both, p));
                wait_for_file(&format!("{}-{}", both, 1 - p))
            }),
        )?;
        ensure!(after == vec![true, true], "{after:?}");
        tell("AFTER", "ok");
        // Cancelling from another thread kills the running task too.
        let dir = std::env::var("APP_TEST_DIR")?;
        let job = {
            let (ctx, dir) = (ctx.clone(), dir.clone());
            std::thread::spawn(move || {
                ctx.run_job(
                    1,
                    Fn!(move |_p: usize| {
                        touch(&format!("{}/cancel-running", dir));
                        let ctx = ember::TaskContext::get().expect("tasks have a context");
                        let deadline = Instant::now() + Duration::from_secs(60);
                        while Instant::now() < deadline {
                            ctx.kill_task_if_interrupted();
                            std::thread::sleep(Duration::from_millis(2));
                        }
                    }),
                )
            })
        };
        wait_until("the task to run", || {
            Path::new(&format!("{dir}/cancel-running")).exists()
        });
        ctx.cancel_all_jobs();
        let cancelled = job
            .join()
            .expect("the job thread")
            .err()
            .context("cancelled")?;
        tell("CANCELLED", &cancelled);
        let again = ctx.run_job(2, Fn!(|p: usize| p + 1))?;
        ensure!(again == vec![1, 2], "{again:?}");
        ctx.stop();
        Ok(())
    });
}

fn running_tasks_of_a_failed_job_are_killed(master: &str) {
    let dir = TempDir::new("killed-tasks");
    let dir_text = dir.path().display().to_string();
    let mut driver = spawn_driver(
        "scenario_running_tasks_killed",
        &[
            ("EMBER_MASTER", master),
            ("APP_TEST_DIR", dir_text.as_str()),
            ("APP_TEST_CONF_ember_task_maxFailures", "1"),
        ],
    );
    driver.wait_success();
    let error = driver.value("ERROR");
    assert!(error.contains("partition 0 gives up"), "{error}");
    let reason = driver.value("KILL_REASON");
    assert!(
        reason.contains("job 0 failed") && reason.contains("partition 0 gives up"),
        "the kill says why: {reason}"
    );
    assert_eq!(driver.value("AFTER"), "ok");
    let cancelled = driver.value("CANCELLED");
    assert!(
        cancelled.contains("cancelled: the application cancelled all jobs"),
        "{cancelled}"
    );
}

#[test]
fn running_tasks_of_a_failed_job_are_killed_in_local_mode() {
    running_tasks_of_a_failed_job_are_killed("local[2]");
}

#[test]
fn running_tasks_of_a_failed_job_are_killed_on_executors() {
    running_tasks_of_a_failed_job_are_killed("local-cluster[1,2,1024]");
}

// ---------------------------------------------------------------------------------------------
// Executors killed and asked for.
// ---------------------------------------------------------------------------------------------

/// Kills both executors while each runs a task, with `ember.task.maxFailures=1`: the tasks are
/// resubmitted without counting as failures, the killed executors are not replaced, and asking
/// for two more finishes the job on new executors.
#[test]
fn scenario_executors_killed_and_requested() {
    scenario("scenario_executors_killed_and_requested", || {
        let ctx = scenario_context()?;
        let dir = std::env::var("APP_TEST_DIR").context("APP_TEST_DIR")?;
        wait_until("two executors", || ctx.num_executors() == 2);
        let first: Vec<String> = ctx.executor_ids();
        tell("FIRST", first.join(","));
        let job = {
            let ctx = ctx.clone();
            let dir = dir.clone();
            std::thread::spawn(move || {
                ctx.run_job(
                    2,
                    Fn!(move |p: usize| {
                        // The first attempt of each partition blocks until its executor dies.
                        let attempt = ember::TaskContext::get().map_or(0, |t| t.attempt_number());
                        if attempt == 0 {
                            touch(&format!("{}/started-{}", dir, p));
                            wait_for_file(&format!("{}/never", dir));
                        }
                        (p, attempt)
                    }),
                )
            })
        };
        wait_until("both tasks running", || {
            (0..2).all(|p| Path::new(&format!("{dir}/started-{p}")).exists())
        });
        ensure!(ctx.kill_executors(&first)?, "the master took the kill");
        wait_until("no executor", || ctx.num_executors() == 0);
        ensure!(
            !ctx.kill_executor("no-such-executor")?,
            "an unknown executor is not killed"
        );
        // Nothing replaces them: the job waits until the application asks.
        ensure!(ctx.executor_ids().is_empty(), "{:?}", ctx.executor_ids());
        ensure!(ctx.request_executors(2)?, "the master took the request");
        let results = job.join().expect("the job thread")?;
        ensure!(results == vec![(0, 1), (1, 1)], "{results:?}");
        wait_until("two new executors", || ctx.num_executors() == 2);
        let second = ctx.executor_ids();
        ensure!(
            second.iter().all(|id| !first.contains(id)),
            "new executors: {first:?} then {second:?}"
        );
        tell("SECOND", second.join(","));
        ctx.stop();
        Ok(())
    });
}

#[test]
fn killed_executors_are_not_replaced_and_their_tasks_do_not_count_as_failures() {
    let dir = TempDir::new("kill-executors");
    let dir_text = dir.path().display().to_string();
    let mut driver = spawn_driver(
        "scenario_executors_killed_and_requested",
        &[
            ("EMBER_MASTER", "local-cluster[2,1,1024]"),
            ("APP_TEST_DIR", dir_text.as_str()),
            ("APP_TEST_CONF_ember_task_maxFailures", "1"),
        ],
    );
    driver.wait_success();
    assert_eq!(driver.value("FIRST").split(',').count(), 2);
    assert_eq!(driver.value("SECOND").split(',').count(), 2);
    let log = driver.log();
    assert!(log.contains("killed at the driver's request"), "{log}");
}

/// In local mode there is no cluster manager to ask.
#[test]
fn scenario_local_mode_has_no_executors_to_change() {
    scenario("scenario_local_mode_has_no_executors_to_change", || {
        let ctx = scenario_context()?;
        ensure!(ctx.executor_ids() == vec!["driver".to_owned()]);
        let err = ctx.request_executors(1).err().context("an error")?;
        tell("ERROR", err);
        ctx.stop();
        Ok(())
    });
}

#[test]
fn local_mode_refuses_executor_requests_clearly() {
    let mut driver = spawn_driver(
        "scenario_local_mode_has_no_executors_to_change",
        &[("EMBER_MASTER", "local[2]")],
    );
    driver.wait_success();
    let error = driver.value("ERROR");
    assert!(
        error.contains("requesting executors needs a cluster manager")
            && error.contains("local[2]"),
        "{error}"
    );
}
