//! The ExecutorRunner: gets the application binary, starts one executor process and watches it.
//!
//! Spark counterpart: `ExecutorRunner` (`fetchAndRunExecutor`, `killProcess`). The runner is a
//! task; it reports every state change to the worker endpoint as
//! [`WorkerInternal::ExecutorStateChanged`]:
//!
//! ```text
//!   LAUNCHING ──binary cached, process started──▶ RUNNING ──process exited──▶ EXITED
//!       │                                            │      ("Command exited with code N")
//!       ├──bad binary / digest mismatch / spawn error──▶ FAILED (the message says which)
//!       └──killed before the process started──▶ KILLED ◀──killed: SIGTERM, SIGKILL after the
//!                                                          grace period──┘
//! ```
//!
//! The process runs in the executor's directory `<work dir>/<app id>/<exec id>` with its output
//! appended to `stdout` and `stderr` there (`stderr` starts with an `Ember Executor Command:`
//! header). Besides the command's own (substituted) environment it gets
//! `EMBER_LOG_URL_STDOUT`/`EMBER_LOG_URL_STDERR` (its log pages on the worker UI),
//! `EMBER_EXECUTOR_DIRS` (the application's scratch directory on this worker, deleted when the
//! application finishes) and the worker's own [`child_env`](super::command::RunnerContext)
//! (`EMBER_AUTHENTICATE_SECRET` when `ember.authenticate` is on).

use std::path::PathBuf;
use std::time::Duration;

use tracing::{info, warn};

use super::command::{RunnerContext, RunnerHandle, Substitutions, write_header};
use super::process::stop_process;
use crate::description::ApplicationDescription;
use crate::ids::{AppId, ExecutorId};
use crate::messages::WorkerInternal;
use crate::state::ExecutorState;

/// Environment variable: the application's scratch directory on this worker.
pub const ENV_EXECUTOR_DIRS: &str = "EMBER_EXECUTOR_DIRS";

/// Everything one executor is started with.
#[derive(Debug, Clone)]
pub struct ExecutorLaunch {
    /// Its application.
    pub app_id: AppId,
    /// Its id.
    pub exec_id: ExecutorId,
    /// The application's description (its command).
    pub app_desc: ApplicationDescription,
    /// Cores granted.
    pub cores: u32,
    /// Memory granted, MiB.
    pub memory_mb: u32,
    /// Its directory (created by the endpoint).
    pub dir: PathBuf,
    /// The application's scratch directory.
    pub app_local_dir: PathBuf,
    /// SIGTERM → SIGKILL grace period.
    pub terminate_timeout: Duration,
}

