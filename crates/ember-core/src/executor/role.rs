//! The executor role: how a process learns it must run as an executor, and for which driver.
//!
//! Spark passes `--driver-url --executor-id --hostname --cores --app-id --worker-url` on the
//! command line of `CoarseGrainedExecutorBackend`. Ember starts the *application's own binary*
//! as the executor, with the user's arguments untouched, so the role travels in environment
//! variables instead; the entry point ([`run_if_executor_role`](super::run_if_executor_role))
//! reads them before any user code runs. The worker substitutes the `{{…}}` placeholders.
//!
//! | variable | value |
//! |---|---|
//! | `EMBER_EXECUTOR` | `1`: run as an executor |
//! | `EMBER_DRIVER_URL` | `ember://CoarseGrainedScheduler@host:port` |
//! | `EMBER_EXECUTOR_ID` | `{{EXECUTOR_ID}}` |
//! | `EMBER_EXECUTOR_HOSTNAME` | `{{HOSTNAME}}`: the host to listen on and advertise |
//! | `EMBER_EXECUTOR_CORES` | `{{CORES}}`: task threads |
//! | `EMBER_EXECUTOR_MEMORY_MB` | `{{MEMORY_MB}}` (informational) |
//! | `EMBER_APP_ID` | `{{APP_ID}}` |
//! | `EMBER_WORKER_URL` | `{{WORKER_URL}}`: the executor exits when this worker goes away (may be empty) |
//! | `EMBER_EXECUTOR_OPTS` | `-Dkey=value …`: the RPC settings the executor's RpcEnv needs before it can talk to the driver |

use ember_deploy::description::placeholder;
use ember_rpc::{EmberConf, RpcAddress, parse_endpoint_url};

use crate::error::CoreError;
use crate::ids::ExecutorId;

/// Set to `1` to select the executor role.
pub const EXECUTOR_VAR: &str = "EMBER_EXECUTOR";
/// The driver endpoint's URL.
pub const DRIVER_URL_VAR: &str = "EMBER_DRIVER_URL";
/// The executor id.
pub const EXECUTOR_ID_VAR: &str = "EMBER_EXECUTOR_ID";
/// The host the executor listens on and advertises.
pub const HOSTNAME_VAR: &str = "EMBER_EXECUTOR_HOSTNAME";
/// Task threads.
pub const CORES_VAR: &str = "EMBER_EXECUTOR_CORES";
/// Memory granted, in MiB.
pub const MEMORY_VAR: &str = "EMBER_EXECUTOR_MEMORY_MB";
/// The application id.
pub const APP_ID_VAR: &str = "EMBER_APP_ID";
/// The worker's endpoint URL.
pub const WORKER_URL_VAR: &str = "EMBER_WORKER_URL";
/// `-Dkey=value` settings for the executor.
pub const OPTS_VAR: &str = "EMBER_EXECUTOR_OPTS";

/// RPC keys an executor needs before it first talks to the driver.
const STARTUP_KEYS: &[&str] = &[
    "ember.rpc.message.maxSize",
    "ember.rpc.askTimeout",
    "ember.rpc.connect.timeout",
    "ember.authenticate",
];

/// Who this executor process is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorRole {
    /// `ember://CoarseGrainedScheduler@host:port`.
    pub driver_url: String,
    /// The driver's RpcEnv.
    pub driver_address: RpcAddress,
    /// The driver endpoint's name.
    pub driver_endpoint: String,
    /// This executor's id.
    pub executor_id: ExecutorId,
    /// The host to listen on and advertise.
    pub hostname: String,
    /// Task threads.
    pub cores: u32,
    /// Memory granted, in MiB, when known.
    pub memory_mb: Option<u32>,
    /// The application.
    pub app_id: String,
    /// The worker's endpoint URL, when started by a worker.
    pub worker_url: Option<String>,
    /// `-Dkey=value` settings.
    pub opts: Vec<(String, String)>,
}

impl ExecutorRole {
    /// The role from the process environment: `None` when `EMBER_EXECUTOR` is not `1`.
    pub fn from_env() -> Option<Result<ExecutorRole, CoreError>> {
        Self::from_vars(|var| std::env::var(var).ok())
    }

