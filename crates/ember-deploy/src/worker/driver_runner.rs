//! The DriverRunner: runs a driver submitted in cluster deploy mode, restarting it if supervised.
//!
//! Spark counterpart: `DriverRunner` (`prepareAndRunDriver`, `runCommandWithRetry`, `kill`). The
//! driver runs in `<work dir>/<driver id>` with its output appended to `stdout`/`stderr` there.
//! Only the final state is reported, as [`WorkerInternal::DriverStateChanged`]:
//!
//! ```text
//!   start ──binary cached, process started──▶ running ──exit 0──────────────────▶ FINISHED
//!     │                                         │ ├──exit ≠ 0, not supervised──────▶ FAILED
//!     │                                         │ └──exit ≠ 0, supervised: wait 1 s, 2 s, 4 s, …
//!     │                                         │      (back to 1 s after a run longer than 5 s),
//!     │                                         │      then start again
//!     │                                         └──killed (also while waiting)─────▶ KILLED
//!     └──bad binary / digest mismatch / spawn error──────────────────────────────────▶ ERROR
//! ```

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::command::{
    RunnerContext, RunnerHandle, Substitutions, log_url_base, process_spec, write_header,
};
use super::process::stop_process;
use crate::description::DriverDescription;
use crate::ids::DriverId;
use crate::messages::WorkerInternal;
use crate::state::DriverState;

/// A run longer than this resets the restart backoff.
pub const SUCCESSFUL_RUN: Duration = Duration::from_secs(5);
/// The first restart delay; it doubles after each quick failure.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);

/// Everything one driver is started with.
#[derive(Debug, Clone)]
pub struct DriverLaunch {
    /// Its id.
    pub driver_id: DriverId,
    /// What to run.
    pub desc: DriverDescription,
    /// Its directory (created by the endpoint).
    pub dir: PathBuf,
    /// SIGTERM → SIGKILL grace period.
    pub terminate_timeout: Duration,
}

/// Runs the driver until it ends for good or `handle` kills it. Spawn the returned future.
pub fn run(
    ctx: RunnerContext,
    launch: DriverLaunch,
    handle: &RunnerHandle,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let kill = handle.kill_token();
    let done = handle.done_guard();
    async move {
        let _done = done;
        let (state, exception) = supervise(&ctx, &launch, &kill).await;
        info!(driver_id = %launch.driver_id, %state, ?exception, "driver finished");
        (ctx.report)(WorkerInternal::DriverStateChanged {
            driver_id: launch.driver_id.clone(),
            state,
            exception,
        });
    }
}

