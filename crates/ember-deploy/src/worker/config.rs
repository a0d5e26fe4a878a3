//! The Worker's configuration keys and its validated, typed configuration.
//!
//! Spark counterparts: `WorkerArguments` (host, port, web UI port, cores, memory, work dir, with
//! the `SPARK_WORKER_*` environment) and the `spark.worker.*` entries of
//! `internal/config/Worker.scala`. Spark hard-codes the registration retry intervals (10 s and
//! 60 s, each times a per-process fuzz); here they are keys so that tests can shorten them.

use std::path::PathBuf;
use std::time::Duration;

use ember_rpc::{
    ByteSize, ByteUnit, ConfError, ConfigEntry, ConfigEntryDoc, EmberConf, RpcAddress, TimeUnit,
};

use crate::config::{WORKER_TIMEOUT, local_hostname};
use crate::error::DeployError;

/// `ember.worker.host`.
pub const HOST: ConfigEntry<String> = ConfigEntry::new(
    "ember.worker.host",
    None,
    "Host name or IP the worker listens on and advertises (default: this machine's host name).",
)
.with_env("EMBER_WORKER_HOST");
/// `ember.worker.port`.
pub const PORT: ConfigEntry<u16> = ConfigEntry::new(
    "ember.worker.port",
    Some("0"),
    "Port of the worker's RPC endpoint; 0 picks a free port.",
)
.with_env("EMBER_WORKER_PORT");
/// `ember.worker.ui.port`.
pub const UI_PORT: ConfigEntry<u16> = ConfigEntry::new(
    "ember.worker.ui.port",
    Some("8081"),
    "Port of the worker's web UI; 0 picks a free port.",
)
.with_env("EMBER_WORKER_WEBUI_PORT");
/// `ember.worker.cores`.
pub const CORES: ConfigEntry<u32> = ConfigEntry::new(
    "ember.worker.cores",
    None,
    "Cores the worker offers to applications (default: every CPU of the machine).",
)
.with_env("EMBER_WORKER_CORES");
/// `ember.worker.memory`.
pub const MEMORY: ConfigEntry<ByteSize> = ConfigEntry::bytes(
    "ember.worker.memory",
    None,
    ByteUnit::MiB,
    "Memory the worker offers to applications (default: the machine's RAM minus 1 GiB, at least \
     1 GiB).",
)
.with_env("EMBER_WORKER_MEMORY");
/// `ember.worker.dir`.
pub const DIR: ConfigEntry<String> = ConfigEntry::new(
    "ember.worker.dir",
    Some("./work"),
    "Directory holding the executors' and drivers' working directories and logs, and the cache \
     of application binaries.",
)
.with_env("EMBER_WORKER_DIR");
/// `ember.worker.cleanup.enabled`.
pub const CLEANUP_ENABLED: ConfigEntry<bool> = ConfigEntry::new(
    "ember.worker.cleanup.enabled",
    Some("true"),
    "Periodically delete application directories of the work dir that no running executor or \
     driver uses and that hold no file newer than ember.worker.cleanup.appDataTtl, and cached \
     application binaries that none uses and none used within that TTL.",
);
/// `ember.worker.cleanup.interval`.
pub const CLEANUP_INTERVAL: ConfigEntry<Duration> = ConfigEntry::duration(
    "ember.worker.cleanup.interval",
    Some("1800s"),
    TimeUnit::Seconds,
    "How often the work dir is cleaned up.",
);
/// `ember.worker.cleanup.appDataTtl`.
pub const CLEANUP_APP_DATA_TTL: ConfigEntry<Duration> = ConfigEntry::duration(
    "ember.worker.cleanup.appDataTtl",
    Some("7d"),
    TimeUnit::Seconds,
    "An application directory is kept while it holds a file modified more recently than this; a \
     cached application binary while it was used more recently than this.",
);
/// `ember.worker.initialRegistrationRetries`.
pub const INITIAL_REGISTRATION_RETRIES: ConfigEntry<u32> = ConfigEntry::new(
    "ember.worker.initialRegistrationRetries",
    Some("6"),
    "Registration retries made at ember.worker.registration.initialInterval before the worker \
     slows down to ember.worker.registration.prolongedInterval.",
);
/// `ember.worker.maxRegistrationRetries`.
pub const MAX_REGISTRATION_RETRIES: ConfigEntry<u32> = ConfigEntry::new(
    "ember.worker.maxRegistrationRetries",
    Some("16"),
    "Registration retries in all; when they run out without a master answering, the worker \
     exits with an error.",
);
/// `ember.worker.registration.initialInterval`.
pub const REGISTRATION_INITIAL_INTERVAL: ConfigEntry<Duration> = ConfigEntry::duration(
    "ember.worker.registration.initialInterval",
    Some("10s"),
    TimeUnit::Seconds,
    "Interval of the first registration retries, times a per-process random factor in \
     [0.5, 1.5) so that workers restarted together do not retry in step.",
);
/// `ember.worker.registration.prolongedInterval`.
pub const REGISTRATION_PROLONGED_INTERVAL: ConfigEntry<Duration> = ConfigEntry::duration(
    "ember.worker.registration.prolongedInterval",
    Some("60s"),
    TimeUnit::Seconds,
    "Interval of the later registration retries, times the same random factor.",
);
/// `ember.worker.ui.retainedExecutors`.
pub const RETAINED_EXECUTORS: ConfigEntry<u32> = ConfigEntry::new(
    "ember.worker.ui.retainedExecutors",
    Some("1000"),
    "Finished executors the worker remembers for its UI.",
);
/// `ember.worker.ui.retainedDrivers`.
pub const RETAINED_DRIVERS: ConfigEntry<u32> = ConfigEntry::new(
    "ember.worker.ui.retainedDrivers",
    Some("1000"),
    "Finished drivers the worker remembers for its UI.",
);
/// `ember.worker.executorStateSync.maxAttempts`.
pub const EXECUTOR_STATE_SYNC_MAX_ATTEMPTS: ConfigEntry<u32> = ConfigEntry::new(
    "ember.worker.executorStateSync.maxAttempts",
    Some("5"),
    "Attempts at reporting an executor's state change to the master; when all fail the worker \
     exits, as its view and the master's can no longer be reconciled.",
);
/// `ember.worker.executorTerminateTimeout`.
pub const EXECUTOR_TERMINATE_TIMEOUT: ConfigEntry<Duration> = ConfigEntry::duration(
    "ember.worker.executorTerminateTimeout",
    Some("10s"),
    TimeUnit::Seconds,
    "How long a killed executor gets between SIGTERM and SIGKILL.",
);
/// `ember.worker.driverTerminateTimeout`.
pub const DRIVER_TERMINATE_TIMEOUT: ConfigEntry<Duration> = ConfigEntry::duration(
    "ember.worker.driverTerminateTimeout",
    Some("10s"),
    TimeUnit::Seconds,
    "How long a killed driver gets between SIGTERM and SIGKILL.",
);

