//! The Master's configuration keys, declared once, and the validated [`MasterConfig`] built from
//! them.
//!
//! Spark counterparts: the `spark.deploy.*` / `spark.master.*` entries of
//! `internal/config/Deploy.scala` and `UI.scala`, and `MasterArguments` (host, ports and the
//! `SPARK_MASTER_*` environment variables). Spark reads them one by one in the `Master`
//! constructor; here [`MasterConfig::from_conf`] reads and checks them all up front, so that a
//! bad setting stops the daemon at start-up with an error naming the key.

use std::path::PathBuf;
use std::time::Duration;

use ember_rpc::{ConfigEntry, ConfigEntryDoc, ConfigEnum, EmberConf, TimeUnit};

use crate::config::{WORKER_TIMEOUT, local_hostname};
use crate::error::DeployError;

/// `ember.master.host`: the host the master listens on and advertises.
pub const MASTER_HOST: ConfigEntry<String> = ConfigEntry::new(
    "ember.master.host",
    None,
    "Host name or IP address the master's RPC endpoint and web UI listen on and advertise \
     (default: this machine's host name).",
)
.with_env("EMBER_MASTER_HOST");
/// `ember.master.port`: the master's RPC port.
pub const MASTER_PORT: ConfigEntry<u16> = ConfigEntry::new(
    "ember.master.port",
    Some("7077"),
    "Port of the master's RPC endpoint (0 picks a free port).",
)
.with_env("EMBER_MASTER_PORT");
/// `ember.master.ui.port`: the master's web UI port.
pub const MASTER_UI_PORT: ConfigEntry<u16> = ConfigEntry::new(
    "ember.master.ui.port",
    Some("8080"),
    "Port of the master's web UI (0 picks a free port).",
)
.with_env("EMBER_MASTER_WEBUI_PORT");
/// `ember.dead.worker.persistence`: how many timeouts a DEAD worker stays visible.
pub const DEAD_WORKER_PERSISTENCE: ConfigEntry<u32> = ConfigEntry::new(
    "ember.dead.worker.persistence",
    Some("15"),
    "A DEAD worker stays listed (UI, JSON) until (this + 1) x ember.worker.timeout after its \
     last heartbeat.",
);
/// `ember.deploy.recoveryMode`: how a master that becomes leader recovers its predecessor's state.
pub const RECOVERY_MODE: ConfigEntry<RecoveryMode> = ConfigEntry::new(
    "ember.deploy.recoveryMode",
    Some("NONE"),
    "Where the master keeps the state a new leader recovers: NONE (nothing is kept), FILESYSTEM \
     (files in ember.deploy.recoveryDirectory) or ZOOKEEPER (not supported yet).",
);
/// `ember.deploy.recoveryDirectory`: the FILESYSTEM recovery directory.
pub const RECOVERY_DIRECTORY: ConfigEntry<String> = ConfigEntry::new(
    "ember.deploy.recoveryDirectory",
    None,
    "Directory holding the recovery state in FILESYSTEM recovery mode (created if missing).",
);
/// `ember.deploy.recoveryTimeout`: how long a recovering master waits for answers.
pub const RECOVERY_TIMEOUT: ConfigEntry<Duration> = ConfigEntry::duration(
    "ember.deploy.recoveryTimeout",
    None,
    TimeUnit::Seconds,
    "How long a recovering master waits for its workers and applications to answer before \
     dropping the silent ones (default: ember.worker.timeout). A bare number is in seconds.",
);
/// `ember.deploy.retainedApplications`: finished applications kept for the UI.
pub const RETAINED_APPLICATIONS: ConfigEntry<usize> = ConfigEntry::new(
    "ember.deploy.retainedApplications",
    Some("200"),
    "Finished applications listed by the master; when full, the oldest tenth is dropped.",
);
/// `ember.deploy.retainedDrivers`: finished drivers kept for the UI.
pub const RETAINED_DRIVERS: ConfigEntry<usize> = ConfigEntry::new(
    "ember.deploy.retainedDrivers",
    Some("200"),
    "Finished drivers listed by the master; when full, the oldest tenth is dropped.",
);
/// `ember.deploy.spreadOut`: spread each application's executors over many workers.
pub const SPREAD_OUT: ConfigEntry<bool> = ConfigEntry::new(
    "ember.deploy.spreadOut",
    Some("true"),
    "Spread an application's cores over as many workers as possible (true), or fill one worker \
     before using the next (false).",
);
/// `ember.deploy.spreadOutDrivers`: place drivers round-robin over shuffled workers.
pub const SPREAD_OUT_DRIVERS: ConfigEntry<bool> = ConfigEntry::new(
    "ember.deploy.spreadOutDrivers",
    Some("true"),
    "Place drivers round-robin over the ALIVE workers in random order (true), or on the first \
     worker by id that fits (false).",
);
/// `ember.deploy.defaultCores`: cores for applications that do not set `ember.cores.max`.
pub const DEFAULT_CORES: ConfigEntry<u32> = ConfigEntry::new(
    "ember.deploy.defaultCores",
    None,
    "Cores granted to an application that does not set ember.cores.max (default: unlimited). \
     Must be at least 1.",
);
/// `ember.deploy.maxExecutorRetries`: executor failures in a row before an application fails.
pub const MAX_EXECUTOR_RETRIES: ConfigEntry<i32> = ConfigEntry::new(
    "ember.deploy.maxExecutorRetries",
    Some("10"),
    "Abnormal executor exits in a row (without an executor reaching RUNNING in between) after \
     which the master removes an application that has no running executor; -1 disables.",
);
/// `ember.deploy.maxDrivers`: drivers running at once in the cluster.
pub const MAX_DRIVERS: ConfigEntry<u32> = ConfigEntry::new(
    "ember.deploy.maxDrivers",
    None,
    "Most drivers (cluster deploy mode) running at once; more wait (default: unlimited). Must \
     be at least 1.",
);
/// `ember.deploy.workerSelectionPolicy`: the order in which workers are offered to executors.
pub const WORKER_SELECTION_POLICY: ConfigEntry<WorkerSelectionPolicy> = ConfigEntry::new(
    "ember.deploy.workerSelectionPolicy",
    Some("CORES_FREE_DESC"),
    "Order in which usable workers receive executors: CORES_FREE_DESC, CORES_FREE_ASC, \
     MEMORY_FREE_DESC, MEMORY_FREE_ASC (ties broken by worker id in the same direction) or \
     WORKER_ID.",
);

