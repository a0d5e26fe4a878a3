//! [`Proc`]: a child process killed, with everything it started, when its guard drops.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::{DEADLINE, TempDir, ember_bin, eventually, hermetic};

/// A child process started in a process group of its own, so that what it starts (a worker's or
/// a local-cluster driver's executors) goes with it. Dropping the guard — also when the test
/// panics — kills the whole group (SIGCONT first, in case a test stopped it, then SIGKILL), reaps
/// the child and, if the test is failing, prints what the process wrote.
///
/// Its stdout and stderr go to files in a directory of its own: [`log`](Self::log) is stderr
/// (where Ember logs), [`value`](Self::value) reads what a scenario [`tell`](super::tell)s the
/// test on stdout. Its stdin is a pipe the test holds until [`close_stdin`](Self::close_stdin).
///
/// A run interrupted with Ctrl-C skips the guards; the processes, in groups of their own, do not
/// get the terminal's SIGINT and may be left behind.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    status: Option<ExitStatus>,
    stdout: PathBuf,
    stderr: PathBuf,
    /// Holds the two files; removed after the process is killed.
    _files: TempDir,
}

impl Proc {
    /// Starts `command` in a process group of its own, its output going to files.
    pub fn spawn(name: &str, command: &mut Command) -> Proc {
        let files = TempDir::new(name);
        let (stdout, stderr) = (files.join("stdout"), files.join("stderr"));
        let create = |path: &Path| File::create(path).expect("create a log file");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(create(&stdout))
            .stderr(create(&stderr))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            status: None,
            stdout,
            stderr,
            _files: files,
        }
    }

    /// Starts `ember <args>` in `cwd`, [`hermetic`] but for `envs`.
    pub fn ember(name: &str, cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let mut command = Command::new(ember_bin());
        hermetic(&mut command)
            .args(args)
            .envs(envs.iter().copied())
            .current_dir(cwd);
        Proc::spawn(name, &mut command)
    }

    /// Its name in the test.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process only (not its group).
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal)
            .unwrap_or_else(|e| panic!("send {signal} to {}: {e}", self.name));
    }

    /// Closes its stdin (a scenario waiting in [`wait_for_test`](super::wait_for_test) goes on).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Everything it wrote to stderr so far: its log.
    pub fn log(&self) -> String {
        read(&self.stderr)
    }

    /// Everything it wrote, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            read(&self.stdout),
            self.name,
            self.log()
        )
    }

    /// Waits for a line of its log containing `needle` and returns it; fails early if the process
    /// exits first.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let stderr = self.stderr.clone();
        self.wait_for(&stderr, &format!("a log line containing {needle:?}"), |l| {
            l.contains(needle).then(|| l.to_owned())
        })
    }

    /// Waits for the line `key value` on its stdout (see [`tell`](super::tell)) and returns the
    /// value; fails early if the process exits first.
    pub fn value(&mut self, key: &str) -> String {
        let prefix = format!("{key} ");
        let stdout = self.stdout.clone();
        self.wait_for(&stdout, &format!("the line {key:?}"), |l| {
            l.strip_prefix(&prefix).map(str::to_owned)
        })
    }

    fn wait_for(
        &mut self,
        file: &Path,
        what: &str,
        find: impl Fn(&str) -> Option<String>,
    ) -> String {
        eventually(DEADLINE, &format!("{} to write {what}", self.name), || {
            // Checked before reading: once it has exited, the file is complete.
            let exited = self.try_exit();
            let text = read(file);
            // While it runs, the last line may be half written.
            let whole = match exited {
                Some(_) => &text[..],
                None => &text[..text.rfind('\n').map_or(0, |end| end + 1)],
            };
            if let Some(found) = whole.lines().find_map(&find) {
                return Some(found);
            }
            if let Some(status) = exited {
                panic!(
                    "{} exited ({status}) before writing {what}:\n{}",
                    self.name,
                    self.output()
                );
            }
            None
        })
    }

    /// Whether it is still running (stopped counts as running).
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits (up to [`DEADLINE`]) for it to exit and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let what = format!("{} to exit", self.name);
        eventually(DEADLINE, &what, || self.try_exit())
    }

    /// Waits for a successful exit; on failure panics with what the process wrote.
    pub fn wait_success(&mut self) {
        let status = self.wait_exit();
        assert!(
            status.success(),
            "{} failed ({status}):\n{}",
            self.name,
            self.output()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // The group outlives its leader when the leader exited first: kill it in any case.
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGCONT);
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.output());
        }
    }
}

/// A file's text so far (lossily decoded; empty if it cannot be read).
fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}