/// The keys declared here (the shared `ember.worker.timeout` is in [`crate::config`]).
pub fn config_entries() -> Vec<ConfigEntryDoc> {
    vec![
        HOST.describe(),
        PORT.describe(),
        UI_PORT.describe(),
        CORES.describe(),
        MEMORY.describe(),
        DIR.describe(),
        CLEANUP_ENABLED.describe(),
        CLEANUP_INTERVAL.describe(),
        CLEANUP_APP_DATA_TTL.describe(),
        INITIAL_REGISTRATION_RETRIES.describe(),
        MAX_REGISTRATION_RETRIES.describe(),
        REGISTRATION_INITIAL_INTERVAL.describe(),
        REGISTRATION_PROLONGED_INTERVAL.describe(),
        RETAINED_EXECUTORS.describe(),
        RETAINED_DRIVERS.describe(),
        EXECUTOR_STATE_SYNC_MAX_ATTEMPTS.describe(),
        EXECUTOR_TERMINATE_TIMEOUT.describe(),
        DRIVER_TERMINATE_TIMEOUT.describe(),
    ]
}

/// How a worker retries registering with its masters (Spark's hard-coded schedule, as keys).
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationConfig {
    /// Retries at `initial_interval` before switching to `prolonged_interval`.
    pub initial_retries: u32,
    /// Retries in all before giving up.
    pub max_retries: u32,
    /// Interval of the first retries (before the fuzz factor).
    pub initial_interval: Duration,
    /// Interval of the later retries (before the fuzz factor).
    pub prolonged_interval: Duration,
}

/// Work-dir cleanup settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanupConfig {
    /// How often to clean up.
    pub interval: Duration,
    /// Directories with a file newer than this are kept.
    pub app_data_ttl: Duration,
}

