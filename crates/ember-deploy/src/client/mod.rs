//! Clients of the Master that live in other processes: the application client a driver uses
//! ([`app_client`]); the submission client (`ember submit`) will join it.
//!
//! Spark counterpart: `org.apache.spark.deploy.client` (`StandaloneAppClient`).

pub mod app_client;

use std::time::Duration;

use ember_rpc::{ConfigEntry, ConfigEntryDoc, TimeUnit};

pub use app_client::{AppClient, AppClientConf, AppClientListener};

/// `ember.app.registration.timeout`: how long the AppClient waits for a master to accept the
/// application before trying every master again.
pub const APP_REGISTRATION_TIMEOUT: ConfigEntry<Duration> = ConfigEntry::duration(
    "ember.app.registration.timeout",
    Some("20s"),
    TimeUnit::Seconds,
    "How long a driver waits for a master to accept its application before sending the \
     registration to every master again (Spark: 20 s, fixed); a bare number is in seconds.",
);

/// `ember.app.registration.retries`: registration rounds before giving up.
pub const APP_REGISTRATION_RETRIES: ConfigEntry<u32> = ConfigEntry::new(
    "ember.app.registration.retries",
    Some("3"),
    "How many rounds of registration a driver tries before it gives up with \"All masters are \
     unresponsive\" (Spark: 3, fixed).",
);

/// The keys the clients read.
pub fn config_entries() -> Vec<ConfigEntryDoc> {
    vec![
        APP_REGISTRATION_TIMEOUT.describe(),
        APP_REGISTRATION_RETRIES.describe(),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn entries_are_valid() {
        ember_rpc::conf::assert_entries_valid(&super::config_entries());
    }
}