    /// The role from variables looked up by `get`.
    pub fn from_vars(
        get: impl Fn(&str) -> Option<String>,
    ) -> Option<Result<ExecutorRole, CoreError>> {
        if get(EXECUTOR_VAR).as_deref() != Some("1") {
            return None;
        }
        Some(Self::parse(&get))
    }

    fn parse(get: &impl Fn(&str) -> Option<String>) -> Result<ExecutorRole, CoreError> {
        let bad =
            |var: &'static str, reason: String| CoreError::ExecutorEnvironment { var, reason };
        let optional = |var: &'static str| -> Result<Option<String>, CoreError> {
            match get(var) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) if v.contains("{{") => Err(bad(
                    var,
                    format!("still holds a placeholder ({v:?}); the worker should substitute it"),
                )),
                Some(v) => Ok(Some(v.trim().to_owned())),
            }
        };
        let required = |var: &'static str| -> Result<String, CoreError> {
            optional(var)?.ok_or_else(|| bad(var, "is not set".to_owned()))
        };
        let driver_url = required(DRIVER_URL_VAR)?;
        let (driver_address, driver_endpoint) =
            parse_endpoint_url(&driver_url).map_err(|e| bad(DRIVER_URL_VAR, e.to_string()))?;
        let cores_text = required(CORES_VAR)?;
        let cores = match cores_text.parse::<u32>() {
            Ok(0) | Err(_) => {
                return Err(bad(
                    CORES_VAR,
                    format!("must be a positive integer, not {cores_text:?}"),
                ));
            }
            Ok(n) => n,
        };
        let memory_mb = match optional(MEMORY_VAR)? {
            Some(m) => Some(
                m.parse::<u32>()
                    .map_err(|_| bad(MEMORY_VAR, format!("must be a number of MiB, not {m:?}")))?,
            ),
            None => None,
        };
        let worker_url = optional(WORKER_URL_VAR)?;
        if let Some(url) = &worker_url {
            parse_endpoint_url(url).map_err(|e| bad(WORKER_URL_VAR, e.to_string()))?;
        }
        let opts = match get(OPTS_VAR) {
            Some(text) => ember_rpc::conf::parse_opts(OPTS_VAR, &text)
                .map_err(|e| bad(OPTS_VAR, e.to_string()))?,
            None => Vec::new(),
        };
        Ok(ExecutorRole {
            driver_url,
            driver_address,
            driver_endpoint,
            executor_id: ExecutorId(required(EXECUTOR_ID_VAR)?),
            hostname: optional(HOSTNAME_VAR)?.unwrap_or_else(|| "127.0.0.1".to_owned()),
            cores,
            memory_mb,
            app_id: required(APP_ID_VAR)?,
            worker_url,
            opts,
        })
    }

    /// The worker's address, when there is a worker.
    pub fn worker_address(&self) -> Option<(RpcAddress, String)> {
        self.worker_url
            .as_deref()
            .and_then(|url| parse_endpoint_url(url).ok())
    }
}