async fn supervise(
    ctx: &RunnerContext,
    launch: &DriverLaunch,
    kill: &tokio_util::sync::CancellationToken,
) -> (DriverState, Option<String>) {
    let command = &launch.desc.command;
    let binary = tokio::select! {
        biased;
        _ = kill.cancelled() => return (DriverState::Killed, None),
        binary = ctx.cache.get(&command.binary) => binary,
    };
    let binary = match binary {
        Ok(path) => path,
        Err(e) => {
            return (
                DriverState::Error,
                Some(format!("could not get the driver binary: {e}")),
            );
        }
    };
    let subs = Substitutions::driver(
        &ctx.host,
        launch.desc.cores,
        launch.desc.mem_mb,
        &ctx.worker_url,
    );
    let logs = log_url_base(&ctx.web_ui_url, &format!("driverId={}", launch.driver_id));
    let mut extra_env = vec![
        ("EMBER_LOG_URL_STDOUT".to_owned(), format!("{logs}stdout")),
        ("EMBER_LOG_URL_STDERR".to_owned(), format!("{logs}stderr")),
    ];
    extra_env.extend(ctx.child_env.iter().cloned());
    let spec = process_spec(command, &binary, &subs, extra_env, &launch.dir);
    let mut backoff = INITIAL_BACKOFF;
    loop {
        if let Err(e) = write_header(&spec, "Launch Command") {
            return (DriverState::Error, Some(e.to_string()));
        }
        let started = Instant::now();
        let mut child = match ctx.launcher.launch(&spec).await {
            Ok(child) => child,
            Err(e) => return (DriverState::Error, Some(e.to_string())),
        };
        info!(driver_id = %launch.driver_id, pid = ?child.pid(), "driver started");
        let outcome = tokio::select! {
            outcome = child.wait() => outcome,
            _ = kill.cancelled() => {
                if let Err(e) = stop_process(child.as_mut(), launch.terminate_timeout).await {
                    warn!(driver_id = %launch.driver_id, error = %e, "could not stop the driver");
                }
                return (DriverState::Killed, None);
            }
        };
        let code = match outcome {
            Ok(outcome) if outcome.success() => return (DriverState::Finished, None),
            Ok(outcome) => outcome.exit_status(),
            Err(e) => {
                let _ = child.kill();
                return (
                    DriverState::Error,
                    Some(format!("could not wait for the driver process: {e}")),
                );
            }
        };
        if !launch.desc.supervise {
            return (DriverState::Failed, None);
        }
        if started.elapsed() > SUCCESSFUL_RUN {
            backoff = INITIAL_BACKOFF;
        }
        warn!(driver_id = %launch.driver_id, code, delay = ?backoff,
            "supervised driver exited with a non-zero code; restarting it");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = kill.cancelled() => return (DriverState::Killed, None),
        }
        backoff *= 2;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::description::{AppBinary, BinaryLocation, Command};
    use crate::file_server::digest_file;
    use crate::worker::app_cache::AppCache;
    use crate::worker::process::InMemoryLauncher;

    type Log = Arc<Mutex<Vec<(DriverState, Option<String>)>>>;

    struct Fixture {
        dir: PathBuf,
        ctx: RunnerContext,
        launcher: InMemoryLauncher,
        log: Log,
        launch: DriverLaunch,
        env: ember_rpc::RpcEnv,
    }

    async fn fixture(name: &str, supervise: bool) -> Fixture {
        let dir = std::env::temp_dir().join(format!(
            "ember-driver-runner-{name}-{}-{}",
            std::process::id(),
            crate::ids::now_millis()
        ));
        std::fs::create_dir_all(dir.join("driver")).unwrap();
        let binary_path = dir.join("app");
        std::fs::write(&binary_path, b"driver").unwrap();
        let (digest, size) = digest_file(&binary_path).unwrap();
        let env = ember_rpc::RpcEnv::create(ember_rpc::RpcEnvConfig::new("t", "127.0.0.1", 0))
            .await
            .unwrap();
        let log: Log = Arc::default();
        let sink = log.clone();
        let launcher = InMemoryLauncher::new();
        let ctx = RunnerContext {
            report: Arc::new(move |m| {
                if let WorkerInternal::DriverStateChanged {
                    state, exception, ..
                } = m
                {
                    sink.lock().unwrap().push((state, exception));
                }
            }),
            cache: Arc::new(AppCache::new(env.clone(), dir.join("cache"))),
            launcher: Arc::new(launcher.clone()),
            host: "h1".into(),
            worker_url: "ember://Worker@h1:7078".into(),
            web_ui_url: "http://h1:8081".into(),
            child_env: Vec::new(),
        };
        let launch = DriverLaunch {
            driver_id: "driver-1".into(),
            desc: DriverDescription {
                mem_mb: 1024,
                cores: 1,
                supervise,
                command: Command {
                    binary: AppBinary {
                        name: "app".into(),
                        digest,
                        size,
                        location: BinaryLocation::LocalPath(binary_path.display().to_string()),
                    },
                    arguments: vec!["{{WORKER_URL}}".into(), "{{MEMORY_MB}}".into()],
                    environment: vec![],
                },
            },
            dir: dir.join("driver"),
            terminate_timeout: Duration::from_secs(10),
        };
        Fixture {
            dir,
            ctx,
            launcher,
            log,
            launch,
            env,
        }
    }

    impl Fixture {
        fn start(&self) -> RunnerHandle {
            let handle = RunnerHandle::new();
            tokio::spawn(run(self.ctx.clone(), self.launch.clone(), &handle));
            handle
        }
        fn final_state(&self) -> Vec<(DriverState, Option<String>)> {
            self.log.lock().unwrap().clone()
        }
        async fn finish(self) {
            self.env.shutdown().await;
            std::fs::remove_dir_all(&self.dir).unwrap();
        }
    }

    // Spark parity: DriverRunner.runCommandWithRetry (1 s doubling, reset after a > 5 s run).
    #[tokio::test]
    async fn supervised_driver_restarts_with_exponential_backoff() {
        let f = fixture("backoff", true).await;
        let handle = f.start();
        let first = f.launcher.wait_for_launches(1).await.remove(0);
        assert_eq!(first.spec().args, vec!["ember://Worker@h1:7078", "1024"]);
        tokio::time::pause();
        let t0 = Instant::now();
        let mut starts = Vec::new();
        first.exit(1);
        for n in 2..=4 {
            let p = f.launcher.wait_for_launches(n).await.pop().unwrap();
            starts.push(t0.elapsed());
            p.exit(1);
        }
        // 1 s, then 2 s, then 4 s after each quick failure (tokio's timer adds up to 1 ms).
        let secs: Vec<u64> = starts
            .iter()
            .map(|d| d.as_millis() as u64 / 10 * 10)
            .collect();
        assert_eq!(secs, vec![1000, 3000, 7000], "{starts:?}");
        // A run longer than 5 s resets the delay to 1 s.
        let p = f.launcher.wait_for_launches(5).await.pop().unwrap();
        let started = t0.elapsed();
        tokio::time::sleep(Duration::from_secs(6)).await;
        p.exit(2);
        let p = f.launcher.wait_for_launches(6).await.pop().unwrap();
        let gap = t0.elapsed() - started;
        assert!(
            gap >= Duration::from_secs(7) && gap < Duration::from_millis(7050),
            "{gap:?}"
        );
        // Killed while running: no restart, KILLED.
        handle.kill();
        handle.finished().await;
        assert_eq!(p.signals(), vec!["SIGTERM"]);
        assert_eq!(f.launcher.launched().len(), 6);
        assert_eq!(f.final_state(), vec![(DriverState::Killed, None)]);
        f.finish().await;
    }

    #[tokio::test]
    async fn kill_during_the_backoff_wait_stops_restarts() {
        let f = fixture("kill-wait", true).await;
        let handle = f.start();
        let p = f.launcher.wait_for_launches(1).await.remove(0);
        p.exit(1);
        // Let the runner reach its backoff sleep (time is not paused here), then kill.
        tokio::task::yield_now().await;
        handle.kill();
        handle.finished().await;
        assert_eq!(f.launcher.launched().len(), 1);
        assert_eq!(f.final_state(), vec![(DriverState::Killed, None)]);
        f.finish().await;
    }

    #[tokio::test]
    async fn final_states() {
        // exit 0 → FINISHED.
        let f = fixture("finished", true).await;
        let handle = f.start();
        f.launcher.wait_for_launches(1).await[0].exit(0);
        handle.finished().await;
        assert_eq!(f.final_state(), vec![(DriverState::Finished, None)]);
        f.finish().await;

        // exit ≠ 0 without supervision → FAILED.
        let f = fixture("failed", false).await;
        let handle = f.start();
        f.launcher.wait_for_launches(1).await[0].exit(1);
        handle.finished().await;
        assert_eq!(f.final_state(), vec![(DriverState::Failed, None)]);
        f.finish().await;

        // Could not start → ERROR with the reason.
        let f = fixture("error", true).await;
        f.launcher.fail_next_launch("permission denied");
        let handle = f.start();
        handle.finished().await;
        let (state, exception) = f.final_state().remove(0);
        assert_eq!(state, DriverState::Error);
        assert!(exception.unwrap().contains("permission denied"));
        f.finish().await;

        // Bad binary → ERROR naming the digests.
        let mut f = fixture("digest", true).await;
        f.launch.desc.command.binary.digest = "a".repeat(64);
        let handle = f.start();
        handle.finished().await;
        let (state, exception) = f.final_state().remove(0);
        assert_eq!(state, DriverState::Error);
        assert!(exception.unwrap().contains(&"a".repeat(64)));
        f.finish().await;
    }
}
