//! The types a configuration key can hold, and how each is read from and written to text.
//!
//! Spark counterpart: the typed builders of `ConfigBuilder` (`booleanConf`, `intConf`, `longConf`,
//! `doubleConf`, `stringConf`, `timeConf`, `bytesConf`, `checkValues`, `toSequence`) and the
//! converters behind them. Here a type becomes a configuration type by implementing
//! [`ConfigValue`]; an enumeration does so by implementing [`ConfigEnum`], which lists its spellings
//! once.

use std::borrow::Cow;
use std::time::Duration;

use super::units::{BareUnit, ByteSize, format_duration, parse_byte_size, parse_duration};

/// A type that configuration values can be read as.
///
/// Implemented here for `bool`, the integer types, `f64`, `String`, [`Duration`], [`ByteSize`],
/// `Vec<T>` (comma-separated) and every [`ConfigEnum`]. Implement it for a new kind of value when
/// none of these fits:
///
/// ```
/// use std::borrow::Cow;
/// use ember_rpc::conf::{BareUnit, ConfigEntry, ConfigValue, EmberConf};
///
/// #[derive(Debug, PartialEq)]
/// struct HostPort(String, u16);
///
/// impl ConfigValue for HostPort {
///     fn type_name() -> Cow<'static, str> {
///         Cow::Borrowed("host:port")
///     }
///     fn parse_conf(raw: &str, _: Option<BareUnit>) -> Result<Self, String> {
///         let (host, port) = raw.trim().rsplit_once(':').ok_or("expected host:port")?;
///         let port = port.parse().map_err(|_| "expected a port from 0 to 65535")?;
///         Ok(HostPort(host.to_owned(), port))
///     }
///     fn to_conf_string(&self) -> String {
///         format!("{}:{}", self.0, self.1)
///     }
/// }
///
/// const PEER: ConfigEntry<HostPort> = ConfigEntry::new("ember.peer", Some("localhost:7077"), "A peer.");
/// assert_eq!(EmberConf::new().get(&PEER).unwrap(), HostPort("localhost".into(), 7077));
/// ```
pub trait ConfigValue: Sized {
    /// A short name for documentation and messages (`bool`, `u32`, `duration`, `one of A, B`).
    fn type_name() -> Cow<'static, str>;

    /// Reads a value from its text. `bare_unit` is the unit a bare number means for this key, if
    /// the key declares one. On failure, returns a sentence saying what is wrong or what was
    /// expected; the caller adds the key and the value.
    fn parse_conf(raw: &str, bare_unit: Option<BareUnit>) -> Result<Self, String>;

    /// Writes the value as text that [`parse_conf`](ConfigValue::parse_conf) reads back.
    fn to_conf_string(&self) -> String;
}

impl ConfigValue for bool {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed("bool")
    }

    /// `true` or `false` in any case, as in Spark (no `yes`/`1`).
    fn parse_conf(raw: &str, _: Option<BareUnit>) -> Result<Self, String> {
        let text = raw.trim();
        if text.eq_ignore_ascii_case("true") {
            Ok(true)
        } else if text.eq_ignore_ascii_case("false") {
            Ok(false)
        } else {
            Err("expected true or false".to_owned())
        }
    }

    fn to_conf_string(&self) -> String {
        self.to_string()
    }
}

macro_rules! integer_config_value {
    ($($ty:ty),*) => {$(
        impl ConfigValue for $ty {
            fn type_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($ty))
            }

            fn parse_conf(raw: &str, _: Option<BareUnit>) -> Result<Self, String> {
                let out_of_range = || {
                    format!(
                        "expected a whole number from {} to {}",
                        <$ty>::MIN,
                        <$ty>::MAX
                    )
                };
                // Parse wide first so that "too big" and "not a number" get different messages.
                let wide = raw.trim().parse::<i128>().map_err(|e| match e.kind() {
                    std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                        out_of_range()
                    }
                    _ => "expected a whole number".to_owned(),
                })?;
                <$ty>::try_from(wide).map_err(|_| out_of_range())
            }

            fn to_conf_string(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

integer_config_value!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

impl ConfigValue for f64 {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed("f64")
    }

    /// A finite decimal number (`0.75`, `1e-3`); NaN and infinities are refused.
    fn parse_conf(raw: &str, _: Option<BareUnit>) -> Result<Self, String> {
        match raw.trim().parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(value),
            _ => Err("expected a finite decimal number".to_owned()),
        }
    }

    fn to_conf_string(&self) -> String {
        // Rust prints the shortest text that parses back to the same f64.
        self.to_string()
    }
}

