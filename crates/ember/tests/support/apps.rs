//! Drivers running *scenarios*, for the application tests (`app_*.rs`).
//!
//! A scenario is a `#[test]` function of the test binary that does nothing in an ordinary test
//! run. A test starts its own binary again as a driver with `--exact <scenario>` and
//! [`SCENARIO_VAR`] naming it; the scenario then runs as an Ember application under
//! [`ember::main`]. Workers start executors from that same binary with the driver's arguments, so
//! in an executor `--exact <scenario>` runs the same function, and `ember::main` turns the
//! process into an executor before the scenario's body could run. Drivers talk to their test
//! through lines on stdout (`KEY value`, read with [`Proc::value`]), and wait for the test by
//! reading stdin to its end ([`Proc::close_stdin`]).

use std::collections::BTreeSet;
use std::io::Read as _;
use std::process::Command;

use super::{Proc, hermetic};

/// Names the scenario a driver process runs.
pub const SCENARIO_VAR: &str = "EMBER_APP_TEST_SCENARIO";

/// Runs `body` as the scenario `name` when this process was started for it (see the module
/// docs); in an ordinary test run it returns at once. In an executor it never returns.
pub fn scenario(name: &str, body: impl FnOnce() -> anyhow::Result<()>) {
    ember::main(|| {
        if std::env::var(SCENARIO_VAR).as_deref() != Ok(name) {
            return;
        }
        if let Err(e) = body() {
            panic!("scenario {name} failed: {e:#}");
        }
    });
}

/// In a scenario: the application's Context, named `app-test`, without a progress bar, with
/// authentication on when `APP_TEST_SECRET` is set (in code, so that executors can only learn
/// the secret from their worker) and the settings of `APP_TEST_CONF_<key with _ for .>`
/// variables.
pub fn scenario_context() -> anyhow::Result<ember::Context> {
    let mut builder = ember::Context::builder()
        .app_name("app-test")
        .conf("ember.ui.showConsoleProgress", "false");
    if let Ok(secret) = std::env::var("APP_TEST_SECRET") {
        builder = builder
            .conf("ember.authenticate", "true")
            .conf("ember.authenticate.secret", secret);
    }
    for (key, value) in std::env::vars() {
        if let Some(key) = key.strip_prefix("APP_TEST_CONF_") {
            builder = builder.conf(key.replace('_', "."), value);
        }
    }
    Ok(builder.create()?)
}

/// In a scenario: tells the test `key value` on stdout (on a line of its own: the test
/// harness leaves `test name ... ` unterminated while the test runs).
pub fn tell(key: &str, value: impl std::fmt::Display) {
    println!("\n{key} {value}");
}

/// In a scenario: tells the test `PIDS <pid>,<pid>,…`, the processes the tasks ran in.
pub fn tell_pids(pids: &BTreeSet<u32>) {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    tell("PIDS", pids.join(","));
}

/// In a scenario: blocks until the test closes our stdin.
pub fn wait_for_test() {
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// Starts this test binary again as a driver running `scenario` ([`hermetic`], logging at
/// `info`), with `envs` added.
pub fn spawn_driver(scenario: &str, envs: &[(&str, &str)]) -> Proc {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(exe);
    hermetic(&mut command)
        .args(["--exact", scenario, "--nocapture", "--test-threads=1"])
        .env(SCENARIO_VAR, scenario)
        .env("EMBER_LOG", "info")
        .envs(envs.iter().copied());
    Proc::spawn(&format!("driver-{scenario}"), &mut command)
}
