//! Starting and stopping child processes: a small [`ProcessLauncher`] seam with the real
//! implementation ([`OsProcessLauncher`], on `tokio::process`) and an in-memory one beside it
//! ([`InMemoryLauncher`]) for tests that control exits and time.
//!
//! Spark counterpart: the `ProcessBuilder` use in `ExecutorRunner`/`DriverRunner` and
//! `Utils.terminateProcess` (destroy, wait, destroy forcibly). Stopping is SIGTERM, then SIGKILL
//! after a grace period ([`stop_process`]). Output goes straight from the child to its `stdout`
//! and `stderr` files (opened in append mode), so the worker copies no bytes.

use std::collections::VecDeque;
use std::fmt;
use std::fs::OpenOptions;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::error::DeployError;

/// A boxed, sendable future (the trait below must stay object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The executable.
    pub program: PathBuf,
    /// `argv[0]` as the child sees it (and `ps` shows it), when it should differ from `program`.
    pub arg0: Option<String>,
    /// The arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Environment variables added to (or replacing in) the worker's environment.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: PathBuf,
    /// File the child's standard output is appended to.
    pub stdout: PathBuf,
    /// File the child's standard error is appended to.
    pub stderr: PathBuf,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitOutcome {
    /// It exited with this status.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

impl ExitOutcome {
    /// The exit status as a shell reports it: the code, or 128 + the signal number.
    pub fn exit_status(self) -> i32 {
        match self {
            ExitOutcome::Code(code) => code,
            ExitOutcome::Signal(signal) => 128 + signal,
        }
    }

    /// Whether it exited with status 0.
    pub fn success(self) -> bool {
        self == ExitOutcome::Code(0)
    }
}

impl From<std::process::ExitStatus> for ExitOutcome {
    fn from(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitOutcome::Code(code),
            (None, Some(signal)) => ExitOutcome::Signal(signal),
            (None, None) => ExitOutcome::Code(-1),
        }
    }
}

/// Starts processes.
pub trait ProcessLauncher: Send + Sync + fmt::Debug + 'static {
    /// Starts `spec`. Fails with [`DeployError::Spawn`] (or [`DeployError::Io`] for the output
    /// files) when the process cannot be started.
    fn launch<'a>(
        &'a self,
        spec: &'a ProcessSpec,
    ) -> BoxFuture<'a, Result<Box<dyn ChildProcess>, DeployError>>;
}

/// A started process.
pub trait ChildProcess: Send + fmt::Debug {
    /// Its process id, while it has not been reaped.
    fn pid(&self) -> Option<u32>;
    /// Waits for it to end. Cancel-safe.
    fn wait(&mut self) -> BoxFuture<'_, io::Result<ExitOutcome>>;
    /// Asks it to stop (SIGTERM). A process that already ended is not an error.
    fn terminate(&mut self) -> io::Result<()>;
    /// Ends it (SIGKILL). A process that already ended is not an error.
    fn kill(&mut self) -> io::Result<()>;
}

/// SIGTERM, then SIGKILL if it has not ended after `grace`; returns how it ended.
pub async fn stop_process(
    child: &mut dyn ChildProcess,
    grace: Duration,
) -> io::Result<ExitOutcome> {
    child.terminate()?;
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(outcome) => outcome,
        Err(_) => {
            tracing::warn!(pid = ?child.pid(), ?grace, "process ignored SIGTERM; sending SIGKILL");
            child.kill()?;
            child.wait().await
        }
    }
}

/// The real launcher: `tokio::process`, output appended to files.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsProcessLauncher;

/// `ETXTBSY`: exec of a file another process still has open for writing.
const TEXT_FILE_BUSY: i32 = 26;

impl ProcessLauncher for OsProcessLauncher {
    fn launch<'a>(
        &'a self,
        spec: &'a ProcessSpec,
    ) -> BoxFuture<'a, Result<Box<dyn ChildProcess>, DeployError>> {
        Box::pin(async move {
            // A freshly written binary can be briefly "busy": a child forked elsewhere in this
            // process between our write and our close holds the write descriptor until it execs.
            let mut delay = Duration::from_millis(5);
            for attempt in 1.. {
                match spawn(spec) {
                    Err(DeployError::Spawn { source, .. })
                        if source.raw_os_error() == Some(TEXT_FILE_BUSY) && attempt < 8 =>
                    {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    other => return other,
                }
            }
            unreachable!("the loop returns")
        })
    }
}

fn spawn(spec: &ProcessSpec) -> Result<Box<dyn ChildProcess>, DeployError> {
    let open = |path: &PathBuf| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| DeployError::Io {
                action: "open",
                path: path.clone(),
                source,
            })
    };
    let stdout = open(&spec.stdout)?;
    let stderr = open(&spec.stderr)?;
    let mut command = tokio::process::Command::new(&spec.program);
    if let Some(arg0) = &spec.arg0 {
        command.arg0(arg0);
    }
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        // A runner that is dropped without stopping its child (a bug, or a panic) still kills it.
        .kill_on_drop(true);
    let child = command.spawn().map_err(|source| DeployError::Spawn {
        program: spec.program.clone(),
        source,
    })?;
    Ok(Box::new(OsChild { child }))
}