impl ConfigValue for String {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed("string")
    }

    /// Any text, kept as it is (not trimmed).
    fn parse_conf(raw: &str, _: Option<BareUnit>) -> Result<Self, String> {
        Ok(raw.to_owned())
    }

    fn to_conf_string(&self) -> String {
        self.clone()
    }
}

impl ConfigValue for Duration {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed("duration")
    }

    fn parse_conf(raw: &str, bare_unit: Option<BareUnit>) -> Result<Self, String> {
        parse_duration(raw, bare_unit.and_then(BareUnit::time)).map_err(|e| e.to_string())
    }

    fn to_conf_string(&self) -> String {
        format_duration(*self)
    }
}

impl ConfigValue for ByteSize {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed("size")
    }

    fn parse_conf(raw: &str, bare_unit: Option<BareUnit>) -> Result<Self, String> {
        parse_byte_size(raw, bare_unit.and_then(BareUnit::bytes)).map_err(|e| e.to_string())
    }

    fn to_conf_string(&self) -> String {
        self.to_string()
    }
}

/// A comma-separated list (`a, b,c`): items are trimmed, empty items skipped, each read as `T`
/// with the key's bare unit. Items of a `Vec<String>` cannot contain commas.
impl<T: ConfigValue> ConfigValue for Vec<T> {
    fn type_name() -> Cow<'static, str> {
        Cow::Owned(format!("comma-separated list of {}", T::type_name()))
    }

    fn parse_conf(raw: &str, bare_unit: Option<BareUnit>) -> Result<Self, String> {
        raw.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                T::parse_conf(item, bare_unit).map_err(|reason| format!("item {item:?}: {reason}"))
            })
            .collect()
    }

    fn to_conf_string(&self) -> String {
        self.iter()
            .map(T::to_conf_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// An enumeration that configuration values can be read as, spelled from a fixed list and matched
/// case-insensitively (Spark's `checkValues` on an upper-cased string).
///
/// ```
/// use ember_rpc::conf::{ConfigEntry, ConfigEnum};
///
/// #[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// enum RecoveryMode { None, FileSystem, ZooKeeper }
///
/// impl ConfigEnum for RecoveryMode {
///     const VARIANTS: &'static [(&'static str, Self)] = &[
///         ("NONE", RecoveryMode::None),
///         ("FILESYSTEM", RecoveryMode::FileSystem),
///         ("ZOOKEEPER", RecoveryMode::ZooKeeper),
///     ];
/// }
///
/// const RECOVERY_MODE: ConfigEntry<RecoveryMode> =
///     ConfigEntry::new("ember.deploy.recoveryMode", Some("NONE"), "How a master recovers.");
///
/// let mut conf = ember_rpc::EmberConf::new();
/// conf.set("ember.deploy.recoveryMode", "zookeeper");
/// assert_eq!(conf.get(&RECOVERY_MODE).unwrap(), RecoveryMode::ZooKeeper);
/// ```
pub trait ConfigEnum: Copy + PartialEq + 'static {
    /// Each variant with its canonical spelling, which is what documentation and
    /// [`to_conf_string`](ConfigValue::to_conf_string) print.
    const VARIANTS: &'static [(&'static str, Self)];

    /// The canonical spelling of a variant.
    fn conf_name(self) -> &'static str {
        Self::VARIANTS
            .iter()
            .find(|(_, variant)| *variant == self)
            .map_or("?", |(name, _)| name)
    }
}