/// A worker's validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// Host to listen on and advertise.
    pub host: String,
    /// RPC port (0 = any).
    pub port: u16,
    /// Web UI port (0 = any).
    pub ui_port: u16,
    /// Cores offered.
    pub cores: u32,
    /// Memory offered, in MiB.
    pub memory_mb: u32,
    /// The work directory, absolute.
    pub work_dir: PathBuf,
    /// The masters to register with.
    pub masters: Vec<RpcAddress>,
    /// Heartbeat period: `ember.worker.timeout / 4`.
    pub heartbeat_interval: Duration,
    /// Registration retry schedule.
    pub registration: RegistrationConfig,
    /// Work-dir cleanup, when enabled.
    pub cleanup: Option<CleanupConfig>,
    /// Finished executors kept for the UI.
    pub retained_executors: usize,
    /// Finished drivers kept for the UI.
    pub retained_drivers: usize,
    /// Attempts at reporting an executor state change.
    pub executor_state_sync_max_attempts: u32,
    /// SIGTERM → SIGKILL grace period for executors.
    pub executor_terminate_timeout: Duration,
    /// SIGTERM → SIGKILL grace period for drivers.
    pub driver_terminate_timeout: Duration,
}

impl WorkerConfig {
    /// Reads and validates the worker's keys. `masters` come from the command line (a worker is
    /// started as `ember worker ember://m1:7077,m2:7077`). Errors name the offending key.
    pub fn from_conf(conf: &EmberConf, masters: Vec<RpcAddress>) -> Result<Self, DeployError> {
        if masters.is_empty() {
            return Err(DeployError::NoMasters);
        }
        let host = match conf.get_opt(&HOST)? {
            Some(host) if !host.trim().is_empty() => host.trim().to_owned(),
            Some(host) => return Err(invalid(&HOST, &host, "must not be empty")),
            None => local_hostname(),
        };
        let cores = match conf.get_opt(&CORES)? {
            Some(0) => return Err(invalid(&CORES, "0", "a worker must offer at least 1 core")),
            Some(cores) => cores,
            None => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        };
        let memory_mb = match conf.get_opt(&MEMORY)? {
            Some(size) => {
                let raw = conf.get_raw(MEMORY.key()).unwrap_or_default();
                match size.as_mib() {
                    0 => return Err(invalid(&MEMORY, raw, "a worker must offer at least 1 MiB")),
                    mb => u32::try_from(mb)
                        .map_err(|_| invalid(&MEMORY, raw, "must be below 4096 TiB"))?,
                }
            }
            None => default_memory_mb(),
        };
        let dir = conf.get(&DIR)?;
        if dir.trim().is_empty() {
            return Err(invalid(&DIR, &dir, "must not be empty"));
        }
        let work_dir = std::path::absolute(dir.trim())
            .map_err(|e| invalid(&DIR, &dir, &format!("cannot be made absolute: {e}")))?;

        let timeout = positive(conf, &WORKER_TIMEOUT)?;
        let registration = RegistrationConfig {
            initial_retries: conf.get(&INITIAL_REGISTRATION_RETRIES)?,
            max_retries: conf.get(&MAX_REGISTRATION_RETRIES)?,
            initial_interval: positive(conf, &REGISTRATION_INITIAL_INTERVAL)?,
            prolonged_interval: positive(conf, &REGISTRATION_PROLONGED_INTERVAL)?,
        };
        if registration.initial_retries > registration.max_retries {
            let raw = registration.initial_retries.to_string();
            return Err(invalid(
                &INITIAL_REGISTRATION_RETRIES,
                &raw,
                &format!(
                    "must not exceed {} ({})",
                    MAX_REGISTRATION_RETRIES.key(),
                    registration.max_retries
                ),
            ));
        }
        let cleanup = if conf.get(&CLEANUP_ENABLED)? {
            Some(CleanupConfig {
                interval: positive(conf, &CLEANUP_INTERVAL)?,
                app_data_ttl: conf.get(&CLEANUP_APP_DATA_TTL)?,
            })
        } else {
            None
        };
        let executor_state_sync_max_attempts = conf.get(&EXECUTOR_STATE_SYNC_MAX_ATTEMPTS)?;
        if executor_state_sync_max_attempts == 0 {
            return Err(invalid(
                &EXECUTOR_STATE_SYNC_MAX_ATTEMPTS,
                "0",
                "must be at least 1",
            ));
        }
        Ok(WorkerConfig {
            host,
            port: conf.get(&PORT)?,
            ui_port: conf.get(&UI_PORT)?,
            cores,
            memory_mb,
            work_dir,
            masters,
            heartbeat_interval: timeout / 4,
            registration,
            cleanup,
            retained_executors: conf.get(&RETAINED_EXECUTORS)? as usize,
            retained_drivers: conf.get(&RETAINED_DRIVERS)? as usize,
            executor_state_sync_max_attempts,
            executor_terminate_timeout: conf.get(&EXECUTOR_TERMINATE_TIMEOUT)?,
            driver_terminate_timeout: conf.get(&DRIVER_TERMINATE_TIMEOUT)?,
        })
    }

