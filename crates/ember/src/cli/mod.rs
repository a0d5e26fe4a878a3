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
            eprintln!("ember: error: {}", error_text(&err));
            ExitCode::FAILURE
        }
    }
}

/// `err` and its causes joined by ": ", leaving out a cause whose text its parent already
/// includes (many errors print their source inside their own message and also return it from
/// `source()`, which `{:#}` would print twice).
fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_text;

    /// An error that prints its source inside its own message and also returns it.
    #[derive(Debug)]
    struct Bind(std::io::Error);

    impl std::fmt::Display for Bind {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "could not bind 127.0.0.1:1: {}", self.0)
        }
    }

    impl std::error::Error for Bind {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn causes_are_printed_once() {
        let io = std::io::Error::other("Address already in use");
        let err = anyhow::Error::new(Bind(io)).context("could not start the master");
        assert_eq!(
            error_text(&err),
            "could not start the master: could not bind 127.0.0.1:1: Address already in use"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_text(&plain), "outer: inner");
    }
}
