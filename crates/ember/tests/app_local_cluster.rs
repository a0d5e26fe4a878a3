//! Applications in `local` and `local-cluster[W,C,M]` mode, as real processes: the driver is this
//! test binary started again (see `support`), its in-process workers start executors from the
//! same binary, and faults are injected into those processes.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context as _, ensure};
use serde_closure::Fn;
use support::{
    Proc, TempDir, process_gone, scenario, scenario_context, spawn_driver, tell, tell_pids,
    wait_for_test, wait_until,
};

// ---------------------------------------------------------------------------------------------
// Scenarios: run only in driver processes started by the tests below (and in executors).
// ---------------------------------------------------------------------------------------------

fn expected_executors() -> usize {
    std::env::var("APP_TEST_EXECUTORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Two jobs with checked results; reports the executors' pids and that they exit at stop.
#[test]
fn scenario_jobs() {
    scenario("scenario_jobs", || {
        let ctx = scenario_context()?;
        let executors = expected_executors();
        wait_until("the executors", || ctx.num_executors() == executors);
        let base = 3u64;
        let results = ctx.run_job(
            12,
            Fn!(move |p: usize| (p as u64 * p as u64 + base, std::process::id())),
        )?;
        let values: Vec<u64> = results.iter().map(|(v, _)| *v).collect();
        ensure!(
            values == (0..12u64).map(|p| p * p + 3).collect::<Vec<_>>(),
            "wrong squares: {values:?}"
        );
        let pids: BTreeSet<u32> = results.iter().map(|(_, pid)| *pid).collect();
        // One context, jobs from several threads at once.
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let ctx = ctx.clone();
                std::thread::spawn(move || ctx.run_job(5, Fn!(move |p: usize| p as u64 * t)))
            })
            .collect();
        for (t, thread) in threads.into_iter().enumerate() {
            let got = thread.join().expect("a job thread")?;
            let want: Vec<u64> = (0..5).map(|p| p * t as u64).collect();
            ensure!(got == want, "thread {t}: {got:?}");
        }
        let sums = ctx.run_job(100, Fn!(|p: usize| (0..=p as u64).sum::<u64>()))?;
        let total: u64 = sums.iter().sum();
        ensure!(total == 166_650, "wrong sum of sums: {total}");
        tell_pids(&pids);
        tell("DRIVER_PID", std::process::id());
        ctx.stop();
        if !pids.contains(&std::process::id()) {
            wait_until("the executors to exit", || {
                pids.iter().all(|&pid| process_gone(pid))
            });
        }
        tell("STOPPED", "ok");
        Ok(())
    });
}

fn pids_of(driver: &mut Proc) -> BTreeSet<u32> {
    driver
        .value("PIDS")
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect()
}

fn run_jobs(master: &str, executors: usize) -> BTreeSet<u32> {
    let executors_text = executors.to_string();
    let mut driver = spawn_driver(
        "scenario_jobs",
        &[
            ("EMBER_MASTER", master),
            ("APP_TEST_EXECUTORS", executors_text.as_str()),
        ],
    );
    driver.wait_success();
    assert_eq!(driver.value("STOPPED"), "ok", "{}", driver.output());
    let pids = pids_of(&mut driver);
    // The local cluster's scratch directory went with it.
    let scratch = format!("ember-local-cluster-{}-", driver.pid());
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&scratch))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    pids
}

#[test]
fn local_and_local_cluster_jobs_give_correct_results() {
    // local: the tasks run in the driver.
    let pids = run_jobs("local[2]", 1);
    assert_eq!(pids.len(), 1, "{pids:?}");

    // Two workers of one core: one executor process on each, both used.
    let pids = run_jobs("local-cluster[2,1,1024]", 2);
    assert_eq!(pids.len(), 2, "tasks ran on both executors: {pids:?}");

    // One worker of two cores and 512 MiB: one two-core executor (its memory fits the worker).
    let pids = run_jobs("local-cluster[1,2,512]", 1);
    assert_eq!(pids.len(), 1, "{pids:?}");
}

/// The first attempt of partition 5 SIGKILLs its own executor.
#[test]
fn scenario_executor_killed() {
    scenario("scenario_executor_killed", || {
        let ctx = scenario_context()?;
        wait_until("two executors", || ctx.num_executors() == 2);
        let marker = std::env::var("APP_TEST_MARKER").context("APP_TEST_MARKER")?;
        let results = ctx.run_job(
            8,
            Fn!(move |p: usize| {
                if p == 5 {
                    kill_own_process_once(&marker);
                }
                (p * 10, std::process::id())
            }),
        )?;
        let values: Vec<usize> = results.iter().map(|(v, _)| *v).collect();
        ensure!(
            values == (0..8).map(|p| p * 10).collect::<Vec<_>>(),
            "wrong results after the executor was killed: {values:?}"
        );
        // The master gives the worker whose executor died a new one.
        wait_until("a replacement executor", || ctx.num_executors() == 2);
        let again = ctx.run_job(4, Fn!(|p: usize| p + 1))?;
        ensure!(again == vec![1, 2, 3, 4], "{again:?}");
        tell("OK", "done");
        ctx.stop();
        Ok(())
    });
}

