//! Configuration: [`EmberConf`], the key/value settings of a process, and the typed keys
//! ([`ConfigEntry`]) that read it.
//!
//! Spark counterpart: `SparkConf` (the map and its getters) together with `ConfigEntry` /
//! `ConfigBuilder` in `org.apache.spark.internal.config`. The split of work:
//!
//! * [`EmberConf`] holds strings only, as set; it does not know which keys exist. It is a plain
//!   value: share it as `Arc<EmberConf>`.
//! * A crate declares each key it reads once, as a `const` [`ConfigEntry<T>`] beside the code that
//!   reads it, and lists them in `pub fn config_entries() -> Vec<ConfigEntryDoc>`. Defaults live
//!   in the entries, never in the map, so [`EmberConf::to_pairs`] ships only what was set.
//! * Reading is typed and fails loudly: [`EmberConf::get`] returns the value or the default, or an
//!   error naming the key and the offending value.
//! * [`ConfLoader`] builds a conf from the properties file, the environment and the command line.
//! * Values of keys containing `secret`, `password` or `token` are never printed: `Debug`,
//!   `Display` and errors show `*****`.
//!
//! Files: `entry` (typed keys), `value` (value types and enumerations), `units` (durations and
//! sizes), `registry` (type-erased entries, Markdown docs, unknown keys), `properties` (the file
//! format), `loader` (precedence), `error`.

mod entry;
mod error;
mod loader;
mod properties;
mod registry;
mod units;
mod value;

use std::collections::BTreeMap;
use std::fmt;

pub use entry::ConfigEntry;
pub use error::{ConfError, MalformedReason, REDACTED, is_secret_key, redact_value};
pub use loader::{
    CONF_DIR_ENV, ConfLoader, DEFAULTS_FILE_NAME, HOME_ENV, parse_conf_pair, parse_opts,
};
pub use properties::{Property, format_properties, parse_properties, read_properties_file};
pub use registry::{
    ConfigEntryDoc, KEY_PREFIX, UnknownKey, assert_entries_valid, check_entries,
    render_markdown_table,
};
pub use units::{
    BareUnit, ByteSize, ByteUnit, Quantity, TimeUnit, UnitParseError, UnitProblem, format_duration,
    parse_byte_size, parse_duration,
};
pub use value::{ConfigEnum, ConfigValue};

/// The configuration of a process: keys to string values, as set.
///
/// Typed values are read through [`ConfigEntry`]s with [`get`](EmberConf::get) and
/// [`get_opt`](EmberConf::get_opt). `Debug` and `Display` redact secret values; `iter` and
/// `to_pairs` do not (they are for passing the configuration on).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EmberConf {
    settings: BTreeMap<String, String>,
}

impl EmberConf {
    /// An empty configuration (every key at its default).
    pub fn new() -> Self {
        Self::default()
    }

    /// A [`ConfLoader`] that builds a configuration from the properties file, the environment and
    /// the command line.
    pub fn loader() -> ConfLoader {
        ConfLoader::new()
    }

    /// A configuration holding these pairs (later pairs win), as produced by
    /// [`to_pairs`](EmberConf::to_pairs) in another process.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut conf = Self::new();
        for (key, value) in pairs {
            conf.set(key, value);
        }
        conf
    }

    /// Sets `key` to `value`, replacing any value.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.settings.insert(key.into(), value.into());
        self
    }

    /// Sets an entry's key to a typed value, written as text that reads back to it.
    pub fn set_value<T: ConfigValue>(&mut self, entry: &ConfigEntry<T>, value: &T) -> &mut Self {
        self.set(entry.key(), value.to_conf_string())
    }

    /// Sets `key` to `value` unless it is already set.
    pub fn set_if_missing(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> &mut Self {
        self.settings
            .entry(key.into())
            .or_insert_with(|| value.into());
        self
    }

    /// Removes `key`, returning its value if it was set.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.settings.remove(key)
    }

    /// The value of `key` as set, without defaults.
    pub fn get_raw(&self, key: &str) -> Option<&str> {
        self.settings.get(key).map(String::as_str)
    }

    /// Whether `key` is set (defaults do not count).
    pub fn contains(&self, key: &str) -> bool {
        self.settings.contains_key(key)
    }

    /// The entry's value if set, else its default. Fails if the value (or the default) does not
    /// parse, or if the key is neither set nor has a default ([`ConfError::Missing`]; read such
    /// keys with [`get_opt`](EmberConf::get_opt)).
    pub fn get<T: ConfigValue>(&self, entry: &ConfigEntry<T>) -> Result<T, ConfError> {
        self.get_opt(entry)?.ok_or_else(|| ConfError::Missing {
            key: entry.key().to_owned(),
        })
    }

    /// The entry's value if set, else its default, else `None`. Fails if the value (or the
    /// default) does not parse.
    pub fn get_opt<T: ConfigValue>(&self, entry: &ConfigEntry<T>) -> Result<Option<T>, ConfError> {
        match self.get_raw(entry.key()) {
            Some(raw) => entry.parse(raw).map(Some),
            None => entry.default_value(),
        }
    }

    /// The settings as (key, value) pairs, sorted by key. Values are not redacted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The settings as owned pairs sorted by key, for passing to another process (which rebuilds
    /// the conf with [`from_pairs`](EmberConf::from_pairs)). Values are not redacted.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        self.settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The settings as pairs sorted by key, with secret values replaced by [`REDACTED`]: for logs
    /// and web UIs.
    pub fn redacted_pairs(&self) -> Vec<(&str, &str)> {
        self.iter().map(|(k, v)| (k, redact_value(k, v))).collect()
    }

    /// Copies every setting of `other` into this conf; `other` wins where both set a key.
    pub fn merge(&mut self, other: &EmberConf) -> &mut Self {
        for (key, value) in other.iter() {
            self.set(key, value);
        }
        self
    }

    /// The number of keys set.
    pub fn len(&self) -> usize {
        self.settings.len()
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty()
    }

    /// The `ember.*` keys set here that none of `entries` declares, each with the declared key it
    /// was probably meant to be (`ember.worker.timout` → `ember.worker.timeout`). Callers warn
    /// about them; they are not errors because another crate may read them.
    pub fn unknown_keys(&self, entries: &[ConfigEntryDoc]) -> Vec<UnknownKey> {
        registry::find_unknown_keys(self.settings.keys().map(String::as_str), entries)
    }

    /// Checks every set key that one of `entries` declares, returning one error per invalid value
    /// (empty when all are valid). Lets a daemon report every bad setting at start-up at once.
    pub fn validate(&self, entries: &[ConfigEntryDoc]) -> Vec<ConfError> {
        entries
            .iter()
            .filter(|entry| !entry.is_prefix())
            .filter_map(|entry| {
                let raw = self.get_raw(entry.key())?;
                entry.check_value(raw).err()
            })
            .collect()
    }
}