/// Runs the executor until it ends or `handle` kills it. Spawn the returned future.
pub fn run(
    ctx: RunnerContext,
    launch: ExecutorLaunch,
    handle: &RunnerHandle,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let kill = handle.kill_token();
    let done = handle.done_guard();
    async move {
        let _done = done;
        let report = |state: ExecutorState, message: Option<String>, exit_status: Option<i32>| {
            (ctx.report)(WorkerInternal::ExecutorStateChanged {
                app_id: launch.app_id.clone(),
                exec_id: launch.exec_id,
                state,
                message,
                exit_status,
            });
        };
        let command = &launch.app_desc.command;
        report(ExecutorState::Launching, None, None);

        let binary = tokio::select! {
            biased;
            _ = kill.cancelled() => {
                report(ExecutorState::Killed, Some("Killed before it started".into()), None);
                return;
            }
            binary = ctx.cache.get(&command.binary) => binary,
        };
        let binary = match binary {
            Ok(path) => path,
            Err(e) => {
                warn!(app_id = %launch.app_id, exec_id = %launch.exec_id, error = %e,
                    "could not get the application binary");
                let message = format!("could not get the application binary: {e}");
                report(ExecutorState::Failed, Some(message), None);
                return;
            }
        };
        let subs = Substitutions::executor(
            &launch.exec_id.to_string(),
            &ctx.host,
            launch.cores,
            launch.memory_mb,
            launch.app_id.as_str(),
            &ctx.worker_url,
        );
        let scratch = (
            ENV_EXECUTOR_DIRS.to_owned(),
            launch.app_local_dir.display().to_string(),
        );
        let spec = ctx.child_process_spec(
            command,
            &binary,
            &subs,
            vec![scratch],
            &format!("appId={}&executorId={}", launch.app_id, launch.exec_id),
            &launch.dir,
        );
        if let Err(e) = write_header(&spec, "Ember Executor Command") {
            report(ExecutorState::Failed, Some(e.to_string()), None);
            return;
        }
        let mut child = match ctx.launcher.launch(&spec).await {
            Ok(child) => child,
            Err(e) => {
                warn!(app_id = %launch.app_id, exec_id = %launch.exec_id, error = %e,
                    "could not start the executor");
                report(ExecutorState::Failed, Some(e.to_string()), None);
                return;
            }
        };
        info!(app_id = %launch.app_id, exec_id = %launch.exec_id, pid = ?child.pid(),
            command = %super::command::format_command(&spec), "executor started");
        report(ExecutorState::Running, None, None);

        tokio::select! {
            outcome = child.wait() => match outcome {
                Ok(outcome) => {
                    let code = outcome.exit_status();
                    info!(app_id = %launch.app_id, exec_id = %launch.exec_id, code, "executor exited");
                    report(
                        ExecutorState::Exited,
                        Some(format!("Command exited with code {code}")),
                        Some(code),
                    );
                }
                Err(e) => {
                    let _ = child.kill();
                    report(ExecutorState::Failed, Some(format!("could not wait for the process: {e}")), None);
                }
            },
            _ = kill.cancelled() => {
                info!(app_id = %launch.app_id, exec_id = %launch.exec_id, "killing executor");
                let code = match stop_process(child.as_mut(), launch.terminate_timeout).await {
                    Ok(outcome) => Some(outcome.exit_status()),
                    Err(e) => {
                        warn!(app_id = %launch.app_id, exec_id = %launch.exec_id, error = %e,
                            "could not stop the executor");
                        None
                    }
                };
                report(ExecutorState::Killed, Some("Killed by the worker".into()), code);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::description::{AppBinary, Command};
    use crate::worker::command::{ENV_LOG_URL_STDOUT, fixture};

    type Fixture = fixture::Fixture<(ExecutorState, Option<String>, Option<i32>), ExecutorLaunch>;

    async fn fixture(name: &str) -> Fixture {
        Fixture::new(
            "exec-runner",
            name,
            b"not really a binary",
            vec![("EMBER_AUTHENTICATE_SECRET".into(), "s3cret".into())],
            |m| match m {
                WorkerInternal::ExecutorStateChanged {
                    state,
                    message,
                    exit_status,
                    ..
                } => Some((state, message, exit_status)),
                _ => None,
            },
            |dir, binary| {
                std::fs::create_dir_all(dir.join("exec")).unwrap();
                ExecutorLaunch {
                    app_id: "app-1".into(),
                    exec_id: ExecutorId(4),
                    app_desc: ApplicationDescription {
                        name: "pi".into(),
                        max_cores: None,
                        memory_per_executor_mb: 512,
                        cores_per_executor: None,
                        initial_executor_limit: None,
                        command: Command {
                            binary: AppBinary {
                                name: "pi".into(),
                                ..binary
                            },
                            arguments: vec!["--id={{EXECUTOR_ID}}".into(), "{{WORKER_URL}}".into()],
                            environment: vec![("CORES".into(), "{{CORES}}".into())],
                        },
                        app_ui_url: None,
                        user: "me".into(),
                    },
                    cores: 2,
                    memory_mb: 512,
                    dir: dir.join("exec"),
                    app_local_dir: dir.join("local"),
                    terminate_timeout: Duration::from_secs(10),
                }
            },
        )
        .await
    }

    impl Fixture {
        fn states(&self) -> Vec<ExecutorState> {
            self.log.lock().unwrap().iter().map(|e| e.0).collect()
        }
    }

    #[tokio::test]
    async fn reports_launching_running_then_exited_with_the_code() {
        let f = fixture("exit").await;
        assert!(!format!("{:?}", f.ctx).contains("s3cret"), "{:?}", f.ctx);
        let handle = RunnerHandle::new();
        let task = tokio::spawn(run(f.ctx.clone(), f.launch.clone(), &handle));
        let process = f.launcher.wait_for_launches(1).await.remove(0);
        let spec = process.spec();
        assert_eq!(spec.args, vec!["--id=4", "ember://Worker@h1:7078"]);
        assert_eq!(spec.cwd, f.launch.dir);
        let env: std::collections::HashMap<_, _> = spec.env.iter().cloned().collect();
        assert_eq!(env["CORES"], "2");
        assert_eq!(
            env[ENV_LOG_URL_STDOUT],
            "http://h1:8081/logPage/?appId=app-1&executorId=4&logType=stdout"
        );
        assert_eq!(
            env[ENV_EXECUTOR_DIRS],
            f.dir.join("local").display().to_string()
        );
        // The worker's own secret reaches the child through its environment only.
        assert_eq!(env["EMBER_AUTHENTICATE_SECRET"], "s3cret");
        let header = std::fs::read_to_string(f.launch.dir.join("stderr")).unwrap();
        assert!(header.starts_with("Ember Executor Command: \""), "{header}");
        assert!(!header.contains("s3cret"), "{header}");
        process.exit(3);
        task.await.unwrap();
        assert!(handle.is_finished());
        assert_eq!(
            f.log.lock().unwrap().clone(),
            vec![
                (ExecutorState::Launching, None, None),
                (ExecutorState::Running, None, None),
                (
                    ExecutorState::Exited,
                    Some("Command exited with code 3".into()),
                    Some(3)
                ),
            ]
        );
        f.finish().await;
    }

    #[tokio::test]
    async fn kill_sends_sigterm_then_sigkill_after_the_grace_period() {
        let f = fixture("kill").await;
        f.launcher.ignore_sigterm(true);
        let handle = RunnerHandle::new();
        let task = tokio::spawn(run(f.ctx.clone(), f.launch.clone(), &handle));
        let process = f.launcher.wait_for_launches(1).await.remove(0);
        tokio::time::pause();
        let t0 = tokio::time::Instant::now();
        handle.kill();
        handle.finished().await;
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_secs(10) && waited < Duration::from_millis(10_050),
            "{waited:?}"
        );
        task.await.unwrap();
        assert_eq!(process.signals(), vec!["SIGTERM", "SIGKILL"]);
        let last = f.log.lock().unwrap().last().cloned().unwrap();
        assert_eq!(
            last,
            (
                ExecutorState::Killed,
                Some("Killed by the worker".into()),
                Some(137)
            )
        );
        f.finish().await;
    }

    #[tokio::test]
    async fn failures_to_start_say_why() {
        // Wrong digest.
        let mut f = fixture("digest").await;
        f.launch.app_desc.command.binary.digest = "f".repeat(64);
        run(f.ctx.clone(), f.launch.clone(), &RunnerHandle::new()).await;
        let (state, message, _) = f.log.lock().unwrap().last().cloned().unwrap();
        assert_eq!(state, ExecutorState::Failed);
        let message = message.unwrap();
        assert!(
            message.contains("wrong SHA-256") && message.contains(&"f".repeat(64)),
            "{message}"
        );
        assert!(f.launcher.launched().is_empty());
        f.finish().await;

        // Spawn error.
        let f = fixture("spawn").await;
        f.launcher.fail_next_launch("exec format error");
        run(f.ctx.clone(), f.launch.clone(), &RunnerHandle::new()).await;
        assert_eq!(
            f.states(),
            vec![ExecutorState::Launching, ExecutorState::Failed]
        );
        let message = f.log.lock().unwrap()[1].1.clone().unwrap();
        assert!(
            message.contains("could not start") && message.contains("exec format error"),
            "{message}"
        );
        f.finish().await;

        // Killed before it started.
        let f = fixture("early-kill").await;
        let handle = RunnerHandle::new();
        handle.kill();
        run(f.ctx.clone(), f.launch.clone(), &handle).await;
        assert_eq!(
            f.states(),
            vec![ExecutorState::Launching, ExecutorState::Killed]
        );
        f.finish().await;
    }
}