/// SIGKILLs the calling process, the first time only (`marker` records it).
fn kill_own_process_once(marker: &str) {
    let first = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(Path::new(marker))
        .is_ok();
    if first {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGKILL);
    }
}

#[test]
fn a_job_survives_an_executor_killed_in_the_middle() {
    let dir = TempDir::new("killed");
    let marker = dir.path().join("killed-once");
    let marker = marker.display().to_string();
    let mut driver = spawn_driver(
        "scenario_executor_killed",
        &[
            ("EMBER_MASTER", "local-cluster[2,1,1024]"),
            ("APP_TEST_MARKER", marker.as_str()),
        ],
    );
    driver.wait_success();
    assert_eq!(driver.value("OK"), "done");
    assert!(Path::new(&marker).exists(), "the executor was killed");
    let log = driver.log();
    assert!(log.contains("removing executor"), "{}", driver.output());
}

/// Partition 1 always panics: the job fails with the panic message; the driver goes on.
#[test]
fn scenario_task_panics() {
    scenario("scenario_task_panics", || {
        let ctx = scenario_context()?;
        let err = ctx
            .run_job(
                3,
                Fn!(|p: usize| {
                    if p == 1 {
                        panic!("boom in partition {}", p);
                    }
                    p
                }),
            )
            .err()
            .context("the job should fail")?;
        let failure = err.task_failure().context("a task failure")?.to_string();
        tell("FAILURE", &failure);
        tell("ERROR", &err);
        let after = ctx.run_job(2, Fn!(|p: usize| p * 2))?;
        ensure!(after == vec![0, 2], "{after:?}");
        tell("AFTER", "ok");
        ctx.stop();
        Ok(())
    });
}

#[test]
fn a_panicking_task_fails_its_job_with_the_panic_message() {
    let mut driver = spawn_driver(
        "scenario_task_panics",
        &[
            ("EMBER_MASTER", "local-cluster[1,2,512]"),
            ("APP_TEST_CONF_ember_task_maxFailures", "3"),
        ],
    );
    driver.wait_success();
    let failure = driver.value("FAILURE");
    assert!(failure.contains("boom in partition 1"), "{failure}");
    let error = driver.value("ERROR");
    assert!(error.contains("failed 3 times"), "{error}");
    assert_eq!(driver.value("AFTER"), "ok");
}

/// Runs a job, says where the driver is, and waits for the test before stopping.
#[test]
fn scenario_idle() {
    scenario("scenario_idle", || {
        let ctx = scenario_context()?;
        wait_until("the executors", || {
            ctx.num_executors() == expected_executors()
        });
        let pids = ctx.run_job(4, Fn!(|_p: usize| std::process::id()))?;
        let pids: BTreeSet<u32> = pids.into_iter().collect();
        tell_pids(&pids);
        tell(
            "DRIVER_URL",
            format!(
                "ember://{}@{}",
                ember_core::scheduler::messages::DRIVER_ENDPOINT,
                ctx.driver_address()
            ),
        );
        tell("APP_ID", ctx.application_id().unwrap_or_default());
        wait_for_test();
        let sum: usize = ctx.run_job(3, Fn!(|p: usize| p))?.iter().sum();
        ensure!(sum == 3, "the driver still works after the test: {sum}");
        ctx.stop();
        tell("STOPPED", "ok");
        Ok(())
    });
}

/// Starts `exe` as an executor of the driver at `driver_url` (as a worker would, without one).
fn spawn_executor(exe: &Path, driver_url: &str, app_id: &str, envs: &[(&str, &str)]) -> Proc {
    let mut command = std::process::Command::new(exe);
    command
        .args(["--exact", "scenario_idle", "--nocapture"])
        .env_remove(support::SCENARIO_VAR)
        .env_remove("EMBER_AUTHENTICATE_SECRET")
        .env_remove("EMBER_EXECUTOR_OPTS")
        .env("EMBER_EXECUTOR", "1")
        .env("EMBER_DRIVER_URL", driver_url)
        .env("EMBER_EXECUTOR_ID", "77")
        .env("EMBER_EXECUTOR_HOSTNAME", "127.0.0.1")
        .env("EMBER_EXECUTOR_CORES", "1")
        .env("EMBER_APP_ID", app_id)
        .env("EMBER_LOG", "info");
    for (key, value) in envs {
        command.env(key, value);
    }
    Proc::spawn("stray-executor", &mut command)
}

