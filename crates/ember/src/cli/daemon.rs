//! `ember master` and `ember worker`: arguments as Spark users know them, mapped onto
//! configuration keys so that flags, `EMBER_*` variables and properties files compose.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use ember_deploy::DeployError;
use ember_rpc::{EmberConf, RpcAddress, RpcError};
use tokio_util::sync::CancellationToken;

/// Options of `ember master`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub(crate) struct MasterArgs {
    /// Host to listen on and advertise [env: EMBER_MASTER_HOST; default: this host's name].
    #[arg(short = 'h', long, visible_alias = "ip")]
    host: Option<String>,
    /// Port for the master's RPC [env: EMBER_MASTER_PORT; default: 7077].
    #[arg(short, long)]
    port: Option<u16>,
    /// Port for the master's web UI [env: EMBER_MASTER_WEBUI_PORT; default: 8080].
    #[arg(long)]
    webui_port: Option<u16>,
    #[command(flatten)]
    common: CommonArgs,
}

/// Options of `ember worker`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub(crate) struct WorkerArgs {
    /// The master(s) to register with: ember://host:port[,host2:port2,...].
    master: String,
    /// Host to listen on and advertise [env: EMBER_WORKER_HOST; default: this host's name].
    #[arg(short = 'h', long, visible_alias = "ip")]
    host: Option<String>,
    /// Port for the worker's RPC [env: EMBER_WORKER_PORT; default: any free port].
    #[arg(short, long)]
    port: Option<u16>,
    /// Port for the worker's web UI [env: EMBER_WORKER_WEBUI_PORT; default: 8081].
    #[arg(long)]
    webui_port: Option<u16>,
    /// Cores to offer [env: EMBER_WORKER_CORES; default: all].
    #[arg(short, long)]
    cores: Option<u32>,
    /// Memory to offer, e.g. 1000m or 2g [env: EMBER_WORKER_MEMORY; default: total RAM minus 1 GiB].
    #[arg(short, long)]
    memory: Option<String>,
    /// Directory for application work directories and logs [env: EMBER_WORKER_DIR; default: ./work].
    #[arg(short = 'd', long)]
    work_dir: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

/// Options both daemons take.
#[derive(Debug, Args)]
struct CommonArgs {
    /// Properties file to load instead of conf/ember-defaults.conf.
    #[arg(long, value_name = "FILE")]
    properties_file: Option<PathBuf>,
    /// Set a configuration key, e.g. --conf ember.worker.timeout=30s (repeatable).
    #[arg(long = "conf", value_name = "KEY=VALUE", value_parser = parse_pair)]
    conf: Vec<(String, String)>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    ember_rpc::conf::parse_conf_pair(s).map_err(|e| e.to_string())
}

/// A daemon's flags mapped onto configuration keys, remembering which flag set which key.
#[derive(Debug, Default)]
struct Flags(Vec<(&'static str, &'static str, String)>);

impl Flags {
    fn push<T: ToString>(&mut self, key: &'static str, flag: &'static str, value: Option<T>) {
        if let Some(v) = value {
            self.0.push((key, flag, v.to_string()));
        }
    }

    fn pairs(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(key, _, value)| ((*key).to_owned(), value.clone()))
            .collect()
    }
}

/// Where a daemon's configuration comes from, to load it and to say where a bad value came from.
#[derive(Debug)]
struct Sources<'a> {
    common: &'a CommonArgs,
    opts_vars: &'a [&'a str],
    flags: Flags,
}