/// The keys declared here (the shared `ember.worker.timeout` is declared in
/// [`crate::config`]).
pub fn config_entries() -> Vec<ConfigEntryDoc> {
    vec![
        MASTER_HOST.describe(),
        MASTER_PORT.describe(),
        MASTER_UI_PORT.describe(),
        DEAD_WORKER_PERSISTENCE.describe(),
        RECOVERY_MODE.describe(),
        RECOVERY_DIRECTORY.describe(),
        RECOVERY_TIMEOUT.describe(),
        RETAINED_APPLICATIONS.describe(),
        RETAINED_DRIVERS.describe(),
        SPREAD_OUT.describe(),
        SPREAD_OUT_DRIVERS.describe(),
        DEFAULT_CORES.describe(),
        MAX_EXECUTOR_RETRIES.describe(),
        MAX_DRIVERS.describe(),
        WORKER_SELECTION_POLICY.describe(),
    ]
}

/// The values of `ember.deploy.recoveryMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Nothing is persisted; a restarted master starts empty.
    None,
    /// Records are files in `ember.deploy.recoveryDirectory`.
    FileSystem,
    /// Records in ZooKeeper, with leader election (a later issue).
    ZooKeeper,
}

impl ConfigEnum for RecoveryMode {
    const VARIANTS: &'static [(&'static str, Self)] = &[
        ("NONE", RecoveryMode::None),
        ("FILESYSTEM", RecoveryMode::FileSystem),
        ("ZOOKEEPER", RecoveryMode::ZooKeeper),
    ];
}

