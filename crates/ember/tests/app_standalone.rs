//! Applications on a cluster of real `ember master` and `ember worker` processes: the driver is
//! this test binary started again (see `support`); the workers fetch it from the driver and
//! start it as executors.

mod support;

use std::collections::BTreeSet;

use anyhow::{Context as _, ensure};
use serde_closure::Fn;
use support::{
    Master, Signal, TempDir, Worker, http_post, process_gone, scenario, scenario_context,
    spawn_driver, tell, tell_pids, wait_for_test, wait_until,
};

// ---------------------------------------------------------------------------------------------
// Scenarios: run only in driver processes started by the tests below (and in executors).
// ---------------------------------------------------------------------------------------------

/// Runs a job on `APP_TEST_EXECUTORS` executors, tells the test about it, waits for the test,
/// runs another job and stops.
#[test]
fn scenario_cluster_job() {
    scenario("scenario_cluster_job", || {
        let ctx = scenario_context()?;
        let executors: usize = std::env::var("APP_TEST_EXECUTORS")?.parse()?;
        wait_until("the executors", || ctx.num_executors() == executors);
        let results = ctx.run_job(10, Fn!(|p: usize| (p * 3, std::process::id())))?;
        let values: Vec<usize> = results.iter().map(|(v, _)| *v).collect();
        ensure!(
            values == (0..10).map(|p| p * 3).collect::<Vec<_>>(),
            "{values:?}"
        );
        let pids: BTreeSet<u32> = results.iter().map(|(_, pid)| *pid).collect();
        ensure!(
            !pids.contains(&std::process::id()),
            "a task ran in the driver"
        );
        tell_pids(&pids);
        tell("APP_ID", ctx.application_id().context("an application id")?);
        wait_for_test();
        if std::env::var("APP_TEST_AFTER").as_deref() == Ok("job") {
            let sum: usize = ctx.run_job(4, Fn!(|p: usize| p))?.iter().sum();
            ensure!(sum == 6, "{sum}");
        }
        ctx.stop();
        tell("STOPPED", "ok");
        Ok(())
    });
}

#[test]
fn a_job_runs_on_daemon_processes_and_shows_in_the_masters_json() {
    let dir = TempDir::new("daemon-job");
    let master = Master::start(&dir, "master", &[]);
    let _w1 = Worker::start(&dir, "w1", &master.url, &["-c", "1", "-m", "1g"]).registered();
    let _w2 = Worker::start(&dir, "w2", &master.url, &["-c", "1", "-m", "1g"]).registered();
    let mut driver = spawn_driver(
        "scenario_cluster_job",
        &[
            ("EMBER_MASTER", master.url.as_str()),
            ("APP_TEST_EXECUTORS", "2"),
            ("APP_TEST_AFTER", "job"),
        ],
    );
    let app_id = driver.value("APP_ID");
    let pids = driver.value("PIDS");
    assert_eq!(
        pids.split(',').count(),
        2,
        "one executor per worker: {pids}"
    );
    let active = master.apps("activeapps");
    assert!(
        active.contains(&(app_id.clone(), "RUNNING".to_owned())),
        "{active:?}"
    );
    driver.close_stdin();
    driver.wait_success();
    // The master learns of the end from `UnregisterApplication`, or from the driver's
    // connection closing if the process exited first; FINISHED either way.
    wait_until("the application to complete", || {
        master.apps("activeapps").is_empty()
    });
    let completed = master.apps("completedapps");
    assert!(
        completed.contains(&(app_id.clone(), "FINISHED".to_owned())),
        "{completed:?}"
    );
    for pid in pids.split(',') {
        let pid: u32 = pid.parse().unwrap();
        wait_until("the executors to exit", || process_gone(pid));
    }
}

