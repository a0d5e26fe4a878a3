//! What executor and driver runners share: placeholder substitution, the process spec built from
//! a [`Command`] (with the log URLs and the worker's own variables every child gets), the stderr
//! header, and the handle the endpoint keeps for each runner.
//!
//! Spark counterpart: `CommandUtils.buildProcessBuilder` and the `substituteVariables` functions
//! of `ExecutorRunner` and `DriverRunner`. Spark replaces an argument only when it is exactly a
//! placeholder; Ember replaces placeholders anywhere inside arguments and environment values, so
//! `--executor-id={{EXECUTOR_ID}}` works too.

use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::app_cache::AppCache;
use super::process::{ProcessLauncher, ProcessSpec};
use crate::description::{Command, placeholder};
use crate::messages::WorkerInternal;

/// Where runners send their state changes (the worker endpoint, or a test).
pub type Reporter = Arc<dyn Fn(WorkerInternal) + Send + Sync>;

/// What every runner of one worker needs.
#[derive(Clone)]
pub struct RunnerContext {
    /// Receives the runners' state changes.
    pub report: Reporter,
    /// The binary cache.
    pub cache: Arc<AppCache>,
    /// Starts the processes.
    pub launcher: Arc<dyn ProcessLauncher>,
    /// The worker's host (`{{HOSTNAME}}`).
    pub host: String,
    /// The worker endpoint's URL, `ember://Worker@host:port` (`{{WORKER_URL}}`).
    pub worker_url: String,
    /// The worker's web UI, for the log URLs given to children.
    pub web_ui_url: String,
    /// Variables the worker itself gives every child, after the command's own: the
    /// authentication secret when `ember.authenticate` is on (see [`child_environment`]).
    /// Their values are never logged.
    pub child_env: Vec<(String, String)>,
}

/// Environment variable: the URL of a child's stdout log page.
pub const ENV_LOG_URL_STDOUT: &str = "EMBER_LOG_URL_STDOUT";
/// Environment variable: the URL of a child's stderr log page.
pub const ENV_LOG_URL_STDERR: &str = "EMBER_LOG_URL_STDERR";

impl RunnerContext {
    /// The process for `command` run from `dir` (see [`process_spec`]). After the command's own
    /// environment come `extra_env`, the URLs of the child's log pages on this worker's UI
    /// (`/logPage/?<log_query>&logType=stdout|stderr`) and [`child_env`](Self::child_env).
    pub fn child_process_spec(
        &self,
        command: &Command,
        binary: &Path,
        subs: &Substitutions,
        mut extra_env: Vec<(String, String)>,
        log_query: &str,
        dir: &Path,
    ) -> ProcessSpec {
        let logs = format!("{}/logPage/?{log_query}&logType=", self.web_ui_url);
        extra_env.push((ENV_LOG_URL_STDOUT.to_owned(), format!("{logs}stdout")));
        extra_env.push((ENV_LOG_URL_STDERR.to_owned(), format!("{logs}stderr")));
        extra_env.extend(self.child_env.iter().cloned());
        process_spec(command, binary, subs, extra_env, dir)
    }
}

