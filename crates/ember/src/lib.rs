//! Ember: a cluster computing runtime in Rust, after Spark's standalone mode.
//!
//! This is the crate applications depend on, and the home of the `ember` command ([`cli`]:
//! `ember master`, `ember worker`, `ember conf`). An application is an ordinary `main` wrapped by
//! Ember's entry point, which decides the process's role before any user code runs: the same
//! binary is the driver when a person runs it and an executor when a worker starts it.
//!
//! ```no_run
//! use serde_closure::Fn;
//!
//! fn main() -> anyhow::Result<()> {
//!     ember::main(|| {
//!         let ctx = ember::Context::builder().app_name("squares").get_or_create()?;
//!         let squares = ctx.run_job(4, Fn!(|p: usize| p * p))?;
//!         println!("{squares:?}");
//!         ctx.stop();
//!         Ok(())
//!     })
//! }
//! ```
//!
//! Applications also depend on `serde_closure` and `serde` (the `Fn!` macro expands to paths
//! in those crates). `Fn!` closures capture by name: variables used only inside format strings
//! (`format!("{name}")`) are not seen, so write `format!("{}", name)`; and macro arguments must
//! parse as function arguments, so write `std::iter::repeat_n(x, n).collect::<Vec<_>>()` rather
//! than `vec![x; n]` inside a closure.
//!
//! The master comes from `ember.master` (the `EMBER_MASTER` environment variable, the
//! `conf/ember-defaults.conf` file, or code): `local`, `local[N]`, `local[*]`, `local[N,F]`,
//! `local-cluster[W,C,M]` or `ember://host:port[,host:port]`.

pub mod cli;

pub use ember_core::closure;
pub use ember_core::config::config_entries as core_config_entries;
pub use ember_core::{Context, ContextBuilder, CoreError, JobFailure, MasterUrl, TaskContext};
pub use ember_rpc::EmberConf;

/// Ember's entry point: runs `app` as the driver, or — when a worker started this process in
/// the executor role — runs the executor and exits without calling `app`.
///
/// It also installs a log subscriber (stderr; the filter comes from `EMBER_LOG`, else
/// `RUST_LOG`, else `warn` for drivers and `info` for executors) unless one is installed.
pub fn main<T>(app: impl FnOnce() -> T) -> T {
    let executor = ember_core::executor::ExecutorRole::from_env().is_some();
    init_logging(if executor { "info" } else { "warn" });
    ember_core::run_if_executor_role();
    app()
}

fn init_logging(default: &str) {
    let filter = std::env::var("EMBER_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default.to_owned());
    // Colours only on a terminal: an executor's stderr is a log file its worker serves.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