/// The values of `ember.deploy.workerSelectionPolicy` (Spark 4.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerSelectionPolicy {
    /// Fewest free cores first; ties by ascending worker id.
    CoresFreeAsc,
    /// Most free cores first; ties by descending worker id (Spark's default).
    CoresFreeDesc,
    /// Least free memory first; ties by ascending worker id.
    MemoryFreeAsc,
    /// Most free memory first; ties by descending worker id.
    MemoryFreeDesc,
    /// Ascending worker id.
    WorkerId,
}

impl ConfigEnum for WorkerSelectionPolicy {
    const VARIANTS: &'static [(&'static str, Self)] = &[
        ("CORES_FREE_ASC", WorkerSelectionPolicy::CoresFreeAsc),
        ("CORES_FREE_DESC", WorkerSelectionPolicy::CoresFreeDesc),
        ("MEMORY_FREE_ASC", WorkerSelectionPolicy::MemoryFreeAsc),
        ("MEMORY_FREE_DESC", WorkerSelectionPolicy::MemoryFreeDesc),
        ("WORKER_ID", WorkerSelectionPolicy::WorkerId),
    ];
}

/// Where a leading master keeps the state its successor recovers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryConfig {
    /// `NONE`: nothing is kept.
    None,
    /// `FILESYSTEM`: one file per worker, application and driver in `directory`.
    FileSystem {
        /// `ember.deploy.recoveryDirectory`.
        directory: PathBuf,
    },
}

/// The Master's settings, read and checked once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterConfig {
    /// Host to listen on and advertise (`ember.master.host`).
    pub host: String,
    /// RPC port (`ember.master.port`); 0 picks one.
    pub port: u16,
    /// Web UI port (`ember.master.ui.port`); 0 picks one.
    pub web_ui_port: u16,
    /// `ember.worker.timeout`: a worker without a heartbeat for this long is DEAD.
    pub worker_timeout: Duration,
    /// `ember.dead.worker.persistence`.
    pub dead_worker_persistence: u32,
    /// `ember.deploy.recoveryMode` with its directory.
    pub recovery: RecoveryConfig,
    /// `ember.deploy.recoveryTimeout` (default: the worker timeout).
    pub recovery_timeout: Duration,
    /// `ember.deploy.retainedApplications`.
    pub retained_applications: usize,
    /// `ember.deploy.retainedDrivers`.
    pub retained_drivers: usize,
    /// `ember.deploy.spreadOut`.
    pub spread_out_apps: bool,
    /// `ember.deploy.spreadOutDrivers`.
    pub spread_out_drivers: bool,
    /// `ember.deploy.defaultCores`; `u32::MAX` means unlimited.
    pub default_cores: u32,
    /// `ember.deploy.maxExecutorRetries`; `None` when disabled (-1).
    pub max_executor_retries: Option<u32>,
    /// `ember.deploy.maxDrivers`; `u32::MAX` means unlimited.
    pub max_drivers: u32,
    /// `ember.deploy.workerSelectionPolicy`.
    pub worker_selection_policy: WorkerSelectionPolicy,
}