/// The parent of process `pid`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn executors_go_when_their_worker_stops_or_is_sigkilled() {
    let dir = TempDir::new("worker-stops");
    let master = Master::start(&dir, "master", &[]);
    let stopped =
        Worker::start(&dir, "stopped", &master.url, &["-c", "1", "-m", "1g"]).registered();
    let killed = Worker::start(&dir, "killed", &master.url, &["-c", "1", "-m", "1g"]).registered();
    let mut driver = spawn_driver(
        "scenario_cluster_job",
        &[
            ("EMBER_MASTER", master.url.as_str()),
            ("APP_TEST_EXECUTORS", "2"),
        ],
    );
    let pids: Vec<u32> = driver
        .value("PIDS")
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    let child_of = |worker: &Worker| {
        *pids
            .iter()
            .find(|&&pid| parent_of(pid) == Some(worker.proc.pid()))
            .unwrap_or_else(|| panic!("no executor of worker {}: {pids:?}", worker.id))
    };
    let (of_stopped, of_killed) = (child_of(&stopped), child_of(&killed));

    // SIGTERM: the worker kills its executor before it exits.
    stopped.proc.signal(Signal::SIGTERM);
    wait_until("the stopped worker's executor to go", || {
        process_gone(of_stopped)
    });
    assert!(!process_gone(of_killed), "the other executor is unaffected");

    // SIGKILL: the worker cannot act; its executor notices the worker is gone and exits.
    killed.proc.signal(Signal::SIGKILL);
    wait_until("the orphaned executor to exit", || process_gone(of_killed));
    driver.wait_for_line("removing executor");
    driver.close_stdin();
    driver.wait_success();
}

#[test]
fn executors_exit_when_their_driver_is_sigkilled() {
    let dir = TempDir::new("driver-killed");
    let master = Master::start(&dir, "master", &[]);
    let _worker = Worker::start(&dir, "worker", &master.url, &["-c", "2", "-m", "1g"]).registered();
    let mut driver = spawn_driver(
        "scenario_cluster_job",
        &[
            ("EMBER_MASTER", master.url.as_str()),
            ("APP_TEST_EXECUTORS", "1"),
        ],
    );
    let app_id = driver.value("APP_ID");
    let pid: u32 = driver.value("PIDS").parse().unwrap();
    driver.signal(Signal::SIGKILL);
    wait_until("the executor to exit", || process_gone(pid));
    wait_until("the master to finish the application", || {
        master
            .apps("completedapps")
            .contains(&(app_id.clone(), "FINISHED".to_owned()))
    });
}

/// Asks for more memory per executor than any worker has; waits for the test, then stops.
#[test]
fn scenario_starved() {
    scenario("scenario_starved", || {
        let ctx = scenario_context()?;
        let job_ctx = ctx.clone();
        let job = std::thread::spawn(move || job_ctx.run_job(2, Fn!(|p: usize| p)));
        wait_for_test();
        ctx.stop();
        let err = job
            .join()
            .map_err(|_| anyhow::anyhow!("the job thread panicked"))?
            .err()
            .context("the job cannot have run")?;
        tell("JOB_ERROR", err);
        Ok(())
    });
}

#[test]
fn an_application_asking_too_much_waits_and_the_driver_says_why() {
    let dir = TempDir::new("starved");
    let master = Master::start(&dir, "master", &[]);
    let _worker =
        Worker::start(&dir, "worker", &master.url, &["-c", "1", "-m", "512m"]).registered();
    let mut driver = spawn_driver(
        "scenario_starved",
        &[
            ("EMBER_MASTER", master.url.as_str()),
            ("APP_TEST_CONF_ember_executor_memory", "4g"),
            ("APP_TEST_CONF_ember_starvation_timeout", "200ms"),
        ],
    );
    let why = driver.wait_for_line("No worker is big enough");
    assert!(
        why.contains("512 MiB")
            && why.contains("4096 MiB")
            && why.contains("ember.executor.memory"),
        "{why}"
    );
    // It keeps waiting (and saying so) rather than failing.
    let apps = master.apps("activeapps");
    assert_eq!(apps.len(), 1, "{apps:?}");
    assert_eq!(apps[0].1, "WAITING", "{apps:?}");
    driver.close_stdin();
    driver.wait_success();
    let error = driver.value("JOB_ERROR");
    assert!(error.contains("stopped"), "{error}");
}

