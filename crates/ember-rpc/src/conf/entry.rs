//! Typed configuration keys, declared once as constants beside the code that reads them.
//!
//! Spark counterpart: `ConfigEntry` and `ConfigBuilder` in `org.apache.spark.internal.config`.
//! A Spark entry is built by a chain of calls at class-initialisation time; here a
//! [`ConfigEntry<T>`] is a plain `const` value (key, default text, documentation, environment
//! variable, bare-number unit) and its type parameter decides how values are read. The default is
//! kept as text and parsed when read, so one test per crate can check every default at once with
//! [`assert_entries_valid`](super::assert_entries_valid).

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use super::error::{ConfError, redact_value};
use super::registry::ConfigEntryDoc;
use super::units::{BareUnit, ByteSize, ByteUnit, TimeUnit};
use super::value::ConfigValue;

/// One configuration key of type `T`, with its default, documentation and the environment
/// variable that may set it.
///
/// ```
/// use std::time::Duration;
/// use ember_rpc::conf::{ByteSize, ByteUnit, ConfigEntry, EmberConf, TimeUnit};
///
/// pub const WORKER_TIMEOUT: ConfigEntry<Duration> = ConfigEntry::duration(
///     "ember.worker.timeout",
///     Some("60s"),
///     TimeUnit::Seconds,
///     "Time without a heartbeat after which the master considers a worker lost.",
/// );
/// pub const WORKER_CORES: ConfigEntry<u32> =
///     ConfigEntry::new("ember.worker.cores", None, "Cores a worker offers (default: all).")
///         .with_env("EMBER_WORKER_CORES");
/// pub const EXECUTOR_MEMORY: ConfigEntry<ByteSize> = ConfigEntry::bytes(
///     "ember.executor.memory",
///     Some("1g"),
///     ByteUnit::MiB,
///     "Memory per executor.",
/// );
///
/// let mut conf = EmberConf::new();
/// conf.set("ember.worker.timeout", "90").set("ember.executor.memory", "512");
/// assert_eq!(conf.get(&WORKER_TIMEOUT).unwrap(), Duration::from_secs(90));
/// assert_eq!(conf.get(&EXECUTOR_MEMORY).unwrap(), ByteSize::from_mib(512));
/// assert_eq!(conf.get_opt(&WORKER_CORES).unwrap(), None);
/// ```
pub struct ConfigEntry<T> {
    key: &'static str,
    default: Option<&'static str>,
    doc: &'static str,
    env: Option<&'static str>,
    bare_unit: Option<BareUnit>,
    // `fn() -> T` so that the entry is Send, Sync and 'static whatever T is: it holds no T.
    value_type: PhantomData<fn() -> T>,
}

impl<T: ConfigValue> ConfigEntry<T> {
    /// An entry for `key` read as `T`, with a default (text, parsed when read) or none.
    ///
    /// For durations and sizes use [`duration`](ConfigEntry::duration) and
    /// [`bytes`](ConfigEntry::bytes), which also say what a bare number means.
    pub const fn new(key: &'static str, default: Option<&'static str>, doc: &'static str) -> Self {
        ConfigEntry {
            key,
            default,
            doc,
            env: None,
            bare_unit: None,
            value_type: PhantomData,
        }
    }

    /// The same entry, also set by the environment variable `var` when it is set and not empty
    /// (above the properties file, below the command line).
    pub const fn with_env(mut self, var: &'static str) -> Self {
        self.env = Some(var);
        self
    }

    /// The key (`ember.worker.timeout`).
    pub const fn key(&self) -> &'static str {
        self.key
    }

    /// The default, as text.
    pub const fn default_text(&self) -> Option<&'static str> {
        self.default
    }

    /// The documentation.
    pub const fn doc(&self) -> &'static str {
        self.doc
    }

    /// The environment variable that sets this key, if any.
    pub const fn env(&self) -> Option<&'static str> {
        self.env
    }

    /// What a bare number means for this key, if it is a duration or size key.
    pub const fn bare_unit(&self) -> Option<BareUnit> {
        self.bare_unit
    }

    /// The type-erased description of this entry, for registries, documentation and checks.
    pub const fn describe(&self) -> ConfigEntryDoc {
        ConfigEntryDoc::of::<T>(self.key, self.default, self.doc, self.env, self.bare_unit)
    }

    /// Reads `raw` as this entry's value; the error names the key and the value.
    pub fn parse(&self, raw: &str) -> Result<T, ConfError> {
        T::parse_conf(raw, self.bare_unit)
            .map_err(|reason| ConfError::invalid_value(self.key, raw, reason))
    }

    /// The parsed default, if the entry has one.
    pub fn default_value(&self) -> Result<Option<T>, ConfError> {
        let Some(default) = self.default else {
            return Ok(None);
        };
        T::parse_conf(default, self.bare_unit)
            .map(Some)
            .map_err(|reason| ConfError::InvalidDefault {
                key: self.key.to_owned(),
                default: redact_value(self.key, default).to_owned(),
                reason,
            })
    }
}

