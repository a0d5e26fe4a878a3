//! The errors of the configuration mechanism, and the redaction rule for secret values.
//!
//! Every error names the key (or the file, line, variable or argument) it is about, and the value
//! that was refused, except when the key looks secret: then the value is shown as
//! [`REDACTED`]. Spark counterparts: the `IllegalArgumentException`s and `NoSuchElementException`s
//! thrown by `SparkConf` getters and `ConfigEntry.readFrom`, and Spark's `Utils.redact`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// What is printed in place of a secret value.
pub const REDACTED: &str = "*****";

/// Words that make a key secret when they appear in it (compared case-insensitively).
const SECRET_WORDS: [&str; 3] = ["secret", "password", "token"];

/// Whether a key's value must never be printed: the key contains `secret`, `password` or `token`,
/// in any case (`ember.authenticate.secret`, `ember.ssl.keyPassword`, `ember.ui.TOKEN`).
pub fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| lower.contains(word))
}

/// The value as it may be shown for `key`: the value itself, or [`REDACTED`] for a secret key.
pub fn redact_value<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret_key(key) { REDACTED } else { value }
}

/// Redacts free text of the form `key=value`, `key:value` or `key value` (a malformed argument or
/// option) when it mentions a secret word: what follows the first separator is replaced.
pub(crate) fn redact_pair_text(text: &str) -> String {
    if !is_secret_key(text) {
        return text.to_owned();
    }
    match text.find(['=', ':', ' ', '\t']) {
        Some(at) => format!("{}{REDACTED}", &text[..=at]),
        // A single word with no separator is a key alone: there is no value to hide.
        None => text.to_owned(),
    }
}

/// Everything that can go wrong when loading configuration or reading a typed value from it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfError {
    /// A key's value does not parse as the entry's type.
    #[error("invalid value {value:?} for {key}: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value refused, already redacted if the key is secret.
        value: String,
        /// Why it was refused and what was expected.
        reason: String,
    },
    /// An entry's declared default does not parse as the entry's type: a bug in its declaration.
    #[error("the declared default {default:?} of {key} is invalid: {reason}")]
    InvalidDefault {
        /// The key.
        key: String,
        /// The default text.
        default: String,
        /// Why it was refused.
        reason: String,
    },
    /// A key without a default was read with [`EmberConf::get`](super::EmberConf::get) but is not
    /// set.
    #[error("{key} is not set and has no default")]
    Missing {
        /// The key.
        key: String,
    },
    /// Two entries in one list declare the same key.
    #[error("{key} is declared more than once")]
    DuplicateEntry {
        /// The key.
        key: String,
    },
    /// A properties file could not be read.
    #[error("cannot read properties file {}: {source}", path.display())]
    PropertiesFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A line of a properties file does not follow the format.
    #[error("{}:{line}: {reason}", path.display())]
    MalformedLine {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: MalformedReason,
    },
    /// A token of an options environment variable (such as `EMBER_DAEMON_OPTS`) is not
    /// `-Dkey=value`.
    #[error("malformed token {token:?} in environment variable {var}: expected -Dkey=value")]
    BadOpt {
        /// The environment variable.
        var: String,
        /// The token, with its value redacted if the key is secret.
        token: String,
    },
    /// A command-line configuration argument is not `key=value`.
    #[error("malformed configuration argument {input:?}: expected key=value")]
    BadPair {
        /// The argument, with its value redacted if the key is secret.
        input: String,
    },
}

impl ConfError {
    /// An [`InvalidValue`](ConfError::InvalidValue) error, with the value redacted if the key is
    /// secret.
    ///
    /// For a secret key, the value is also removed from the reason, in case the parser quoted it.
    pub fn invalid_value(key: &str, value: &str, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        let secret = is_secret_key(key);
        if secret && !value.trim().is_empty() {
            reason = reason.replace(value.trim(), REDACTED);
        }
        ConfError::InvalidValue {
            key: key.to_owned(),
            value: if secret { REDACTED } else { value }.to_owned(),
            reason,
        }
    }

    /// The key the error is about, if it is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfError::InvalidValue { key, .. }
            | ConfError::InvalidDefault { key, .. }
            | ConfError::Missing { key }
            | ConfError::DuplicateEntry { key } => Some(key),
            _ => None,
        }
    }
}

/// Why a properties-file line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MalformedReason {
    /// The line has a value but no key (it starts with `=` or `:`).
    EmptyKey,
    /// A `\u` escape is not followed by four hexadecimal digits, or names no character.
    BadUnicodeEscape,
    /// The line is not valid UTF-8.
    InvalidUtf8,
}

impl fmt::Display for MalformedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MalformedReason::EmptyKey => "the line has a value but no key",
            MalformedReason::BadUnicodeEscape => {
                "malformed \\uXXXX escape (four hexadecimal digits naming a character expected)"
            }
            MalformedReason::InvalidUtf8 => "the line is not valid UTF-8",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_recognised_in_any_case() {
        for key in [
            "ember.authenticate.secret",
            "ember.ssl.keyPassword",
            "ember.ui.TOKEN",
            "SECRET",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["ember.worker.timeout", "ember.executor.memory", ""] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn invalid_value_redacts_secret_values_in_display_and_debug() {
        let err = ConfError::invalid_value("ember.authenticate.secret", "hunter2", "too short");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(REDACTED), "{shown}");
        assert!(shown.contains("ember.authenticate.secret"), "{shown}");

        let err = ConfError::invalid_value("ember.token", " a,b ", "item \"a,b\": bad");
        assert!(!err.to_string().contains("a,b"), "{err}");
    }

    #[test]
    fn invalid_value_names_key_and_value() {
        let err = ConfError::invalid_value("ember.worker.cores", "many", "expected an integer");
        assert_eq!(
            err.to_string(),
            r#"invalid value "many" for ember.worker.cores: expected an integer"#
        );
        assert_eq!(err.key(), Some("ember.worker.cores"));
    }

    #[test]
    fn pair_text_redaction_hides_what_follows_the_separator() {
        assert_eq!(
            redact_pair_text("ember.a.secret=x=y"),
            "ember.a.secret=*****"
        );
        assert_eq!(
            redact_pair_text("-Dember.password:abc"),
            "-Dember.password:*****"
        );
        assert_eq!(
            redact_pair_text("ember.worker.cores=4"),
            "ember.worker.cores=4"
        );
        assert_eq!(redact_pair_text("ember.token"), "ember.token");
    }
}