#[test]
fn an_executor_of_another_build_is_refused() {
    // A realistic other build: the same program with different bytes (as after a rebuild).
    let dir = TempDir::new("other-build");
    let other = dir.path().join("other-build");
    let mut bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    bytes.extend_from_slice(b"\0another build");
    std::fs::write(&other, bytes).unwrap();
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let mut driver = spawn_driver(
        "scenario_idle",
        &[("EMBER_MASTER", "local-cluster[1,1,512]")],
    );
    let driver_url = driver.value("DRIVER_URL");
    let app_id = driver.value("APP_ID");
    let mut executor = spawn_executor(&other, &driver_url, &app_id, &[]);
    let status = executor.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", executor.output());
    let said = executor.log();
    assert!(
        said.contains("refused executor 77") && said.contains("runs a different binary"),
        "{}",
        executor.output()
    );
    driver.wait_for_line("runs a different binary than the driver");

    // The driver is unharmed.
    driver.close_stdin();
    driver.wait_success();
    assert_eq!(driver.value("STOPPED"), "ok");
}

#[test]
fn with_authentication_executors_need_the_secret() {
    let mut driver = spawn_driver(
        "scenario_idle",
        &[
            ("EMBER_MASTER", "local-cluster[2,1,1024]"),
            ("APP_TEST_EXECUTORS", "2"),
            ("APP_TEST_SECRET", "correct horse battery staple"),
        ],
    );
    // The job ran on two executors, which got the secret from their workers.
    let pids = pids_of(&mut driver);
    assert!(!pids.contains(&driver.pid()), "{pids:?}");
    let driver_url = driver.value("DRIVER_URL");
    let app_id = driver.value("APP_ID");
    let exe = std::env::current_exe().unwrap();

    // Without authentication: the driver refuses the connection.
    let mut executor = spawn_executor(&exe, &driver_url, &app_id, &[]);
    assert_eq!(
        executor.wait_exit().code(),
        Some(1),
        "{}",
        executor.output()
    );
    let said = executor.log();
    assert!(
        said.contains("refused executor 77") && said.contains("authenticat"),
        "{}",
        executor.output()
    );

    // With a wrong secret: refused too.
    let mut executor = spawn_executor(
        &exe,
        &driver_url,
        &app_id,
        &[
            ("EMBER_EXECUTOR_OPTS", "-Dember.authenticate=true"),
            ("EMBER_AUTHENTICATE_SECRET", "wrong"),
        ],
    );
    assert_eq!(
        executor.wait_exit().code(),
        Some(1),
        "{}",
        executor.output()
    );
    let said = executor.log();
    assert!(
        said.contains("refused executor 77") && said.contains("authenticat"),
        "{}",
        executor.output()
    );

    driver.close_stdin();
    driver.wait_success();
    assert_eq!(driver.value("STOPPED"), "ok");
}

/// A job of slow tasks, long enough for the console progress bar to show.
#[test]
fn scenario_progress() {
    scenario("scenario_progress", || {
        let ctx = scenario_context()?;
        let done = ctx.run_job(
            6,
            Fn!(|p: usize| {
                std::thread::sleep(std::time::Duration::from_millis(400));
                p
            }),
        )?;
        ensure!(done == (0..6).collect::<Vec<_>>(), "{done:?}");
        tell("DONE", "ok");
        ctx.stop();
        Ok(())
    });
}

const PROGRESS_ENV: [(&str, &str); 4] = [
    ("EMBER_MASTER", "local[2]"),
    ("APP_TEST_CONF_ember_ui_showConsoleProgress", "true"),
    ("EMBER_LOG", "warn"),
    ("COLUMNS", "100"),
];

#[test]
fn the_progress_bar_shows_on_a_terminal_only() {
    // stderr is a pipe here: no bar.
    let mut piped = spawn_driver("scenario_progress", &PROGRESS_ENV);
    piped.wait_success();
    assert_eq!(piped.value("DONE"), "ok");
    assert!(!piped.output().contains("[Stage"), "{}", piped.output());

    // On a terminal (`script` gives the driver a pseudo-terminal), Spark's bar.
    let exe = std::env::current_exe().unwrap();
    let command_line = format!(
        "'{}' --exact scenario_progress --nocapture --test-threads=1",
        exe.display()
    );
    let mut script = std::process::Command::new("script");
    support::hermetic(&mut script)
        .args(["-qefc", &command_line, "/dev/null"])
        .env(support::SCENARIO_VAR, "scenario_progress")
        .envs(PROGRESS_ENV);
    let mut terminal = Proc::spawn("driver-on-a-terminal", &mut script);
    terminal.wait_success();
    let output = terminal.output();
    assert!(output.contains("DONE ok"), "{output}");
    assert!(output.contains("[Stage 0:"), "{output}");
    assert!(output.contains("/ 6]"), "{output}");
}
