//! `ember master` and `ember worker`: arguments as Spark users know them, mapped onto
//! configuration keys so that flags, `EMBER_*` variables and properties files compose.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use ember_rpc::{EmberConf, RpcAddress};
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

fn load_conf(
    common: &CommonArgs,
    opts_vars: &[&str],
    flags: Vec<(String, String)>,
) -> anyhow::Result<EmberConf> {
    let conf = EmberConf::loader()
        .properties_file(common.properties_file.clone())
        .entries(&super::conf::all_entries())
        .opts_env_vars(opts_vars)
        .cli_pairs(flags)
        .cli_pairs(common.conf.clone())
        .load()?;
    for unknown in conf.unknown_keys(&super::conf::all_entries()) {
        tracing::warn!("{unknown}");
    }
    Ok(conf)
}

fn push<T: ToString>(flags: &mut Vec<(String, String)>, key: &str, value: Option<T>) {
    if let Some(v) = value {
        flags.push((key.to_owned(), v.to_string()));
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
    let mut flags = Vec::new();
    push(&mut flags, "ember.master.host", args.host);
    push(&mut flags, "ember.master.port", args.port);
    push(&mut flags, "ember.master.ui.port", args.webui_port);
    let conf = load_conf(
        &args.common,
        &["EMBER_DAEMON_OPTS", "EMBER_MASTER_OPTS"],
        flags,
    )?;
    let config = master::config::MasterConfig::from_conf(&conf)?;
    run_daemon(|shutdown| async move {
        master::run(config, Arc::new(conf), shutdown).await?;
        Ok(())
    })
}

pub(crate) fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    use ember_deploy::worker;
    let masters = RpcAddress::parse_master_urls(&args.master)
        .with_context(|| format!("bad master URL {:?}", args.master))?;
    let mut flags = Vec::new();
    push(&mut flags, "ember.worker.host", args.host);
    push(&mut flags, "ember.worker.port", args.port);
    push(&mut flags, "ember.worker.ui.port", args.webui_port);
    push(&mut flags, "ember.worker.cores", args.cores);
    push(&mut flags, "ember.worker.memory", args.memory);
    push(
        &mut flags,
        "ember.worker.dir",
        args.work_dir.map(|d| d.display().to_string()),
    );
    let conf = load_conf(
        &args.common,
        &["EMBER_DAEMON_OPTS", "EMBER_WORKER_OPTS"],
        flags,
    )?;
    let config = worker::config::WorkerConfig::from_conf(&conf, masters)?;
    run_daemon(|shutdown| async move {
        worker::run(config, Arc::new(conf), shutdown).await?;
        Ok(())
    })
}