impl fmt::Debug for EmberConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.redacted_pairs()).finish()
    }
}

/// One `key=value` line per setting, sorted by key, secrets redacted.
impl fmt::Display for EmberConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in self.redacted_pairs() {
            writeln!(f, "{key}={value}")?;
        }
        Ok(())
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for EmberConf {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        Self::from_pairs(pairs)
    }
}

impl<K: Into<String>, V: Into<String>> Extend<(K, V)> for EmberConf {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, pairs: I) {
        for (key, value) in pairs {
            self.set(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum RecoveryMode {
        None,
        FileSystem,
        ZooKeeper,
    }

    impl ConfigEnum for RecoveryMode {
        const VARIANTS: &'static [(&'static str, Self)] = &[
            ("NONE", RecoveryMode::None),
            ("FILESYSTEM", RecoveryMode::FileSystem),
            ("ZOOKEEPER", RecoveryMode::ZooKeeper),
        ];
    }

    const TIMEOUT: ConfigEntry<Duration> = ConfigEntry::duration(
        "ember.worker.timeout",
        Some("60s"),
        TimeUnit::Seconds,
        "Worker timeout.",
    );
    const MEMORY: ConfigEntry<ByteSize> = ConfigEntry::bytes(
        "ember.executor.memory",
        Some("1g"),
        ByteUnit::MiB,
        "Executor memory.",
    );
    const CORES: ConfigEntry<u32> = ConfigEntry::new("ember.worker.cores", None, "Cores.");
    const MODE: ConfigEntry<RecoveryMode> =
        ConfigEntry::new("ember.deploy.recoveryMode", Some("NONE"), "Recovery mode.");
    const SECRET: ConfigEntry<u64> = ConfigEntry::new("ember.authenticate.secret", None, "Secret.");

    fn entries() -> Vec<ConfigEntryDoc> {
        vec![
            TIMEOUT.describe(),
            MEMORY.describe(),
            CORES.describe(),
            MODE.describe(),
            SECRET.describe(),
        ]
    }

    #[test]
    fn declared_defaults_parse() {
        assert_entries_valid(&entries());
    }

    #[test]
    fn get_reads_values_then_defaults() {
        let mut conf = EmberConf::new();
        assert_eq!(conf.get(&TIMEOUT).unwrap(), Duration::from_secs(60));
        assert_eq!(conf.get(&MEMORY).unwrap(), ByteSize::from_gib(1));
        assert_eq!(conf.get(&MODE).unwrap(), RecoveryMode::None);
        assert_eq!(conf.get_opt(&CORES).unwrap(), None);
        let err = conf.get(&CORES).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ember.worker.cores is not set and has no default"
        );