impl fmt::Debug for RunnerContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerContext")
            .field("cache", &self.cache.dir())
            .field("launcher", &self.launcher)
            .field("host", &self.host)
            .field("worker_url", &self.worker_url)
            .field("web_ui_url", &self.web_ui_url)
            .field(
                "child_env",
                &self.child_env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The endpoint's handle on a running runner: kill it, wait for it to finish.
#[derive(Debug, Clone, Default)]
pub struct RunnerHandle {
    kill: CancellationToken,
    done: CancellationToken,
}

impl RunnerHandle {
    /// A handle for a runner not yet started.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the runner to kill its process (SIGTERM, then SIGKILL after the grace period).
    pub fn kill(&self) {
        self.kill.cancel();
    }

    /// Waits until the runner has finished (its process is gone and its final state reported).
    pub async fn finished(&self) {
        self.done.cancelled().await;
    }

    /// Whether the runner has finished.
    pub fn is_finished(&self) -> bool {
        self.done.is_cancelled()
    }

    pub(crate) fn kill_token(&self) -> CancellationToken {
        self.kill.clone()
    }

    /// Marks the runner finished when dropped (also when its task panics).
    pub(crate) fn done_guard(&self) -> tokio_util::sync::DropGuard {
        self.done.clone().drop_guard()
    }
}

/// The variables a worker adds to every child's environment from its own configuration.
///
/// Spark parity: `CommandUtils.buildLocalCommand` puts the worker's secret in the child's
/// environment (`_SPARK_AUTH_SECRET`) when authentication is on, rather than on its command
/// line. Here the variable is the one `ember.authenticate.secret` is read from
/// (`EMBER_AUTHENTICATE_SECRET`), so the child's RpcEnv finds it; the secret never travels in an
/// application or driver description.
pub fn child_environment(
    conf: &ember_rpc::EmberConf,
) -> Result<Vec<(String, String)>, ember_rpc::ConfError> {
    use ember_rpc::env::{AUTHENTICATE, AUTHENTICATE_SECRET};
    if !conf.get(&AUTHENTICATE)? {
        return Ok(Vec::new());
    }
    let secret = conf
        .get_opt(&AUTHENTICATE_SECRET)?
        .filter(|s| !s.is_empty())
        .ok_or(ember_rpc::ConfError::Missing {
            key: AUTHENTICATE_SECRET.key().to_owned(),
        })?;
    let var = AUTHENTICATE_SECRET
        .env()
        .expect("ember.authenticate.secret declares its variable");
    Ok(vec![(var.to_owned(), secret)])
}

/// Placeholder values for one process.
#[derive(Debug, Clone, Default)]
pub struct Substitutions {
    pairs: Vec<(&'static str, String)>,
}

impl Substitutions {
    /// The values for an executor.
    pub fn executor(
        exec_id: &str,
        host: &str,
        cores: u32,
        memory_mb: u32,
        app_id: &str,
        worker_url: &str,
    ) -> Self {
        Substitutions {
            pairs: vec![
                (placeholder::EXECUTOR_ID, exec_id.to_owned()),
                (placeholder::HOSTNAME, host.to_owned()),
                (placeholder::CORES, cores.to_string()),
                (placeholder::MEMORY_MB, memory_mb.to_string()),
                (placeholder::APP_ID, app_id.to_owned()),
                (placeholder::WORKER_URL, worker_url.to_owned()),
            ],
        }
    }

    /// The values for a driver: its host, cores, memory and the worker URL.
    pub fn driver(host: &str, cores: u32, memory_mb: u32, worker_url: &str) -> Self {
        Substitutions {
            pairs: vec![
                (placeholder::HOSTNAME, host.to_owned()),
                (placeholder::CORES, cores.to_string()),
                (placeholder::MEMORY_MB, memory_mb.to_string()),
                (placeholder::WORKER_URL, worker_url.to_owned()),
            ],
        }
    }

    /// `text` with every placeholder replaced.
    pub fn apply(&self, text: &str) -> String {
        if !text.contains("{{") {
            return text.to_owned();
        }
        self.pairs
            .iter()
            .fold(text.to_owned(), |acc, (key, value)| acc.replace(key, value))
    }
}

/// The process for `command`, run from `dir` with its output in `dir/stdout` and `dir/stderr`.
/// `extra_env` comes after the command's own environment (and so wins).
pub fn process_spec(
    command: &Command,
    binary: &Path,
    subs: &Substitutions,
    extra_env: Vec<(String, String)>,
    dir: &Path,
) -> ProcessSpec {
    let mut env: Vec<(String, String)> = command
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), subs.apply(v)))
        .collect();
    env.extend(extra_env);
    ProcessSpec {
        program: binary.to_path_buf(),
        arg0: Some(command.binary.name.clone()),
        args: command.arguments.iter().map(|a| subs.apply(a)).collect(),
        env,
        cwd: dir.to_path_buf(),
        stdout: dir.join("stdout"),
        stderr: dir.join("stderr"),
    }
}

