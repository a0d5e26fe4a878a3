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

use super::command::{RunnerContext, RunnerHandle, Substitutions, write_header};
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
    let spec = ctx.child_process_spec(
        command,
        &binary,
        &subs,
        Vec::new(),
        &format!("driverId={}", launch.driver_id),
        &launch.dir,
    );
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
    use super::*;
    use crate::description::Command;
    use crate::worker::command::fixture;

    type Fixture = fixture::Fixture<(DriverState, Option<String>), DriverLaunch>;

    async fn fixture(name: &str, supervise: bool) -> Fixture {
        Fixture::new(
            "driver-runner",
            name,
            b"driver",
            Vec::new(),
            |m| match m {
                WorkerInternal::DriverStateChanged {
                    state, exception, ..
                } => Some((state, exception)),
                _ => None,
            },
            |dir, binary| {
                std::fs::create_dir_all(dir.join("driver")).unwrap();
                DriverLaunch {
                    driver_id: "driver-1".into(),
                    desc: DriverDescription {
                        mem_mb: 1024,
                        cores: 1,
                        supervise,
                        command: Command {
                            binary,
                            arguments: vec!["{{WORKER_URL}}".into(), "{{MEMORY_MB}}".into()],
                            environment: vec![],
                        },
                    },
                    dir: dir.join("driver"),
                    terminate_timeout: Duration::from_secs(10),
                }
            },
        )
        .await
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
