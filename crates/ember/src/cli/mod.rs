//! The `ember` command line: `ember master`, `ember worker`, `ember conf`.
//!
//! Spark counterparts: `MasterArguments`, `WorkerArguments` and the `spark-class` launcher. The
//! command parses its arguments, sets up logging, loads the configuration (defaults, properties
//! file, `EMBER_*` environment, command line) and calls the daemon's `run`; SIGTERM and Ctrl-C
//! stop the daemon cleanly. Every error is printed with what and where, and exits non-zero.

mod conf;
mod daemon;
mod logging;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use conf::configuration_markdown;

/// Ember: a cluster computing runtime.
#[derive(Debug, Parser)]
#[command(
    name = "ember",
    version,
    about = "Ember: a cluster computing runtime (standalone master, workers, applications).",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a master: the cluster manager workers register with and applications ask for
    /// executors.
    Master(daemon::MasterArgs),
    /// Run a worker: offers cores and memory to the master and runs executors.
    Worker(daemon::WorkerArgs),
    /// List every configuration key with its default and meaning.
    Conf(conf::ConfArgs),
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    let result = match cli.command {
        Command::Master(args) => daemon::run_master(args),
        Command::Worker(args) => daemon::run_worker(args),
        Command::Conf(args) => conf::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ember: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