    /// The masters as one `ember://h1:p1,h2:p2`-style list, for messages.
    pub fn masters_text(&self) -> String {
        self.masters
            .iter()
            .map(RpcAddress::to_ember_url)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn invalid<T: ember_rpc::ConfigValue>(
    entry: &ConfigEntry<T>,
    raw: &str,
    reason: &str,
) -> DeployError {
    DeployError::Conf(ConfError::invalid_value(entry.key(), raw, reason))
}

fn positive(conf: &EmberConf, entry: &ConfigEntry<Duration>) -> Result<Duration, DeployError> {
    let value = conf.get(entry)?;
    if value.is_zero() {
        let raw = conf
            .get_raw(entry.key())
            .or(entry.default_text())
            .unwrap_or_default();
        return Err(invalid(entry, raw, "must be longer than zero"));
    }
    Ok(value)
}

/// Spark's default: total RAM minus 1 GiB (left to the OS and the daemons), at least 1 GiB.
fn default_memory_mb() -> u32 {
    let total_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| parse_mem_total_kib(&text))
        .map(|kib| kib / 1024)
        .unwrap_or(2048);
    u32::try_from(total_mb.saturating_sub(1024).max(1024)).unwrap_or(u32::MAX)
}

/// The `MemTotal:` line of `/proc/meminfo`, in KiB.
fn parse_mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masters() -> Vec<RpcAddress> {
        vec![RpcAddress::new("m1", 7077)]
    }

    #[test]
    fn entries_are_valid() {
        ember_rpc::conf::assert_entries_valid(&config_entries());
    }

    #[test]
    fn defaults_follow_spark() {
        let c = WorkerConfig::from_conf(&EmberConf::new(), masters()).unwrap();
        assert_eq!(c.port, 0);
        assert_eq!(c.ui_port, 8081);
        assert!(c.cores >= 1);
        assert!(c.memory_mb >= 1024);
        assert!(c.work_dir.is_absolute() && c.work_dir.ends_with("work"));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(15));
        assert_eq!(
            c.registration,
            RegistrationConfig {
                initial_retries: 6,
                max_retries: 16,
                initial_interval: Duration::from_secs(10),
                prolonged_interval: Duration::from_secs(60),
            }
        );
        assert_eq!(
            c.cleanup,
            Some(CleanupConfig {
                interval: Duration::from_secs(1800),
                app_data_ttl: Duration::from_secs(7 * 86_400),
            })
        );
        assert_eq!((c.retained_executors, c.retained_drivers), (1000, 1000));
        assert_eq!(c.executor_state_sync_max_attempts, 5);
        assert_eq!(c.executor_terminate_timeout, Duration::from_secs(10));
        assert_eq!(c.driver_terminate_timeout, Duration::from_secs(10));
    }

    #[test]
    fn values_are_read() {
        let conf = EmberConf::from_pairs([
            ("ember.worker.host", "10.0.0.5"),
            ("ember.worker.cores", "3"),
            ("ember.worker.memory", "2g"),
            ("ember.worker.dir", "/var/ember/work"),
            ("ember.worker.timeout", "8s"),
            ("ember.worker.cleanup.enabled", "false"),
            ("ember.worker.registration.initialInterval", "50ms"),
        ]);
        let c = WorkerConfig::from_conf(&conf, masters()).unwrap();
        assert_eq!(c.host, "10.0.0.5");
        assert_eq!(c.cores, 3);
        assert_eq!(c.memory_mb, 2048);
        assert_eq!(c.work_dir, PathBuf::from("/var/ember/work"));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(c.cleanup, None);
        assert_eq!(c.registration.initial_interval, Duration::from_millis(50));
    }

    #[test]
    fn invalid_values_name_their_key() {
        for (key, value) in [
            ("ember.worker.cores", "0"),
            ("ember.worker.cores", "many"),
            ("ember.worker.memory", "0"),
            ("ember.worker.timeout", "0s"),
            ("ember.worker.registration.initialInterval", "0"),
            ("ember.worker.initialRegistrationRetries", "17"),
            ("ember.worker.executorStateSync.maxAttempts", "0"),
            ("ember.worker.host", " "),
        ] {
            let conf = EmberConf::from_pairs([(key, value)]);
            let err = WorkerConfig::from_conf(&conf, masters()).unwrap_err();
            assert!(err.to_string().contains(key), "{key}={value}: {err}");
        }
        let err = WorkerConfig::from_conf(&EmberConf::new(), vec![]).unwrap_err();
        assert!(matches!(err, DeployError::NoMasters), "{err}");
    }

    #[test]
    fn meminfo_is_parsed() {
        let text = "MemTotal:       24592212 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_mem_total_kib(text), Some(24_592_212));
        assert_eq!(parse_mem_total_kib("nothing"), None);
    }
}
