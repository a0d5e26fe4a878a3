//! The configuration keys of the application runtime, declared once.
//!
//! Spark counterpart: `org.apache.spark.internal.config` (the `package.scala` entries for
//! `spark.master`, `spark.app.name`, `spark.executor.*`, `spark.task.maxFailures`, …). Keys keep
//! Spark's names with the `ember.` prefix. Every key read by `ember-core` is listed in
//! [`config_entries`].

use std::time::Duration;

use ember_rpc::{ByteSize, ByteUnit, ConfigEntry, ConfigEntryDoc, TimeUnit};

/// `ember.master`: where the application runs.
pub const MASTER: ConfigEntry<String> = ConfigEntry::new(
    "ember.master",
    Some("local[*]"),
    "Where the application runs: local, local[N], local[*], local[N,F] (F = task attempts), \
     local-cluster[W,C,M] (W workers of C cores and M MiB inside this process), or \
     ember://host:port[,host:port] (a standalone cluster).",
)
.with_env("EMBER_MASTER");

/// `ember.app.name`: the application's name.
pub const APP_NAME: ConfigEntry<String> = ConfigEntry::new(
    "ember.app.name",
    None,
    "The application's name, shown by the master and in logs. Defaults to the executable's \
     file name.",
)
.with_env("EMBER_APP_NAME");

/// `ember.executor.memory`: memory per executor.
pub const EXECUTOR_MEMORY: ConfigEntry<ByteSize> = ConfigEntry::bytes(
    "ember.executor.memory",
    Some("1g"),
    ByteUnit::MiB,
    "Memory the master reserves on a worker for each executor; a bare number is in MiB.",
);

/// `ember.executor.cores`: cores per executor.
pub const EXECUTOR_CORES: ConfigEntry<u32> = ConfigEntry::new(
    "ember.executor.cores",
    None,
    "Cores per executor. Unset: one executor per worker taking all the cores it can get (as in \
     Spark's standalone mode).",
);

/// `ember.cores.max`: cores for the whole application.
pub const CORES_MAX: ConfigEntry<u32> = ConfigEntry::new(
    "ember.cores.max",
    None,
    "The most cores the application takes across the cluster. Unset: the master's \
     ember.deploy.defaultCores (unlimited by default).",
);

/// `ember.executor.instances`: an upper bound on executors.
pub const EXECUTOR_INSTANCES: ConfigEntry<u32> = ConfigEntry::new(
    "ember.executor.instances",
    None,
    "The most executors the application asks for. Unset: no limit.",
);

/// `ember.task.maxFailures`: attempts per task before the job fails.
pub const TASK_MAX_FAILURES: ConfigEntry<u32> = ConfigEntry::new(
    "ember.task.maxFailures",
    Some("4"),
    "How many times a task may fail before its job is aborted (cluster modes; local mode makes \
     one attempt unless the master URL is local[N,F]). Must be at least 1.",
);

/// `ember.executor.heartbeatInterval`: how often executors report to the driver.
pub const EXECUTOR_HEARTBEAT_INTERVAL: ConfigEntry<Duration> = ConfigEntry::duration(
    "ember.executor.heartbeatInterval",
    Some("10s"),
    TimeUnit::Milliseconds,
    "How often an executor sends a heartbeat to the driver; a bare number is in milliseconds. \
     Should be well below ember.network.timeout.",
);

/// `ember.network.timeout`: how long an executor may stay silent before it is declared lost.
pub const NETWORK_TIMEOUT: ConfigEntry<Duration> = ConfigEntry::duration(
    "ember.network.timeout",
    Some("120s"),
    TimeUnit::Seconds,
    "The driver declares an executor lost when no heartbeat arrived for this long (an executor \
     whose connection closes is lost at once); a bare number is in seconds.",
);

/// `ember.scheduler.revive.interval`: how often the driver offers free cores again.
pub const REVIVE_INTERVAL: ConfigEntry<Duration> = ConfigEntry::duration(
    "ember.scheduler.revive.interval",
    Some("1s"),
    TimeUnit::Milliseconds,
    "How often the driver offers the executors' free cores to pending tasks even without an \
     event; a bare number is in milliseconds.",
);

/// `ember.starvation.timeout`: how long a job may wait without executors before a warning.
pub const STARVATION_TIMEOUT: ConfigEntry<Duration> = ConfigEntry::duration(
    "ember.starvation.timeout",
    Some("15s"),
    TimeUnit::Milliseconds,
    "While tasks wait and no executor is registered, the driver warns this often, saying why \
     the cluster gives it nothing; a bare number is in milliseconds.",
);

/// `ember.driver.host`: the host executors use to reach the driver.
pub const DRIVER_HOST: ConfigEntry<String> = ConfigEntry::new(
    "ember.driver.host",
    None,
    "Host name or IP the driver listens on and advertises to executors. Default: this \
     machine's host name (127.0.0.1 in local mode).",
)
.with_env("EMBER_DRIVER_HOST");

/// `ember.driver.port`: the driver's RPC port.
pub const DRIVER_PORT: ConfigEntry<u16> = ConfigEntry::new(
    "ember.driver.port",
    Some("0"),
    "Port of the driver's RPC server; 0 picks a free one.",
);

/// `ember.ui.showConsoleProgress`: the progress bar on stderr.
pub const SHOW_CONSOLE_PROGRESS: ConfigEntry<bool> = ConfigEntry::new(
    "ember.ui.showConsoleProgress",
    Some("true"),
    "Show a progress bar per running stage on stderr, when stderr is a terminal.",
);

/// `ember.task.maxDirectResultSize`: the largest result sent inside a status update.
pub const TASK_MAX_DIRECT_RESULT_SIZE: ConfigEntry<ByteSize> = ConfigEntry::bytes(
    "ember.task.maxDirectResultSize",
    Some("1m"),
    ByteUnit::Byte,
    "Task results larger than this (or than fits in ember.rpc.message.maxSize) stay in the \
     executor's block store and the driver fetches them in chunks; a bare number is in bytes.",
);

/// `ember.scheduler.executorTaskQueue`: tasks queued on an executor beyond its free cores.
pub const EXECUTOR_TASK_QUEUE: ConfigEntry<u32> = ConfigEntry::new(
    "ember.scheduler.executorTaskQueue",
    Some("4"),
    "Tasks the driver may queue on each executor beyond its free cores, so that a core never \
     waits a network round trip for its next task. 0 is Spark's behaviour (one task per free \
     core); larger values raise throughput for tiny tasks and cost balance when task durations \
     are skewed (a queued task waits behind a long one on its executor while another executor \
     may be idle).",
);

/// The keys ember-core reads.
pub fn config_entries() -> Vec<ConfigEntryDoc> {
    vec![
        MASTER.describe(),
        APP_NAME.describe(),
        EXECUTOR_MEMORY.describe(),
        EXECUTOR_CORES.describe(),
        CORES_MAX.describe(),
        EXECUTOR_INSTANCES.describe(),
        TASK_MAX_FAILURES.describe(),
        EXECUTOR_HEARTBEAT_INTERVAL.describe(),
        NETWORK_TIMEOUT.describe(),
        REVIVE_INTERVAL.describe(),
        STARVATION_TIMEOUT.describe(),
        DRIVER_HOST.describe(),
        DRIVER_PORT.describe(),
        SHOW_CONSOLE_PROGRESS.describe(),
        TASK_MAX_DIRECT_RESULT_SIZE.describe(),
        EXECUTOR_TASK_QUEUE.describe(),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn entries_are_valid() {
        ember_rpc::conf::assert_entries_valid(&super::config_entries());
    }
}