impl MasterConfig {
    /// Reads and validates every master key of `conf`. Each error names the key at fault.
    pub fn from_conf(conf: &EmberConf) -> Result<MasterConfig, DeployError> {
        let worker_timeout = conf.get(&WORKER_TIMEOUT)?;
        if worker_timeout.is_zero() {
            return Err(invalid(&WORKER_TIMEOUT, "must be greater than 0"));
        }
        let recovery = match conf.get(&RECOVERY_MODE)? {
            RecoveryMode::None => RecoveryConfig::None,
            RecoveryMode::FileSystem => {
                let directory = conf
                    .get_opt(&RECOVERY_DIRECTORY)?
                    .filter(|d| !d.trim().is_empty())
                    .ok_or_else(|| {
                        invalid(
                            &RECOVERY_DIRECTORY,
                            "must be set when ember.deploy.recoveryMode is FILESYSTEM",
                        )
                    })?;
                RecoveryConfig::FileSystem {
                    directory: PathBuf::from(directory),
                }
            }
            RecoveryMode::ZooKeeper => {
                return Err(invalid(
                    &RECOVERY_MODE,
                    "ZOOKEEPER recovery is not supported yet (a later issue adds it); use NONE \
                     or FILESYSTEM",
                ));
            }
        };
        let recovery_timeout = conf.get_opt(&RECOVERY_TIMEOUT)?.unwrap_or(worker_timeout);
        if recovery_timeout.is_zero() {
            return Err(invalid(&RECOVERY_TIMEOUT, "must be greater than 0"));
        }
        let default_cores = match conf.get_opt(&DEFAULT_CORES)? {
            Some(0) => return Err(invalid(&DEFAULT_CORES, "must be at least 1")),
            Some(n) => n,
            None => u32::MAX,
        };
        let max_drivers = match conf.get_opt(&MAX_DRIVERS)? {
            Some(0) => return Err(invalid(&MAX_DRIVERS, "must be at least 1")),
            Some(n) => n,
            None => u32::MAX,
        };
        let max_executor_retries = match conf.get(&MAX_EXECUTOR_RETRIES)? {
            -1 => None,
            n if n < -1 => {
                return Err(invalid(
                    &MAX_EXECUTOR_RETRIES,
                    "must be -1 (disabled) or a count from 0",
                ));
            }
            n => Some(n as u32),
        };
        Ok(MasterConfig {
            host: conf
                .get_opt(&MASTER_HOST)?
                .filter(|h| !h.trim().is_empty())
                .unwrap_or_else(local_hostname),
            port: conf.get(&MASTER_PORT)?,
            web_ui_port: conf.get(&MASTER_UI_PORT)?,
            worker_timeout,
            dead_worker_persistence: conf.get(&DEAD_WORKER_PERSISTENCE)?,
            recovery,
            recovery_timeout,
            retained_applications: conf.get(&RETAINED_APPLICATIONS)?,
            retained_drivers: conf.get(&RETAINED_DRIVERS)?,
            spread_out_apps: conf.get(&SPREAD_OUT)?,
            spread_out_drivers: conf.get(&SPREAD_OUT_DRIVERS)?,
            default_cores,
            max_executor_retries,
            max_drivers,
            worker_selection_policy: conf.get(&WORKER_SELECTION_POLICY)?,
        })
    }

    /// The defaults, listening on `host` with both ports at 0 (for tests and embedding).
    pub fn local(host: impl Into<String>) -> MasterConfig {
        let mut conf = EmberConf::new();
        conf.set(MASTER_HOST.key(), host.into())
            .set(MASTER_PORT.key(), "0")
            .set(MASTER_UI_PORT.key(), "0");
        MasterConfig::from_conf(&conf).expect("the defaults are valid")
    }

    /// How often the master looks for workers whose heartbeats stopped.
    ///
    /// Spark checks once per `ember.worker.timeout`, so a silent worker is declared DEAD between
    /// one and two timeouts after its last heartbeat. Ember checks four times per timeout (as
    /// often as workers heartbeat), which bounds that to 1.25 timeouts; a check is one pass over
    /// the workers, cheap even for thousands.
    pub fn worker_check_period(&self) -> Duration {
        (self.worker_timeout / 4).max(Duration::from_millis(1))
    }
}