        conf.set("ember.worker.timeout", "90")
            .set("ember.executor.memory", "512")
            .set("ember.worker.cores", "8")
            .set("ember.deploy.recoveryMode", "filesystem");
        assert_eq!(conf.get(&TIMEOUT).unwrap(), Duration::from_secs(90));
        assert_eq!(conf.get(&MEMORY).unwrap().as_mib(), 512);
        assert_eq!(conf.get(&CORES).unwrap(), 8);
        assert_eq!(conf.get_opt(&CORES).unwrap(), Some(8));
        assert_eq!(conf.get(&MODE).unwrap(), RecoveryMode::FileSystem);
    }

    #[test]
    fn get_errors_name_key_and_value() {
        let mut conf = EmberConf::new();
        conf.set("ember.worker.timeout", "-5s")
            .set("ember.worker.cores", "lots")
            .set("ember.deploy.recoveryMode", "etcd");
        for (err, value) in [
            (conf.get(&TIMEOUT).unwrap_err(), "-5s"),
            (conf.get(&CORES).unwrap_err(), "lots"),
            (conf.get(&MODE).unwrap_err(), "etcd"),
        ] {
            let text = err.to_string();
            assert!(text.contains(err.key().unwrap()), "{text}");
            assert!(text.contains(&format!("{value:?}")), "{text}");
        }
        assert!(
            conf.get(&MODE)
                .unwrap_err()
                .to_string()
                .contains("NONE, FILESYSTEM, ZOOKEEPER")
        );
        assert_eq!(conf.validate(&entries()).len(), 3);
    }

    #[test]
    fn map_operations() {
        let mut conf = EmberConf::new();
        conf.set("ember.a", "1").set_if_missing("ember.a", "2");
        conf.set_if_missing("ember.b", "3");
        assert_eq!(conf.get_raw("ember.a"), Some("1"));
        assert_eq!(conf.get_raw("ember.b"), Some("3"));
        assert!(conf.contains("ember.b"));
        assert_eq!(conf.remove("ember.b"), Some("3".into()));
        assert!(!conf.contains("ember.b"));
        assert_eq!(conf.len(), 1);

        conf.set_value(&TIMEOUT, &Duration::from_millis(1500));
        assert_eq!(conf.get_raw("ember.worker.timeout"), Some("1500ms"));
        assert_eq!(conf.get(&TIMEOUT).unwrap(), Duration::from_millis(1500));

        let mut other = EmberConf::from_pairs([("ember.a", "9"), ("ember.z", "0")]);
        other.extend([("ember.y", "8")]);
        conf.merge(&other);
        assert_eq!(
            conf.iter().collect::<Vec<_>>(),
            vec![
                ("ember.a", "9"),
                ("ember.worker.timeout", "1500ms"),
                ("ember.y", "8"),
                ("ember.z", "0"),
            ]
        );
        let shipped: EmberConf = conf.to_pairs().into_iter().collect();
        assert_eq!(shipped, conf);
    }

    #[test]
    fn debug_display_and_errors_redact_secrets() {
        let mut conf = EmberConf::new();
        conf.set("ember.authenticate.secret", "hunter2")
            .set("ember.ssl.keyPassword", "hunter3")
            .set("ember.ui.Token", "hunter4")
            .set("ember.worker.cores", "4");
        let shown = format!("{conf:?}\n{conf}\n{conf:#?}");
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(shown.contains("ember.authenticate.secret"), "{shown}");
        assert!(shown.contains("\"ember.worker.cores\": \"4\""), "{shown}");
        assert!(shown.contains("ember.worker.cores=4\n"), "{shown}");
        assert!(shown.contains(REDACTED), "{shown}");

        let err = conf.get(&SECRET).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("hunter"), "{text}");
        assert!(text.contains("ember.authenticate.secret"), "{text}");

        // Shipping to another process keeps the real value.
        assert!(
            conf.to_pairs()
                .contains(&("ember.authenticate.secret".into(), "hunter2".into()))
        );
    }

    #[test]
    fn unknown_keys_are_ember_keys_nobody_declares() {
        let conf = EmberConf::from_pairs([
            ("ember.worker.timout", "1"),
            ("ember.worker.timeout", "1"),
            ("ember.executorEnv.PATH", "/bin"),
            ("ember.nonsense", "1"),
            ("user.key", "1"),
        ]);
        let mut known = entries();
        known.push(ConfigEntryDoc::prefix(
            "ember.executorEnv.",
            "Executor env.",
        ));
        let unknown: Vec<String> = conf
            .unknown_keys(&known)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            unknown,
            vec![
                "ember.nonsense",
                "ember.worker.timout (did you mean ember.worker.timeout?)",
            ]
        );
    }

    #[test]
    fn markdown_for_a_crate() {
        let table = render_markdown_table(&entries());
        assert_eq!(table.lines().count(), 2 + entries().len());
        assert!(table.contains(
            "| `ember.deploy.recoveryMode` | `NONE` |  | Recovery mode. \
             *(one of NONE, FILESYSTEM, ZOOKEEPER)* |"
        ));
        assert!(
            table.contains("*(size; a bare number means MiB)*"),
            "{table}"
        );
    }

    #[test]
    fn conf_is_send_sync_and_shareable() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<EmberConf>();
        assert_send_sync::<ConfigEntry<RecoveryMode>>();
        assert_send_sync::<ConfError>();
    }
}