impl<E: ConfigEnum> ConfigValue for E {
    fn type_name() -> Cow<'static, str> {
        let names: Vec<&str> = E::VARIANTS.iter().map(|(name, _)| *name).collect();
        Cow::Owned(format!("one of {}", names.join(", ")))
    }

    fn parse_conf(raw: &str, _: Option<BareUnit>) -> Result<Self, String> {
        let text = raw.trim();
        E::VARIANTS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
            .map(|(_, variant)| *variant)
            .ok_or_else(|| format!("expected {} (any case)", Self::type_name()))
    }

    fn to_conf_string(&self) -> String {
        self.conf_name().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::units::{ByteUnit, TimeUnit};

    const MIB: Option<BareUnit> = Some(BareUnit::Bytes(ByteUnit::MiB));

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Mode {
        None,
        FileSystem,
        ZooKeeper,
    }

    impl ConfigEnum for Mode {
        const VARIANTS: &'static [(&'static str, Self)] = &[
            ("NONE", Mode::None),
            ("FILESYSTEM", Mode::FileSystem),
            ("ZOOKEEPER", Mode::ZooKeeper),
        ];
    }

    fn parse<T: ConfigValue>(raw: &str) -> Result<T, String> {
        T::parse_conf(raw, None)
    }

    #[test]
    fn booleans_accept_only_true_and_false() {
        assert_eq!(parse::<bool>("true"), Ok(true));
        assert_eq!(parse::<bool>(" FALSE "), Ok(false));
        assert_eq!(parse::<bool>("True"), Ok(true));
        for bad in ["yes", "1", "0", "no", ""] {
            assert_eq!(
                parse::<bool>(bad),
                Err("expected true or false".into()),
                "{bad}"
            );
        }
    }

    #[test]
    fn integers_check_their_range() {
        assert_eq!(parse::<u16>("65535"), Ok(65535));
        assert_eq!(
            parse::<u16>("65536"),
            Err("expected a whole number from 0 to 65535".into())
        );
        assert_eq!(
            parse::<u32>("-1"),
            Err("expected a whole number from 0 to 4294967295".into())
        );
        assert_eq!(parse::<i64>(" -42 "), Ok(-42));
        assert_eq!(parse::<u64>("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse::<usize>("7"), Ok(7));
        assert_eq!(parse::<u64>("4x"), Err("expected a whole number".into()));
        assert_eq!(parse::<i64>(""), Err("expected a whole number".into()));
        assert!(
            parse::<i64>("999999999999999999999999999999999999999999")
                .unwrap_err()
                .contains("from")
        );
    }

    #[test]
    fn floats_strings_durations_sizes() {
        assert_eq!(parse::<f64>("0.75"), Ok(0.75));
        assert!(parse::<f64>("NaN").is_err());
        assert!(parse::<f64>("inf").is_err());
        assert_eq!(parse::<String>(" kept as is "), Ok(" kept as is ".into()));
        assert_eq!(
            Duration::parse_conf("60", Some(BareUnit::Time(TimeUnit::Seconds))),
            Ok(Duration::from_secs(60))
        );
        assert_eq!(
            ByteSize::parse_conf("512", MIB),
            Ok(ByteSize::from_mib(512))
        );
        assert!(Duration::parse_conf("60", None).is_err());
    }

    #[test]
    fn lists_are_comma_separated() {
        assert_eq!(
            parse::<Vec<String>>(" a, b,,c "),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(parse::<Vec<u16>>(""), Ok(vec![]));
        assert_eq!(
            parse::<Vec<u16>>("1,x"),
            Err("item \"x\": expected a whole number".into())
        );
        assert_eq!(
            Vec::<ByteSize>::parse_conf("1, 2g", MIB),
            Ok(vec![ByteSize::from_mib(1), ByteSize::from_gib(2)])
        );
        assert_eq!(vec![1u16, 2].to_conf_string(), "1,2");
        assert_eq!(Vec::<u16>::type_name(), "comma-separated list of u16");
    }

    #[test]
    fn enums_parse_case_insensitively_and_list_their_values() {
        assert_eq!(parse::<Mode>("zookeeper"), Ok(Mode::ZooKeeper));
        assert_eq!(parse::<Mode>(" FileSystem "), Ok(Mode::FileSystem));
        assert_eq!(parse::<Mode>("NONE"), Ok(Mode::None));
        assert_eq!(
            parse::<Mode>("etcd"),
            Err("expected one of NONE, FILESYSTEM, ZOOKEEPER (any case)".into())
        );
        assert_eq!(Mode::FileSystem.to_conf_string(), "FILESYSTEM");
    }

    #[test]
    fn every_kind_round_trips_through_text() {
        fn round_trip<T: ConfigValue + PartialEq + std::fmt::Debug>(value: T) {
            let text = value.to_conf_string();
            assert_eq!(T::parse_conf(&text, None).as_ref(), Ok(&value), "{text}");
        }
        round_trip(true);
        round_trip(-5i64);
        round_trip(u64::MAX);
        round_trip(0.1f64);
        round_trip(String::from("x y"));
        round_trip(Duration::from_millis(1500));
        round_trip(ByteSize::from_mib(1536));
        round_trip(Mode::ZooKeeper);
        round_trip(vec![Duration::from_secs(1), Duration::from_secs(90)]);
    }
}
