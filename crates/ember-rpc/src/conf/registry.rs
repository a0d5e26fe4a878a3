//! What a crate knows about its keys as a whole: the type-erased [`ConfigEntryDoc`], the Markdown
//! table generated from a list of them, the check that every default parses, and the detection of
//! `ember.*` keys that nothing declares.
//!
//! Spark counterpart: the registry `ConfigEntry.knownConfigs` and the tables of
//! `docs/configuration.md`, which Spark writes by hand and Ember generates. Each crate exposes
//! `pub fn config_entries() -> Vec<ConfigEntryDoc>`; a daemon concatenates the lists of the crates
//! it runs.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt::{self, Write as _};

use super::error::ConfError;
use super::units::BareUnit;
use super::value::ConfigValue;

/// The prefix of every key Ember reads; only keys with it are reported as unknown.
pub const KEY_PREFIX: &str = "ember.";

/// A configuration entry with its type erased: what documentation, registries and checks need.
/// Obtained from [`ConfigEntry::describe`](super::ConfigEntry::describe) (a `const fn`), or from
/// [`ConfigEntryDoc::prefix`] for a family of keys such as `ember.executorEnv.*`.
#[derive(Clone, Copy)]
pub struct ConfigEntryDoc {
    key: &'static str,
    default: Option<&'static str>,
    doc: &'static str,
    env: Option<&'static str>,
    bare_unit: Option<BareUnit>,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    /// One key whose values are read as some [`ConfigValue`] type.
    Value {
        type_name: fn() -> Cow<'static, str>,
        check: fn(&str, Option<BareUnit>) -> Result<(), String>,
    },
    /// Every key that starts with `key` (which ends with a dot); values are free text.
    Prefix,
}

fn check_as<T: ConfigValue>(raw: &str, bare_unit: Option<BareUnit>) -> Result<(), String> {
    T::parse_conf(raw, bare_unit).map(drop)
}

impl ConfigEntryDoc {
    pub(super) const fn of<T: ConfigValue>(
        key: &'static str,
        default: Option<&'static str>,
        doc: &'static str,
        env: Option<&'static str>,
        bare_unit: Option<BareUnit>,
    ) -> Self {
        ConfigEntryDoc {
            key,
            default,
            doc,
            env,
            bare_unit,
            kind: Kind::Value {
                type_name: T::type_name,
                check: check_as::<T>,
            },
        }
    }

    /// A family of keys sharing a prefix that ends with a dot (`ember.executorEnv.` for
    /// `ember.executorEnv.PATH`, …): documented as `ember.executorEnv.*`, and no key of the family
    /// is reported as unknown. Values are free text.
    pub const fn prefix(prefix: &'static str, doc: &'static str) -> Self {
        ConfigEntryDoc {
            key: prefix,
            default: None,
            doc,
            env: None,
            bare_unit: None,
            kind: Kind::Prefix,
        }
    }

    /// The key, or the prefix (ending with a dot) of a family.
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

    /// Whether this describes a family of keys rather than one key.
    pub const fn is_prefix(&self) -> bool {
        matches!(self.kind, Kind::Prefix)
    }

    /// The key as documented: the key itself, or `prefix.*` for a family.
    pub fn display_key(&self) -> Cow<'static, str> {
        match self.kind {
            Kind::Value { .. } => Cow::Borrowed(self.key),
            Kind::Prefix => Cow::Owned(format!("{}*", self.key)),
        }
    }

    /// The value type as documented: `bool`, `u32`, `duration; a bare number means seconds`,
    /// `one of NONE, FILESYSTEM, ZOOKEEPER`, …
    pub fn type_name(&self) -> String {
        match self.kind {
            Kind::Prefix => "string".to_owned(),
            Kind::Value { type_name, .. } => match self.bare_unit {
                Some(unit) => format!("{}; a bare number means {}", type_name(), unit.name()),
                None => type_name().into_owned(),
            },
        }
    }

    /// Whether `key` is this entry's key, or belongs to this family.
    pub fn matches(&self, key: &str) -> bool {
        match self.kind {
            Kind::Value { .. } => key == self.key,
            Kind::Prefix => key.len() > self.key.len() && key.starts_with(self.key),
        }
    }

    /// Checks that `raw` is a valid value for this entry; the error names the key and the value.
    pub fn check_value(&self, raw: &str) -> Result<(), ConfError> {
        match self.kind {
            Kind::Prefix => Ok(()),
            Kind::Value { check, .. } => check(raw, self.bare_unit)
                .map_err(|reason| ConfError::invalid_value(self.key, raw, reason)),
        }
    }

    /// Checks that the declared default, if any, parses.
    pub fn check_default(&self) -> Result<(), ConfError> {
        match (self.kind, self.default) {
            (Kind::Value { check, .. }, Some(default)) => {
                check(default, self.bare_unit).map_err(|reason| ConfError::InvalidDefault {
                    key: self.key.to_owned(),
                    default: super::error::redact_value(self.key, default).to_owned(),
                    reason,
                })
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for ConfigEntryDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigEntryDoc")
            .field("key", &self.display_key())
            .field("type", &self.type_name())
            .field("default", &self.default)
            .field("env", &self.env)
            .finish()
    }
}

/// Problems in a list of entries: defaults that do not parse and keys declared twice. Empty when
/// the list is sound; see [`assert_entries_valid`] for the one-line test each crate writes.
pub fn check_entries(entries: &[ConfigEntryDoc]) -> Vec<ConfError> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for entry in entries {
        if !seen.insert(entry.key) {
            problems.push(ConfError::DuplicateEntry {
                key: entry.key.to_owned(),
            });
        }
        if let Err(e) = entry.check_default() {
            problems.push(e);
        }
    }
    problems
}