fn invalid<T: ember_rpc::ConfigValue>(entry: &ConfigEntry<T>, reason: &str) -> DeployError {
    DeployError::InvalidConfig {
        key: entry.key(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_valid() {
        let mut all = config_entries();
        all.extend(crate::config::config_entries());
        ember_rpc::conf::assert_entries_valid(&all);
    }

    #[test]
    fn defaults_match_spark() {
        let c = MasterConfig::from_conf(&EmberConf::new()).unwrap();
        assert_eq!(c.port, 7077);
        assert_eq!(c.web_ui_port, 8080);
        assert_eq!(c.worker_timeout, Duration::from_secs(60));
        assert_eq!(c.recovery_timeout, Duration::from_secs(60));
        assert_eq!(c.dead_worker_persistence, 15);
        assert_eq!(c.recovery, RecoveryConfig::None);
        assert_eq!((c.retained_applications, c.retained_drivers), (200, 200));
        assert!(c.spread_out_apps && c.spread_out_drivers);
        assert_eq!(c.default_cores, u32::MAX);
        assert_eq!(c.max_drivers, u32::MAX);
        assert_eq!(c.max_executor_retries, Some(10));
        assert_eq!(
            c.worker_selection_policy,
            WorkerSelectionPolicy::CoresFreeDesc
        );
        assert!(!c.host.is_empty());
        assert_eq!(c.worker_check_period(), Duration::from_secs(15));
    }

    #[test]
    fn values_are_read() {
        let conf = EmberConf::from_pairs([
            ("ember.master.host", "10.1.2.3"),
            ("ember.master.port", "7177"),
            ("ember.worker.timeout", "2s"),
            ("ember.deploy.recoveryMode", "filesystem"),
            ("ember.deploy.recoveryDirectory", "/tmp/rec"),
            ("ember.deploy.recoveryTimeout", "500ms"),
            ("ember.deploy.defaultCores", "4"),
            ("ember.deploy.maxExecutorRetries", "-1"),
            ("ember.deploy.maxDrivers", "3"),
            ("ember.deploy.workerSelectionPolicy", "worker_id"),
            ("ember.deploy.spreadOut", "false"),
        ]);
        let c = MasterConfig::from_conf(&conf).unwrap();
        assert_eq!(c.host, "10.1.2.3");
        assert_eq!(c.port, 7177);
        assert_eq!(
            c.recovery,
            RecoveryConfig::FileSystem {
                directory: "/tmp/rec".into()
            }
        );
        assert_eq!(c.recovery_timeout, Duration::from_millis(500));
        assert_eq!(c.default_cores, 4);
        assert_eq!(c.max_executor_retries, None);
        assert_eq!(c.max_drivers, 3);
        assert_eq!(c.worker_selection_policy, WorkerSelectionPolicy::WorkerId);
        assert!(!c.spread_out_apps);
    }

    #[test]
    fn bad_settings_name_their_key() {
        for (pairs, key, words) in [
            (
                vec![("ember.deploy.recoveryMode", "FILESYSTEM")],
                "ember.deploy.recoveryDirectory",
                "FILESYSTEM",
            ),
            (
                vec![("ember.deploy.recoveryMode", "ZOOKEEPER")],
                "ember.deploy.recoveryMode",
                "not supported yet",
            ),
            (
                vec![("ember.deploy.defaultCores", "0")],
                "ember.deploy.defaultCores",
                "at least 1",
            ),
            (
                vec![("ember.deploy.maxDrivers", "0")],
                "ember.deploy.maxDrivers",
                "at least 1",
            ),
            (
                vec![("ember.deploy.maxExecutorRetries", "-2")],
                "ember.deploy.maxExecutorRetries",
                "-1",
            ),
            (
                vec![("ember.worker.timeout", "0s")],
                "ember.worker.timeout",
                "greater than 0",
            ),
            (
                vec![("ember.deploy.recoveryTimeout", "0")],
                "ember.deploy.recoveryTimeout",
                "greater than 0",
            ),
            (
                vec![("ember.deploy.recoveryMode", "etcd")],
                "ember.deploy.recoveryMode",
                "etcd",
            ),
            (
                vec![("ember.master.port", "77777")],
                "ember.master.port",
                "77777",
            ),
        ] {
            let err = MasterConfig::from_conf(&EmberConf::from_pairs(pairs)).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(key) && text.contains(words), "{text}");
        }
    }
}