#[test]
fn a_starved_driver_names_a_missing_worker_and_the_application_holding_the_cores() {
    let dir = TempDir::new("starved-reasons");
    let master = Master::start(&dir, "master", &[]);
    let starved = [
        ("EMBER_MASTER", master.url.as_str()),
        ("APP_TEST_CONF_ember_starvation_timeout", "200ms"),
        ("APP_TEST_CONF_ember_executor_memory", "256m"),
    ];
    // No worker at all.
    let mut lonely = spawn_driver("scenario_starved", &starved);
    let why = lonely.wait_for_line("has no worker registered");
    assert!(why.contains(&master.url), "{why}");
    lonely.close_stdin();
    lonely.wait_success();

    // One core, held by a first application that ran its job and waits.
    let _worker = Worker::start(&dir, "worker", &master.url, &["-c", "1", "-m", "1g"]).registered();
    let mut holder = spawn_driver(
        "scenario_cluster_job",
        &[
            ("EMBER_MASTER", master.url.as_str()),
            ("APP_TEST_EXECUTORS", "1"),
            ("APP_TEST_CONF_ember_executor_memory", "256m"),
        ],
    );
    let holder_id = holder.value("APP_ID");
    let mut second = spawn_driver("scenario_starved", &starved);
    let why = second.wait_for_line("held by other applications");
    assert!(
        why.contains(&format!("{holder_id} (app-test) holds 1 core(s)")),
        "{why}"
    );
    for driver in [&mut second, &mut holder] {
        driver.close_stdin();
        driver.wait_success();
    }
    assert!(second.value("JOB_ERROR").contains("stopped"));
    assert_eq!(holder.value("STOPPED"), "ok");
}

/// A job whose tasks wait for `APP_TEST_RELEASE` to exist; reports how the job and the context
/// ended.
#[test]
fn scenario_removed() {
    scenario("scenario_removed", || {
        let ctx = scenario_context()?;
        tell("APP_ID", {
            let mut id = None;
            wait_until("an application id", || {
                id = ctx.application_id();
                id.is_some()
            });
            id.unwrap_or_default()
        });
        let release = std::env::var("APP_TEST_RELEASE")?;
        let job_ctx = ctx.clone();
        let job = std::thread::spawn(move || {
            job_ctx.run_job(
                2,
                Fn!(move |p: usize| {
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                    while !std::path::Path::new(&release).exists()
                        && std::time::Instant::now() < deadline
                    {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    p
                }),
            )
        });
        wait_until("the tasks to run", || {
            ctx.stage_progress().iter().any(|s| s.active > 0)
        });
        tell("RUNNING", "yes");
        let err = job
            .join()
            .map_err(|_| anyhow::anyhow!("the job thread panicked"))?
            .err()
            .context("the job should fail")?;
        tell("JOB_ERROR", err);
        wait_until("the context to stop", || ctx.is_stopped());
        tell("STOP_REASON", ctx.stop_reason().unwrap_or_default());
        Ok(())
    });
}

#[test]
fn killing_the_application_in_the_master_stops_the_context_with_the_reason() {
    let dir = TempDir::new("removed");
    let master = Master::start(&dir, "master", &[]);
    let _worker = Worker::start(&dir, "worker", &master.url, &["-c", "2", "-m", "1g"]).registered();
    let release = dir.path().join("release").display().to_string();
    let mut driver = spawn_driver(
        "scenario_removed",
        &[
            ("EMBER_MASTER", master.url.as_str()),
            ("APP_TEST_RELEASE", release.as_str()),
        ],
    );
    let app_id = driver.value("APP_ID");
    driver.value("RUNNING");
    http_post(&format!(
        "{}/app/kill?id={app_id}&terminate=true",
        master.web_ui
    ));
    let error = driver.value("JOB_ERROR");
    assert!(
        error.contains("Master removed our application: KILLED"),
        "{error}"
    );
    let reason = driver.value("STOP_REASON");
    assert!(
        reason.contains("Master removed our application: KILLED"),
        "{reason}"
    );
    driver.wait_success();
    let completed = master.apps("completedapps");
    assert!(
        completed.contains(&(app_id, "KILLED".to_owned())),
        "{completed:?}"
    );
}