/// The command line, each word quoted: `"/path/bin" "--cores" "2"`.
pub fn format_command(spec: &ProcessSpec) -> String {
    std::iter::once(spec.program.display().to_string())
        .chain(spec.args.iter().cloned())
        .map(|word| format!("{word:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Appends the header naming the command to the stderr file, before the process writes to it.
pub fn write_header(spec: &ProcessSpec, title: &str) -> Result<(), crate::DeployError> {
    let text = format!("{title}: {}\n{}\n\n", format_command(spec), "=".repeat(40));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.stderr)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| crate::DeployError::Io {
            action: "write",
            path: spec.stderr.clone(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::description::{AppBinary, BinaryLocation};

    #[test]
    fn children_get_the_secret_only_when_authentication_is_on() {
        use ember_rpc::EmberConf;
        let off = EmberConf::from_pairs([("ember.authenticate.secret", "s")]);
        assert_eq!(child_environment(&off).unwrap(), Vec::new());
        let on = EmberConf::from_pairs([
            ("ember.authenticate", "true"),
            ("ember.authenticate.secret", "s"),
        ]);
        assert_eq!(
            child_environment(&on).unwrap(),
            vec![("EMBER_AUTHENTICATE_SECRET".to_owned(), "s".to_owned())]
        );
        let missing = EmberConf::from_pairs([("ember.authenticate", "true")]);
        let err = child_environment(&missing).unwrap_err();
        assert!(
            err.to_string().contains("ember.authenticate.secret"),
            "{err}"
        );
    }

    #[test]
    fn placeholders_are_replaced_in_arguments_and_environment() {
        let subs = Substitutions::executor("3", "h1", 2, 512, "app-1", "ember://Worker@h1:9");
        let command = Command {
            binary: AppBinary {
                name: "pi".into(),
                digest: String::new(),
                size: 0,
                location: BinaryLocation::LocalPath("/x".into()),
            },
            arguments: vec![
                "--executor-id".into(),
                "{{EXECUTOR_ID}}".into(),
                "--worker={{WORKER_URL}}".into(),
                "{{CORES}}/{{MEMORY_MB}}/{{APP_ID}}/{{HOSTNAME}}/{{UNKNOWN}}".into(),
            ],
            environment: vec![("ROLE".into(), "executor-{{EXECUTOR_ID}}".into())],
        };
        let spec = process_spec(
            &command,
            Path::new("/cache/abc"),
            &subs,
            vec![("EXTRA".into(), "1".into())],
            Path::new("/work/app-1/3"),
        );
        assert_eq!(
            spec.args,
            vec![
                "--executor-id",
                "3",
                "--worker=ember://Worker@h1:9",
                "2/512/app-1/h1/{{UNKNOWN}}"
            ]
        );
        assert_eq!(
            spec.env,
            vec![
                ("ROLE".to_owned(), "executor-3".to_owned()),
                ("EXTRA".to_owned(), "1".to_owned())
            ]
        );
        assert_eq!(spec.arg0.as_deref(), Some("pi"));
        assert_eq!(spec.stdout, Path::new("/work/app-1/3/stdout"));
        assert_eq!(
            format_command(&spec),
            "\"/cache/abc\" \"--executor-id\" \"3\" \"--worker=ember://Worker@h1:9\" \
             \"2/512/app-1/h1/{{UNKNOWN}}\""
        );
        // A driver has no executor or application id to substitute.
        let d = Substitutions::driver("h1", 1, 1024, "w");
        assert_eq!(d.apply("{{APP_ID}} {{CORES}}"), "{{APP_ID}} 1");
    }
}

/// The fixture of the runner tests: a temp dir holding an application binary, an in-memory
/// launcher, and a [`RunnerContext`] whose reports of one kind are recorded.
#[cfg(test)]
pub(crate) mod fixture {
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};

    use super::RunnerContext;
    use crate::description::{AppBinary, BinaryLocation};
    use crate::file_server::digest_file;
    use crate::messages::WorkerInternal;
    use crate::worker::app_cache::AppCache;
    use crate::worker::process::InMemoryLauncher;

    /// Runs `L`s (a runner's launch) and records `R`s (its reports).
    pub(crate) struct Fixture<R, L> {
        /// The temp dir, removed by [`finish`](Self::finish).
        pub(crate) dir: PathBuf,
        pub(crate) ctx: RunnerContext,
        pub(crate) launcher: InMemoryLauncher,
        /// The reports `record` kept, in order.
        pub(crate) log: Arc<Mutex<Vec<R>>>,
        pub(crate) launch: L,
        env: ember_rpc::RpcEnv,
    }

    impl<R: Send + 'static, L> Fixture<R, L> {
        /// Writes `contents` as the binary `<dir>/app` in a new temp dir named after `kind` and
        /// `name`; `launch` gets the dir and that binary (named `app`, with its digest).
        pub(crate) async fn new(
            kind: &str,
            name: &str,
            contents: &[u8],
            child_env: Vec<(String, String)>,
            record: fn(WorkerInternal) -> Option<R>,
            launch: impl FnOnce(&Path, AppBinary) -> L,
        ) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "ember-{kind}-{name}-{}-{}",
                std::process::id(),
                crate::ids::now_millis()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let binary_path = dir.join("app");
            std::fs::write(&binary_path, contents).unwrap();
            let (digest, size) = digest_file(&binary_path).unwrap();
            let binary = AppBinary {
                name: "app".into(),
                digest,
                size,
                location: BinaryLocation::LocalPath(binary_path.display().to_string()),
            };
            let env = ember_rpc::RpcEnv::create(ember_rpc::RpcEnvConfig::new("t", "127.0.0.1", 0))
                .await
                .unwrap();
            let log: Arc<Mutex<Vec<R>>> = Arc::default();
            let sink = log.clone();
            let launcher = InMemoryLauncher::new();
            let ctx = RunnerContext {
                report: Arc::new(move |m| {
                    if let Some(r) = record(m) {
                        sink.lock().unwrap().push(r);
                    }
                }),
                cache: Arc::new(AppCache::new(env.clone(), dir.join("cache"))),
                launcher: Arc::new(launcher.clone()),
                host: "h1".into(),
                worker_url: "ember://Worker@h1:7078".into(),
                web_ui_url: "http://h1:8081".into(),
                child_env,
            };
            let launch = launch(&dir, binary);
            Fixture {
                dir,
                ctx,
                launcher,
                log,
                launch,
                env,
            }
        }

        /// Shuts the RpcEnv down and removes the temp dir.
        pub(crate) async fn finish(self) {
            self.env.shutdown().await;
            std::fs::remove_dir_all(&self.dir).unwrap();
        }
    }
}