/// The environment a worker gives an executor of this driver (placeholders included).
pub fn executor_environment(driver_url: &str, conf: &EmberConf) -> Vec<(String, String)> {
    let opts: Vec<String> = STARTUP_KEYS
        .iter()
        .filter_map(|key| conf.get_raw(key).map(|v| (key, v)))
        .filter(|(_, v)| !v.is_empty() && !v.contains(char::is_whitespace))
        .map(|(key, v)| format!("-D{key}={v}"))
        .collect();
    let mut env = vec![
        (EXECUTOR_VAR.to_owned(), "1".to_owned()),
        (DRIVER_URL_VAR.to_owned(), driver_url.to_owned()),
        (
            EXECUTOR_ID_VAR.to_owned(),
            placeholder::EXECUTOR_ID.to_owned(),
        ),
        (HOSTNAME_VAR.to_owned(), placeholder::HOSTNAME.to_owned()),
        (CORES_VAR.to_owned(), placeholder::CORES.to_owned()),
        (MEMORY_VAR.to_owned(), placeholder::MEMORY_MB.to_owned()),
        (APP_ID_VAR.to_owned(), placeholder::APP_ID.to_owned()),
        (
            WORKER_URL_VAR.to_owned(),
            placeholder::WORKER_URL.to_owned(),
        ),
    ];
    if !opts.is_empty() {
        env.push((OPTS_VAR.to_owned(), opts.join(" ")));
    }
    env
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn role(map: &HashMap<String, String>) -> Option<Result<ExecutorRole, CoreError>> {
        ExecutorRole::from_vars(|k| map.get(k).cloned())
    }

    const GOOD: &[(&str, &str)] = &[
        (EXECUTOR_VAR, "1"),
        (
            DRIVER_URL_VAR,
            "ember://CoarseGrainedScheduler@10.0.0.1:4000",
        ),
        (EXECUTOR_ID_VAR, "3"),
        (HOSTNAME_VAR, "10.0.0.2"),
        (CORES_VAR, "2"),
        (MEMORY_VAR, "1024"),
        (APP_ID_VAR, "app-1"),
        (WORKER_URL_VAR, "ember://Worker@10.0.0.2:7078"),
        (OPTS_VAR, "-Dember.rpc.message.maxSize=2"),
    ];

    #[test]
    fn reads_the_role() {
        assert!(role(&vars(&[])).is_none());
        assert!(role(&vars(&[(EXECUTOR_VAR, "0")])).is_none());
        let r = role(&vars(GOOD)).unwrap().unwrap();
        assert_eq!(r.driver_address, RpcAddress::new("10.0.0.1", 4000));
        assert_eq!(r.driver_endpoint, "CoarseGrainedScheduler");
        assert_eq!(r.executor_id.as_str(), "3");
        assert_eq!((r.cores, r.memory_mb), (2, Some(1024)));
        assert_eq!(
            r.worker_address(),
            Some((RpcAddress::new("10.0.0.2", 7078), "Worker".to_owned()))
        );
        assert_eq!(
            r.opts,
            vec![("ember.rpc.message.maxSize".to_owned(), "2".to_owned())]
        );
    }

    #[test]
    fn empty_worker_url_means_no_worker() {
        let mut v = vars(GOOD);
        v.insert(WORKER_URL_VAR.into(), String::new());
        assert_eq!(role(&v).unwrap().unwrap().worker_url, None);
    }

    #[test]
    fn errors_name_the_variable() {
        let table: &[(&str, Option<&str>, &str)] = &[
            (DRIVER_URL_VAR, None, "is not set"),
            (
                DRIVER_URL_VAR,
                Some("ember://h:1"),
                "lacks the endpoint name",
            ),
            (CORES_VAR, Some("0"), "positive integer"),
            (CORES_VAR, Some("many"), "positive integer"),
            (EXECUTOR_ID_VAR, Some("{{EXECUTOR_ID}}"), "placeholder"),
            (APP_ID_VAR, None, "is not set"),
            (MEMORY_VAR, Some("1g"), "number of MiB"),
            (OPTS_VAR, Some("-Xmx1g"), "EMBER_EXECUTOR_OPTS"),
        ];
        for (var, value, reason) in table {
            let mut v = vars(GOOD);
            match value {
                Some(value) => v.insert((*var).to_owned(), (*value).to_owned()),
                None => v.remove(*var),
            };
            let err = role(&v).unwrap().unwrap_err();
            let text = err.to_string();
            assert!(text.contains(var) && text.contains(reason), "{var}: {text}");
        }
    }

    #[test]
    fn environment_selects_the_role_and_passes_rpc_settings() {
        let conf = EmberConf::from_pairs([
            ("ember.rpc.message.maxSize", "4m"),
            ("ember.app.name", "has spaces in it"),
        ]);
        let env = executor_environment("ember://CoarseGrainedScheduler@h:1", &conf);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get(EXECUTOR_VAR), Some("1"));
        assert_eq!(get(CORES_VAR), Some("{{CORES}}"));
        assert_eq!(get(OPTS_VAR), Some("-Dember.rpc.message.maxSize=4m"));
        // Substituted as a worker would, the environment parses back.
        let substituted: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| {
                let v = v
                    .replace("{{EXECUTOR_ID}}", "0")
                    .replace("{{HOSTNAME}}", "127.0.0.1")
                    .replace("{{CORES}}", "1")
                    .replace("{{MEMORY_MB}}", "512")
                    .replace("{{APP_ID}}", "app-0")
                    .replace("{{WORKER_URL}}", "ember://Worker@127.0.0.1:9");
                (k.clone(), v)
            })
            .collect();
        let r = role(&substituted).unwrap().unwrap();
        assert_eq!(r.cores, 1);
        assert_eq!(r.app_id, "app-0");
    }
}
