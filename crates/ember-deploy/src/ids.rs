//! Identifiers of workers, applications, drivers and executors.
//!
//! Spark uses bare strings and ints; here every id is a newtype so that a worker id cannot be
//! passed where an application id is expected. The formats follow Spark's defaults
//! (`worker-<yyyyMMddHHmmss>-<host>-<port>`, `app-<yyyyMMddHHmmss>-<nnnn>`,
//! `driver-<yyyyMMddHHmmss>-<nnnn>`) so that logs and UIs read the same.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

string_id!(
    /// A worker, e.g. `worker-20261121122139-127.0.0.1-7078`.
    WorkerId
);
string_id!(
    /// An application, e.g. `app-20261121122147-0000`.
    AppId
);
string_id!(
    /// A driver submitted in cluster mode, e.g. `driver-20261121122147-0000`.
    DriverId
);

/// An executor, numbered per application from 0 (Spark's `execId: Int`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExecutorId(pub u32);

impl fmt::Display for ExecutorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for ExecutorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `appId/execId`, the key Spark uses for an executor across applications.
pub fn full_executor_id(app: &AppId, exec: ExecutorId) -> String {
    format!("{app}/{exec}")
}

/// `yyyyMMddHHmmss` of a Unix time in milliseconds, in UTC (ids are compared as text, so they
/// must not depend on the local time zone).
pub fn compact_timestamp(unix_millis: u64) -> String {
    let (y, mo, d, h, mi, s) = civil_from_unix(unix_millis / 1000);
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}")
}

/// Splits Unix seconds into a UTC calendar date and time (proleptic Gregorian).
pub fn civil_from_unix(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, mi, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Days to civil date, after Howard Hinnant's public-domain algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, h as u32, mi as u32, s as u32)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl WorkerId {
    /// Spark's default worker id: `worker-<timestamp>-<host>-<port>`.
    pub fn generate(unix_millis: u64, host: &str, port: u16) -> Self {
        Self(format!(
            "worker-{}-{host}-{port}",
            compact_timestamp(unix_millis)
        ))
    }
}

impl AppId {
    /// Spark's default application id: `app-<timestamp>-<number, 4 digits at least>`.
    pub fn generate(unix_millis: u64, number: u64) -> Self {
        Self(format!(
            "app-{}-{number:04}",
            compact_timestamp(unix_millis)
        ))
    }
}

impl DriverId {
    /// Spark's default driver id: `driver-<timestamp>-<number, 4 digits at least>`.
    pub fn generate(unix_millis: u64, number: u64) -> Self {
        Self(format!(
            "driver-{}-{number:04}",
            compact_timestamp(unix_millis)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_sparks_formats() {
        // 2026-11-21 12:21:47 UTC
        let t = 1_795_263_707_520;
        assert_eq!(compact_timestamp(t), "20261121122147");
        assert_eq!(AppId::generate(t, 0).0, "app-20261121122147-0000");
        assert_eq!(
            DriverId::generate(t, 12_345).0,
            "driver-20261121122147-12345"
        );
        assert_eq!(
            WorkerId::generate(t, "10.0.0.1", 7078).0,
            "worker-20261121122147-10.0.0.1-7078"
        );
        assert_eq!(compact_timestamp(0), "19700101000000");
        assert_eq!(full_executor_id(&"app-1".into(), ExecutorId(3)), "app-1/3");
    }
}