/// Panics with a list of every problem in `entries`: what [`check_entries`] finds, plus keys that
/// do not start with `ember.`, prefixes that do not end with a dot, environment variable names
/// that are not upper-case `A-Z0-9_`, and empty documentation. For unit tests:
///
/// ```
/// # use ember_rpc::conf::{ConfigEntry, ConfigEntryDoc, assert_entries_valid};
/// const CORES: ConfigEntry<u32> =
///     ConfigEntry::new("ember.worker.cores", None, "Cores to offer.").with_env("EMBER_WORKER_CORES");
/// fn config_entries() -> Vec<ConfigEntryDoc> { vec![CORES.describe()] }
/// assert_entries_valid(&config_entries());
/// ```
#[track_caller]
pub fn assert_entries_valid(entries: &[ConfigEntryDoc]) {
    let mut problems: Vec<String> = check_entries(entries)
        .iter()
        .map(ToString::to_string)
        .collect();
    for entry in entries {
        let key = entry.key;
        if !key.starts_with(KEY_PREFIX) || key.len() == KEY_PREFIX.len() {
            problems.push(format!("{key} does not start with {KEY_PREFIX}"));
        }
        if entry.is_prefix() != key.ends_with('.') {
            problems.push(format!("{key}: only a prefix entry may end with a dot"));
        }
        if let Some(var) = entry.env
            && (var.is_empty()
                || !var
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
        {
            problems.push(format!(
                "{key}: environment variable {var:?} is not A-Z0-9_"
            ));
        }
        if entry.doc.trim().is_empty() {
            problems.push(format!("{key} has no documentation"));
        }
    }
    assert!(
        problems.is_empty(),
        "invalid configuration entries:\n  {}",
        problems.join("\n  ")
    );
}

/// Renders entries as a Markdown table (key | default | env | meaning) in the order given, for a
/// README or `ember conf --help`-style output.
pub fn render_markdown_table(entries: &[ConfigEntryDoc]) -> String {
    let mut out = String::from("| Key | Default | Env | Meaning |\n|---|---|---|---|\n");
    for entry in entries {
        let default = match entry.default {
            None => "(none)".to_owned(),
            Some("") => "(empty)".to_owned(),
            Some(text) => code(text),
        };
        let env = entry.env.map(code).unwrap_or_default();
        let doc = escape_cell(entry.doc);
        let sep = if doc.is_empty() { "" } else { " " };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {default} | {env} | {doc}{sep}*({})* |",
            code(&entry.display_key()),
            escape_cell(&entry.type_name()),
        );
    }
    out
}

/// Text as inline code in a table cell.
fn code(text: &str) -> String {
    format!("`{}`", text.replace('|', "\\|").replace('`', "'"))
}

/// Text made safe for one table cell: one line, pipes escaped.
fn escape_cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// An `ember.*` key that no entry declares, with the declared key it was probably meant to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// The key as set.
    pub key: String,
    /// A declared key within a couple of typing mistakes of it, if there is one.
    pub did_you_mean: Option<&'static str>,
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)?;
        if let Some(known) = self.did_you_mean {
            write!(f, " (did you mean {known}?)")?;
        }
        Ok(())
    }
}

/// The keys among `keys` that start with `ember.` and that no entry matches, in the order given.
pub(super) fn find_unknown_keys<'k>(
    keys: impl IntoIterator<Item = &'k str>,
    entries: &[ConfigEntryDoc],
) -> Vec<UnknownKey> {
    keys.into_iter()
        .filter(|key| key.starts_with(KEY_PREFIX))
        .filter(|key| !entries.iter().any(|entry| entry.matches(key)))
        .map(|key| UnknownKey {
            key: key.to_owned(),
            did_you_mean: closest_key(key, entries),
        })
        .collect()
}