#[derive(Debug)]
struct OsChild {
    child: tokio::process::Child,
}

impl OsChild {
    fn signal(&self, signal: Signal) -> io::Result<()> {
        // `id()` is None once the exit status was collected: the pid may have been reused.
        let Some(pid) = self.child.id() else {
            return Ok(());
        };
        let pid = i32::try_from(pid).map_err(io::Error::other)?;
        match kill(Pid::from_raw(pid), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(errno) => Err(io::Error::from(errno)),
        }
    }
}

impl ChildProcess for OsChild {
    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    fn wait(&mut self) -> BoxFuture<'_, io::Result<ExitOutcome>> {
        Box::pin(async move { self.child.wait().await.map(ExitOutcome::from) })
    }

    fn terminate(&mut self) -> io::Result<()> {
        self.signal(Signal::SIGTERM)
    }

    fn kill(&mut self) -> io::Result<()> {
        self.signal(Signal::SIGKILL)
    }
}

/// An in-memory launcher for tests: records what it was asked to start and lets the test end
/// each "process" ([`FakeProcess::exit`]); SIGTERM ends it unless told to ignore it.
#[derive(Debug, Clone, Default)]
pub struct InMemoryLauncher {
    shared: Arc<LauncherShared>,
}

#[derive(Debug, Default)]
struct LauncherShared {
    state: Mutex<LauncherState>,
    launches: watch::Sender<usize>,
}

#[derive(Debug, Default)]
struct LauncherState {
    processes: Vec<FakeProcess>,
    failures: VecDeque<String>,
    ignore_sigterm: bool,
}

impl InMemoryLauncher {
    /// A launcher whose processes run until ended.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next launch fail with `message` (as a spawn error).
    pub fn fail_next_launch(&self, message: impl Into<String>) {
        self.lock().failures.push_back(message.into());
    }

    /// Makes processes started from now on ignore SIGTERM (only SIGKILL ends them).
    pub fn ignore_sigterm(&self, ignore: bool) {
        self.lock().ignore_sigterm = ignore;
    }

    /// Every process started so far, in order.
    pub fn launched(&self) -> Vec<FakeProcess> {
        self.lock().processes.clone()
    }

    /// Waits until at least `n` processes have been started; returns them.
    pub async fn wait_for_launches(&self, n: usize) -> Vec<FakeProcess> {
        let mut rx = self.shared.launches.subscribe();
        let _ = rx.wait_for(|count| *count >= n).await;
        self.launched()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LauncherState> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ProcessLauncher for InMemoryLauncher {
    fn launch<'a>(
        &'a self,
        spec: &'a ProcessSpec,
    ) -> BoxFuture<'a, Result<Box<dyn ChildProcess>, DeployError>> {
        Box::pin(async move {
            let mut state = self.lock();
            if let Some(message) = state.failures.pop_front() {
                return Err(DeployError::Spawn {
                    program: spec.program.clone(),
                    source: io::Error::other(message),
                });
            }
            let pid = 100_000 + state.processes.len() as u32;
            let (exit, _) = watch::channel(None);
            let process = FakeProcess {
                inner: Arc::new(FakeInner {
                    spec: spec.clone(),
                    pid,
                    exit,
                    ignore_sigterm: state.ignore_sigterm,
                    signals: Mutex::new(Vec::new()),
                }),
            };
            state.processes.push(process.clone());
            let count = state.processes.len();
            drop(state);
            self.shared.launches.send_replace(count);
            Ok(Box::new(FakeChild {
                process,
                reaped: false,
            }) as Box<dyn ChildProcess>)
        })
    }
}

/// A process started by an [`InMemoryLauncher`], seen from the test.
#[derive(Debug, Clone)]
pub struct FakeProcess {
    inner: Arc<FakeInner>,
}

#[derive(Debug)]
struct FakeInner {
    spec: ProcessSpec,
    pid: u32,
    exit: watch::Sender<Option<ExitOutcome>>,
    ignore_sigterm: bool,
    signals: Mutex<Vec<&'static str>>,
}

impl FakeProcess {
    /// What it was started with.
    pub fn spec(&self) -> &ProcessSpec {
        &self.inner.spec
    }

    /// Its (made-up) pid.
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// Ends it with exit status `code` (no effect if it already ended).
    pub fn exit(&self, code: i32) {
        self.end(ExitOutcome::Code(code));
    }

    /// Whether it has not ended yet.
    pub fn is_running(&self) -> bool {
        self.inner.exit.borrow().is_none()
    }

    /// The signals it received, in order (`"SIGTERM"`, `"SIGKILL"`).
    pub fn signals(&self) -> Vec<&'static str> {
        self.inner
            .signals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn end(&self, outcome: ExitOutcome) {
        self.inner.exit.send_if_modified(|state| {
            if state.is_none() {
                *state = Some(outcome);
                true
            } else {
                false
            }
        });
    }

