//! Configuration keys shared by the Master and the Worker, and host-name defaults.
//!
//! Each daemon declares its own keys in its `config` module; the ones both read live here, so
//! that they are declared once.

use std::time::Duration;

use ember_rpc::{ConfigEntry, ConfigEntryDoc, TimeUnit};

/// `ember.worker.timeout`: the master declares a worker dead after this long without a
/// heartbeat; workers heartbeat every quarter of it.
pub const WORKER_TIMEOUT: ConfigEntry<Duration> = ConfigEntry::duration(
    "ember.worker.timeout",
    Some("60s"),
    TimeUnit::Seconds,
    "A worker without a heartbeat for this long is marked DEAD by the master; workers send \
     heartbeats every quarter of it. A bare number is in seconds.",
);

/// The keys declared here.
pub fn config_entries() -> Vec<ConfigEntryDoc> {
    vec![WORKER_TIMEOUT.describe()]
}

/// This machine's host name (`/proc/sys/kernel/hostname`, then `$HOSTNAME`), or `localhost`.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn entries_are_valid() {
        ember_rpc::conf::assert_entries_valid(&super::config_entries());
    }
}