/// The declared key nearest to `key`, if at most two single-character edits away (case
/// differences count as edits).
fn closest_key(key: &str, entries: &[ConfigEntryDoc]) -> Option<&'static str> {
    const MAX_EDITS: usize = 2;
    entries
        .iter()
        .filter(|entry| !entry.is_prefix())
        .map(|entry| (edit_distance(key, entry.key), entry.key))
        .filter(|(distance, _)| *distance <= MAX_EDITS)
        .min()
        .map(|(_, known)| known)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::conf::entry::ConfigEntry;
    use crate::conf::units::TimeUnit;

    const TIMEOUT: ConfigEntry<Duration> = ConfigEntry::duration(
        "ember.worker.timeout",
        Some("60s"),
        TimeUnit::Seconds,
        "Time without a heartbeat\n after which a worker is lost.",
    );
    const CORES: ConfigEntry<u32> =
        ConfigEntry::new("ember.worker.cores", None, "Cores to offer | all.")
            .with_env("EMBER_WORKER_CORES");
    const ENV: ConfigEntryDoc =
        ConfigEntryDoc::prefix("ember.executorEnv.", "Environment of executors.");

    // A registry can be a constant too, since `describe` is a const fn.
    const ENTRIES: &[ConfigEntryDoc] = &[TIMEOUT.describe(), CORES.describe(), ENV];

    #[test]
    fn describe_erases_the_type_but_keeps_the_facts() {
        let doc = TIMEOUT.describe();
        assert_eq!(doc.key(), "ember.worker.timeout");
        assert_eq!(doc.default_text(), Some("60s"));
        assert_eq!(doc.type_name(), "duration; a bare number means seconds");
        assert_eq!(CORES.describe().env(), Some("EMBER_WORKER_CORES"));
        assert_eq!(CORES.describe().type_name(), "u32");
        assert!(doc.check_value("90").is_ok());
        let err = doc.check_value("soon").unwrap_err();
        assert!(err.to_string().contains("ember.worker.timeout"), "{err}");
        assert!(err.to_string().contains("soon"), "{err}");
        assert!(ENV.check_value("anything").is_ok());
        assert!(format!("{doc:?}").contains("ember.worker.timeout"));
    }

    #[test]
    fn prefix_entries_match_their_family_only() {
        assert!(ENV.matches("ember.executorEnv.PATH"));
        assert!(!ENV.matches("ember.executorEnv."));
        assert!(!ENV.matches("ember.executorEnvX"));
        assert_eq!(ENV.display_key(), "ember.executorEnv.*");
    }

    #[test]
    fn markdown_table_lists_every_entry() {
        let table = render_markdown_table(ENTRIES);
        let expected = "\
| Key | Default | Env | Meaning |
|---|---|---|---|
| `ember.worker.timeout` | `60s` |  | Time without a heartbeat after which a worker is lost. *(duration; a bare number means seconds)* |
| `ember.worker.cores` | (none) | `EMBER_WORKER_CORES` | Cores to offer \\| all. *(u32)* |
| `ember.executorEnv.*` | (none) |  | Environment of executors. *(string)* |
";
        assert_eq!(table, expected);
    }

    #[test]
    fn check_entries_finds_bad_defaults_and_duplicates() {
        assert!(check_entries(ENTRIES).is_empty());
        assert_entries_valid(ENTRIES);
        const BAD: ConfigEntry<u16> = ConfigEntry::new("ember.port", Some("-1"), "Port.");
        let problems = check_entries(&[BAD.describe(), CORES.describe(), CORES.describe()]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(matches!(problems[0], ConfError::InvalidDefault { .. }));
        assert!(matches!(problems[1], ConfError::DuplicateEntry { .. }));
    }

    #[test]
    #[should_panic(expected = "is not A-Z0-9_")]
    fn assert_entries_valid_refuses_bad_env_names() {
        const BAD: ConfigEntry<u16> =
            ConfigEntry::new("ember.port", None, "Port.").with_env("ember_port");
        assert_entries_valid(&[BAD.describe()]);
    }

    #[test]
    #[should_panic(expected = "does not start with ember.")]
    fn assert_entries_valid_refuses_foreign_keys() {
        const BAD: ConfigEntry<u16> = ConfigEntry::new("spark.port", None, "Port.");
        assert_entries_valid(&[BAD.describe()]);
    }

    #[test]
    fn unknown_keys_suggest_near_misses() {
        let keys = [
            "ember.worker.timout",
            "ember.worker.timeout",
            "ember.executorEnv.PATH",
            "ember.something.else",
            "other.key",
        ];
        let unknown = find_unknown_keys(keys, ENTRIES);
        assert_eq!(
            unknown,
            vec![
                UnknownKey {
                    key: "ember.worker.timout".into(),
                    did_you_mean: Some("ember.worker.timeout"),
                },
                UnknownKey {
                    key: "ember.something.else".into(),
                    did_you_mean: None,
                },
            ]
        );
        assert_eq!(
            unknown[0].to_string(),
            "ember.worker.timout (did you mean ember.worker.timeout?)"
        );
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("timout", "timeout"), 1);
    }
}