impl ConfigEntry<Duration> {
    /// A duration entry; a bare number in a value (or in the default) is read in `bare_unit`, as
    /// Spark reads `ember.worker.timeout=60` as 60 seconds.
    pub const fn duration(
        key: &'static str,
        default: Option<&'static str>,
        bare_unit: TimeUnit,
        doc: &'static str,
    ) -> Self {
        let mut entry = Self::new(key, default, doc);
        entry.bare_unit = Some(BareUnit::Time(bare_unit));
        entry
    }
}

impl ConfigEntry<ByteSize> {
    /// A size entry; a bare number in a value (or in the default) is read in `bare_unit`, as
    /// Spark reads `ember.executor.memory=512` as 512 MiB.
    pub const fn bytes(
        key: &'static str,
        default: Option<&'static str>,
        bare_unit: ByteUnit,
        doc: &'static str,
    ) -> Self {
        let mut entry = Self::new(key, default, doc);
        entry.bare_unit = Some(BareUnit::Bytes(bare_unit));
        entry
    }
}

// Written out because derives would require `T: Clone` / `T: Debug`, and the entry holds no `T`.
impl<T> Clone for ConfigEntry<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for ConfigEntry<T> {}

impl<T: ConfigValue> fmt::Debug for ConfigEntry<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigEntry")
            .field("key", &self.key)
            .field("type", &T::type_name())
            .field("default", &self.default)
            .field("env", &self.env)
            .field("bare_unit", &self.bare_unit)
            .finish()
    }
}

impl<T: ConfigValue> From<&ConfigEntry<T>> for ConfigEntryDoc {
    fn from(entry: &ConfigEntry<T>) -> Self {
        entry.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: ConfigEntry<Duration> = ConfigEntry::duration(
        "ember.t.timeout",
        Some("60"),
        TimeUnit::Seconds,
        "A timeout.",
    );
    const MEMORY: ConfigEntry<ByteSize> =
        ConfigEntry::bytes("ember.t.memory", Some("1g"), ByteUnit::MiB, "Memory.")
            .with_env("EMBER_T_MEMORY");
    const CORES: ConfigEntry<u32> = ConfigEntry::new("ember.t.cores", None, "Cores.");
    const BROKEN: ConfigEntry<u16> = ConfigEntry::new("ember.t.port", Some("70000"), "A port.");

    // Entries are usable from statics as well as consts.
    static STATIC_ENTRY: ConfigEntry<bool> = ConfigEntry::new("ember.t.flag", Some("true"), "On.");

    #[test]
    fn accessors_report_the_declaration() {
        assert_eq!(MEMORY.key(), "ember.t.memory");
        assert_eq!(MEMORY.default_text(), Some("1g"));
        assert_eq!(MEMORY.env(), Some("EMBER_T_MEMORY"));
        assert_eq!(MEMORY.doc(), "Memory.");
        assert_eq!(MEMORY.bare_unit(), Some(BareUnit::Bytes(ByteUnit::MiB)));
        assert_eq!(CORES.bare_unit(), None);
        assert_eq!(STATIC_ENTRY.default_value().unwrap(), Some(true));
    }

    #[test]
    fn defaults_are_parsed_with_the_bare_unit() {
        assert_eq!(
            TIMEOUT.default_value().unwrap(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(MEMORY.default_value().unwrap(), Some(ByteSize::from_gib(1)));
        assert_eq!(CORES.default_value().unwrap(), None);
        let err = BROKEN.default_value().unwrap_err();
        assert!(matches!(err, ConfError::InvalidDefault { .. }), "{err:?}");
        assert!(err.to_string().contains("ember.t.port"), "{err}");
        assert!(err.to_string().contains("70000"), "{err}");
    }

    #[test]
    fn parse_errors_name_key_and_value() {
        let err = TIMEOUT.parse("soon").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("ember.t.timeout"), "{text}");
        assert!(text.contains("\"soon\""), "{text}");
        assert!(text.contains("expected a duration"), "{text}");
    }

    #[test]
    fn debug_shows_the_type() {
        let shown = format!("{MEMORY:?}");
        assert!(
            shown.contains("ember.t.memory") && shown.contains("size"),
            "{shown}"
        );
    }
}