impl Sources<'_> {
    fn loader(&self) -> ember_rpc::ConfLoader {
        EmberConf::loader()
            .properties_file(self.common.properties_file.clone())
            .entries(&super::conf::all_entries())
            .opts_env_vars(self.opts_vars)
            .cli_pairs(self.flags.pairs())
            .cli_pairs(self.common.conf.clone())
    }

    fn load(&self) -> anyhow::Result<EmberConf> {
        let conf = self.loader().load()?;
        for unknown in conf.unknown_keys(&super::conf::all_entries()) {
            tracing::warn!("{unknown}");
        }
        Ok(conf)
    }

    /// The source that set `key` last (the one whose value counts), in words; `None` when
    /// `conf` does not hold it (a default or a missing value is at fault) or when the source
    /// already names the key (`--conf key=value`).
    fn origin(&self, conf: &EmberConf, key: &str) -> Option<String> {
        if !conf.contains(key) || self.common.conf.iter().any(|(k, _)| k == key) {
            return None;
        }
        if let Some((_, flag, _)) = self.flags.0.iter().rev().find(|(k, _, _)| *k == key) {
            return Some(format!("option {flag}"));
        }
        let set = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
        let define = format!("-D{key}=");
        if let Some(var) = self
            .opts_vars
            .iter()
            .rev()
            .find(|var| set(var).is_some_and(|v| v.contains(&define)))
        {
            return Some(format!("environment variable {var}"));
        }
        let entries = super::conf::all_entries();
        if let Some(var) = entries
            .iter()
            .find(|e| e.key() == key)
            .and_then(|e| e.env())
            .filter(|var| set(var).is_some())
        {
            return Some(format!("environment variable {var}"));
        }
        self.loader()
            .properties_file_path()
            .map(|path| format!("properties file {}", path.display()))
    }

    /// `error`, saying where the offending value came from when that is not evident.
    fn explain(&self, conf: &EmberConf, error: DeployError) -> anyhow::Error {
        let key = match &error {
            DeployError::Conf(e) => e.key().map(str::to_owned),
            DeployError::InvalidConfig { key, .. } => Some((*key).to_owned()),
            _ => None,
        };
        match key.and_then(|key| self.origin(conf, &key)) {
            Some(origin) => anyhow::Error::new(error).context(format!("in {origin}")),
            None => error.into(),
        }
    }

    /// An error of `role`'s `run`: a port that cannot be bound is named as the RPC port with the
    /// key that sets it (the web UI's own error already says "web UI"); a bad value of a key
    /// read at start-up (the RPC settings) says where it came from.
    fn explain_run_error(
        &self,
        conf: &EmberConf,
        error: DeployError,
        role: &str,
        port_key: &str,
    ) -> anyhow::Error {
        if matches!(error, DeployError::Rpc(RpcError::Bind { .. })) {
            return anyhow::Error::new(error).context(format!(
                "could not start the {role}'s RPC endpoint (port set by {port_key})"
            ));
        }
        self.explain(conf, error)
    }
}

/// Runs `daemon` on a multi-threaded runtime until it ends or SIGTERM/Ctrl-C arrives.
fn run_daemon<F, Fut>(daemon: F) -> anyhow::Result<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("received a stop signal; shutting down");
            signals.cancel();
        });
        daemon(shutdown).await
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub(crate) fn run_master(args: MasterArgs) -> anyhow::Result<()> {
    use ember_deploy::master;
    let mut flags = Flags::default();
    flags.push("ember.master.host", "--host", args.host);
    flags.push("ember.master.port", "--port", args.port);
    flags.push("ember.master.ui.port", "--webui-port", args.webui_port);
    let sources = Sources {
        common: &args.common,
        opts_vars: &["EMBER_DAEMON_OPTS", "EMBER_MASTER_OPTS"],
        flags,
    };
    let conf = sources.load()?;
    let config =
        master::config::MasterConfig::from_conf(&conf).map_err(|e| sources.explain(&conf, e))?;
    let conf = Arc::new(conf);
    run_daemon(|shutdown| async move {
        master::run(config, conf.clone(), shutdown)
            .await
            .map_err(|e| sources.explain_run_error(&conf, e, "master", "ember.master.port"))
    })
}

pub(crate) fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    use ember_deploy::worker;
    let masters = RpcAddress::parse_master_urls(&args.master)
        .with_context(|| format!("bad master URL {:?}", args.master))?;
    let mut flags = Flags::default();
    flags.push("ember.worker.host", "--host", args.host);
    flags.push("ember.worker.port", "--port", args.port);
    flags.push("ember.worker.ui.port", "--webui-port", args.webui_port);
    flags.push("ember.worker.cores", "--cores", args.cores);
    flags.push("ember.worker.memory", "--memory", args.memory);
    flags.push(
        "ember.worker.dir",
        "--work-dir",
        args.work_dir.map(|d| d.display().to_string()),
    );
    let sources = Sources {
        common: &args.common,
        opts_vars: &["EMBER_DAEMON_OPTS", "EMBER_WORKER_OPTS"],
        flags,
    };
    let conf = sources.load()?;
    let config = worker::config::WorkerConfig::from_conf(&conf, masters)
        .map_err(|e| sources.explain(&conf, e))?;
    let conf = Arc::new(conf);
    run_daemon(|shutdown| async move {
        worker::run(config, conf.clone(), shutdown)
            .await
            .map_err(|e| sources.explain_run_error(&conf, e, "worker", "ember.worker.port"))
    })
}