    fn record(&self, signal: &'static str) {
        self.inner
            .signals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(signal);
    }
}

#[derive(Debug)]
struct FakeChild {
    process: FakeProcess,
    reaped: bool,
}

impl ChildProcess for FakeChild {
    fn pid(&self) -> Option<u32> {
        (!self.reaped).then_some(self.process.inner.pid)
    }

    fn wait(&mut self) -> BoxFuture<'_, io::Result<ExitOutcome>> {
        Box::pin(async move {
            let mut rx = self.process.inner.exit.subscribe();
            let outcome = rx
                .wait_for(Option::is_some)
                .await
                .map_err(io::Error::other)?
                .expect("waited for Some");
            self.reaped = true;
            Ok(outcome)
        })
    }

    fn terminate(&mut self) -> io::Result<()> {
        if self.process.is_running() {
            self.process.record("SIGTERM");
            if !self.process.inner.ignore_sigterm {
                self.process.end(ExitOutcome::Signal(15));
            }
        }
        Ok(())
    }

    fn kill(&mut self) -> io::Result<()> {
        if self.process.is_running() {
            self.process.record("SIGKILL");
            self.process.end(ExitOutcome::Signal(9));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &std::path::Path, script: &str) -> ProcessSpec {
        ProcessSpec {
            program: "/bin/sh".into(),
            arg0: Some("my-app".into()),
            args: vec!["-c".into(), script.into()],
            env: vec![("GREETING".into(), "hello".into())],
            cwd: dir.to_path_buf(),
            stdout: dir.join("stdout"),
            stderr: dir.join("stderr"),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ember-process-{name}-{}-{}",
            std::process::id(),
            crate::ids::now_millis()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn os_launcher_runs_with_env_cwd_and_appends_output() {
        let dir = temp_dir("run");
        std::fs::write(dir.join("stdout"), "before\n").unwrap();
        let spec = spec(&dir, "echo \"$GREETING $0 $(pwd)\"; echo oops >&2; exit 3");
        let mut child = OsProcessLauncher.launch(&spec).await.unwrap();
        assert!(child.pid().is_some());
        assert_eq!(child.wait().await.unwrap(), ExitOutcome::Code(3));
        assert_eq!(child.pid(), None);
        let out = std::fs::read_to_string(dir.join("stdout")).unwrap();
        assert_eq!(out, format!("before\nhello my-app {}\n", dir.display()));
        assert_eq!(
            std::fs::read_to_string(dir.join("stderr")).unwrap(),
            "oops\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn stop_process_escalates_to_sigkill() {
        let dir = temp_dir("stop");
        // Polite: SIGTERM ends it.
        let mut child = OsProcessLauncher
            .launch(&spec(&dir, "exec sleep 30"))
            .await
            .unwrap();
        let outcome = stop_process(child.as_mut(), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(outcome, ExitOutcome::Signal(15));
        assert_eq!(outcome.exit_status(), 143);
        // Stubborn: traps SIGTERM, so SIGKILL after the grace period. The trap is set before
        // the script says so on stdout, which we wait for.
        let mut child = OsProcessLauncher
            .launch(&spec(
                &dir,
                "trap '' TERM; echo ready; while :; do sleep 1; done",
            ))
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(dir.join("stdout"))
            .unwrap_or_default()
            .contains("ready")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "script never got ready"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let outcome = stop_process(child.as_mut(), Duration::from_millis(100))
            .await
            .unwrap();
        assert_eq!(outcome, ExitOutcome::Signal(9));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn os_launcher_reports_what_could_not_start() {
        let dir = temp_dir("missing");
        let mut s = spec(&dir, "");
        s.program = dir.join("no-such-binary");
        let err = OsProcessLauncher.launch(&s).await.unwrap_err();
        assert!(err.to_string().contains("no-such-binary"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn in_memory_launcher_is_driven_by_the_test() {
        let launcher = InMemoryLauncher::new();
        let s = spec(std::path::Path::new("/nowhere"), "");
        launcher.fail_next_launch("no such file");
        let err = launcher.launch(&s).await.unwrap_err();
        assert!(err.to_string().contains("no such file"), "{err}");

        let mut child = launcher.launch(&s).await.unwrap();
        let fake = launcher.wait_for_launches(1).await.remove(0);
        assert_eq!(fake.spec(), &s);
        fake.exit(7);
        assert_eq!(child.wait().await.unwrap(), ExitOutcome::Code(7));

        launcher.ignore_sigterm(true);
        let mut child = launcher.launch(&s).await.unwrap();
        tokio::time::pause();
        let outcome = stop_process(child.as_mut(), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(outcome, ExitOutcome::Signal(9));
        assert_eq!(launcher.launched()[1].signals(), vec!["SIGTERM", "SIGKILL"]);
    }
}
