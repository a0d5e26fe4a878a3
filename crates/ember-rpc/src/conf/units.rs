//! Durations and byte sizes as configuration values: parsing `60s`, `500ms`, `512m`, `4g`, and
//! printing them back in the same form.
//!
//! Spark counterpart: `JavaUtils.timeStringAs` / `byteStringAs` and the `TimeUnit` / `ByteUnit`
//! they take. As in Spark, a number without a suffix is read in a unit chosen by the key
//! (`ember.worker.timeout=60` is 60 seconds, `ember.executor.memory=512` is 512 MiB), sizes are
//! binary multiples (`1k` is 1024 bytes), suffixes are case-insensitive, and fractions (`1.5g`) and
//! negative numbers are refused. Ember also accepts whitespace between the number and the suffix,
//! and `ns` for durations so that every [`Duration`] prints in a form that parses back exactly.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A unit of time, used as the meaning of a bare number in a duration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    /// `ns`.
    Nanoseconds,
    /// `us`.
    Microseconds,
    /// `ms`.
    Milliseconds,
    /// `s`.
    Seconds,
    /// `m` or `min`.
    Minutes,
    /// `h`.
    Hours,
    /// `d`.
    Days,
}

impl TimeUnit {
    /// Every unit, largest first.
    const LARGEST_FIRST: [TimeUnit; 7] = [
        TimeUnit::Days,
        TimeUnit::Hours,
        TimeUnit::Minutes,
        TimeUnit::Seconds,
        TimeUnit::Milliseconds,
        TimeUnit::Microseconds,
        TimeUnit::Nanoseconds,
    ];

    /// Length of one unit in nanoseconds.
    pub const fn as_nanos(self) -> u128 {
        match self {
            TimeUnit::Nanoseconds => 1,
            TimeUnit::Microseconds => 1_000,
            TimeUnit::Milliseconds => 1_000_000,
            TimeUnit::Seconds => 1_000_000_000,
            TimeUnit::Minutes => 60 * 1_000_000_000,
            TimeUnit::Hours => 3_600 * 1_000_000_000,
            TimeUnit::Days => 86_400 * 1_000_000_000,
        }
    }

    /// The suffix Ember prints for this unit (`ms`, `s`, `min`, …).
    pub const fn suffix(self) -> &'static str {
        match self {
            TimeUnit::Nanoseconds => "ns",
            TimeUnit::Microseconds => "us",
            TimeUnit::Milliseconds => "ms",
            TimeUnit::Seconds => "s",
            TimeUnit::Minutes => "min",
            TimeUnit::Hours => "h",
            TimeUnit::Days => "d",
        }
    }

    /// The unit's English name, plural (`seconds`).
    pub const fn name(self) -> &'static str {
        match self {
            TimeUnit::Nanoseconds => "nanoseconds",
            TimeUnit::Microseconds => "microseconds",
            TimeUnit::Milliseconds => "milliseconds",
            TimeUnit::Seconds => "seconds",
            TimeUnit::Minutes => "minutes",
            TimeUnit::Hours => "hours",
            TimeUnit::Days => "days",
        }
    }

    fn from_suffix(suffix: &str) -> Option<Self> {
        Some(match suffix {
            "ns" => TimeUnit::Nanoseconds,
            "us" => TimeUnit::Microseconds,
            "ms" => TimeUnit::Milliseconds,
            "s" => TimeUnit::Seconds,
            "m" | "min" => TimeUnit::Minutes,
            "h" => TimeUnit::Hours,
            "d" => TimeUnit::Days,
            _ => return None,
        })
    }
}

/// A binary unit of size, used as the meaning of a bare number in a size key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByteUnit {
    /// `b`.
    Byte,
    /// `k` or `kb`: 1024 bytes.
    KiB,
    /// `m` or `mb`: 1024 KiB.
    MiB,
    /// `g` or `gb`: 1024 MiB.
    GiB,
    /// `t` or `tb`: 1024 GiB.
    TiB,
    /// `p` or `pb`: 1024 TiB.
    PiB,
}

impl ByteUnit {
    /// Every unit, largest first.
    const LARGEST_FIRST: [ByteUnit; 6] = [
        ByteUnit::PiB,
        ByteUnit::TiB,
        ByteUnit::GiB,
        ByteUnit::MiB,
        ByteUnit::KiB,
        ByteUnit::Byte,
    ];

    /// Size of one unit in bytes.
    pub const fn as_bytes(self) -> u64 {
        match self {
            ByteUnit::Byte => 1,
            ByteUnit::KiB => 1 << 10,
            ByteUnit::MiB => 1 << 20,
            ByteUnit::GiB => 1 << 30,
            ByteUnit::TiB => 1 << 40,
            ByteUnit::PiB => 1 << 50,
        }
    }

    /// The suffix Ember prints for this unit (`b`, `k`, `m`, `g`, `t`, `p`).
    pub const fn suffix(self) -> &'static str {
        match self {
            ByteUnit::Byte => "b",
            ByteUnit::KiB => "k",
            ByteUnit::MiB => "m",
            ByteUnit::GiB => "g",
            ByteUnit::TiB => "t",
            ByteUnit::PiB => "p",
        }
    }

    /// The unit's name (`bytes`, `KiB`, `MiB`, …).
    pub const fn name(self) -> &'static str {
        match self {
            ByteUnit::Byte => "bytes",
            ByteUnit::KiB => "KiB",
            ByteUnit::MiB => "MiB",
            ByteUnit::GiB => "GiB",
            ByteUnit::TiB => "TiB",
            ByteUnit::PiB => "PiB",
        }
    }

    fn from_suffix(suffix: &str) -> Option<Self> {
        Some(match suffix {
            "b" => ByteUnit::Byte,
            "k" | "kb" => ByteUnit::KiB,
            "m" | "mb" => ByteUnit::MiB,
            "g" | "gb" => ByteUnit::GiB,
            "t" | "tb" => ByteUnit::TiB,
            "p" | "pb" => ByteUnit::PiB,
            _ => return None,
        })
    }
}

/// The unit a bare number means for a key: seconds for `ember.worker.timeout`, MiB for
/// `ember.executor.memory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BareUnit {
    /// The key is a duration.
    Time(TimeUnit),
    /// The key is a size.
    Bytes(ByteUnit),
}

impl BareUnit {
    /// The time unit, if this is one.
    pub const fn time(self) -> Option<TimeUnit> {
        match self {
            BareUnit::Time(unit) => Some(unit),
            BareUnit::Bytes(_) => None,
        }
    }

    /// The size unit, if this is one.
    pub const fn bytes(self) -> Option<ByteUnit> {
        match self {
            BareUnit::Bytes(unit) => Some(unit),
            BareUnit::Time(_) => None,
        }
    }

    /// The unit's name (`seconds`, `MiB`).
    pub const fn name(self) -> &'static str {
        match self {
            BareUnit::Time(unit) => unit.name(),
            BareUnit::Bytes(unit) => unit.name(),
        }
    }
}

/// A size in bytes, written in configuration as `512m`, `4g`, `64k` (binary multiples).
///
/// `Display` prints the largest unit that divides the size exactly (`512m`, `1536m`, `4g`,
/// `100b`), a form [`FromStr`] and the configuration parser read back to the same value.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ByteSize(u64);

impl ByteSize {
    /// Zero bytes.
    pub const ZERO: ByteSize = ByteSize(0);

    /// A size of `bytes` bytes.
    pub const fn from_bytes(bytes: u64) -> Self {
        ByteSize(bytes)
    }

    /// A size of `kib` KiB (saturating at `u64::MAX` bytes).
    pub const fn from_kib(kib: u64) -> Self {
        ByteSize(kib.saturating_mul(ByteUnit::KiB.as_bytes()))
    }

    /// A size of `mib` MiB (saturating at `u64::MAX` bytes).
    pub const fn from_mib(mib: u64) -> Self {
        ByteSize(mib.saturating_mul(ByteUnit::MiB.as_bytes()))
    }

    /// A size of `gib` GiB (saturating at `u64::MAX` bytes).
    pub const fn from_gib(gib: u64) -> Self {
        ByteSize(gib.saturating_mul(ByteUnit::GiB.as_bytes()))
    }

    /// The size in bytes.
    pub const fn as_bytes(self) -> u64 {
        self.0
    }

    /// The size in whole KiB, rounded down.
    pub const fn as_kib(self) -> u64 {
        self.0 / ByteUnit::KiB.as_bytes()
    }

    /// The size in whole MiB, rounded down.
    pub const fn as_mib(self) -> u64 {
        self.0 / ByteUnit::MiB.as_bytes()
    }

    /// The size in whole GiB, rounded down.
    pub const fn as_gib(self) -> u64 {
        self.0 / ByteUnit::GiB.as_bytes()
    }

    /// Parses `input`, reading a bare number in `bare` (see [`parse_byte_size`]).
    pub fn parse(input: &str, bare: ByteUnit) -> Result<Self, UnitParseError> {
        parse_byte_size(input, Some(bare))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = ByteUnit::LARGEST_FIRST
            .into_iter()
            .find(|unit| self.0.is_multiple_of(unit.as_bytes()) && self.0 != 0)
            .unwrap_or(ByteUnit::Byte);
        write!(f, "{}{}", self.0 / unit.as_bytes(), unit.suffix())
    }
}

impl FromStr for ByteSize {
    type Err = UnitParseError;

    /// Parses a size; a bare number means bytes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_byte_size(s, Some(ByteUnit::Byte))
    }
}

/// Formats a duration in the largest unit that divides it exactly (`2min`, `60s`, `500ms`,
/// `0s`); [`parse_duration`] reads the result back to the same duration.
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    let unit = TimeUnit::LARGEST_FIRST
        .into_iter()
        .find(|unit| nanos != 0 && nanos.is_multiple_of(unit.as_nanos()))
        .unwrap_or(TimeUnit::Seconds);
    format!("{}{}", nanos / unit.as_nanos(), unit.suffix())
}

/// Which kind of quantity a [`UnitParseError`] is about, to say what was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// A duration (`60s`).
    Duration,
    /// A size (`512m`).
    Size,
}

/// What is wrong with a duration or size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitProblem {
    /// Nothing but whitespace.
    Empty,
    /// A leading minus sign.
    Negative,
    /// A decimal point.
    Fraction,
    /// No digits where the number should be.
    NotANumber,
    /// A suffix that names no unit.
    UnknownSuffix(String),
    /// A bare number for a key that has no bare unit.
    MissingUnit,
    /// The value does not fit (a `Duration`, or `u64` bytes).
    Overflow,
}

/// A duration or size that does not parse. Its `Display` says what is wrong and what is expected;
/// configuration errors wrap it with the key and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}; expected {}", expected(*.quantity))]
pub struct UnitParseError {
    /// What was being parsed.
    pub quantity: Quantity,
    /// What is wrong.
    pub problem: UnitProblem,
}

fn expected(quantity: Quantity) -> &'static str {
    match quantity {
        Quantity::Duration => {
            "a duration such as 500ms, 60s, 2min or 1h (units: ns, us, ms, s, m or min, h, d)"
        }
        Quantity::Size => {
            "a size such as 512m or 4g (units: b, k or kb, m or mb, g or gb, t or tb, p or pb; \
             binary multiples)"
        }
    }
}

impl fmt::Display for UnitProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnitProblem::Empty => f.write_str("the value is empty"),
            UnitProblem::Negative => f.write_str("negative values are not allowed"),
            UnitProblem::Fraction => f.write_str(
                "fractions are not allowed (use a smaller unit: 1500ms for 1.5s, 1536m for 1.5g)",
            ),
            UnitProblem::NotANumber => f.write_str("it does not start with a whole number"),
            UnitProblem::UnknownSuffix(suffix) => write!(f, "unknown unit {suffix:?}"),
            UnitProblem::MissingUnit => f.write_str("a unit is required"),
            UnitProblem::Overflow => f.write_str("the value is too large"),
        }
    }
}

/// Splits `input` into its whole number and its lower-cased suffix, refusing the forms both
/// parsers refuse.
fn split_number(input: &str, quantity: Quantity) -> Result<(u128, String), UnitParseError> {
    let fail = |problem| UnitParseError { quantity, problem };
    let text = input.trim();
    if text.is_empty() {
        return Err(fail(UnitProblem::Empty));
    }
    if text.starts_with('-') {
        return Err(fail(UnitProblem::Negative));
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, rest) = text.split_at(digits_end);
    if rest.starts_with('.') {
        return Err(fail(UnitProblem::Fraction));
    }
    if digits.is_empty() {
        return Err(fail(UnitProblem::NotANumber));
    }
    // Only digits remain, so the one way this fails is overflow. u128 because a `Duration` in
    // nanoseconds needs more than 64 bits.
    let number = digits
        .parse::<u128>()
        .map_err(|_| fail(UnitProblem::Overflow))?;
    Ok((number, rest.trim_start().to_ascii_lowercase()))
}

/// Parses a duration such as `500ms`, `60s`, `2min`, `1 h`. A bare number is read in `bare`; with
/// no bare unit, a bare number is an error.
pub fn parse_duration(input: &str, bare: Option<TimeUnit>) -> Result<Duration, UnitParseError> {
    let quantity = Quantity::Duration;
    let fail = |problem| UnitParseError { quantity, problem };
    let (number, suffix) = split_number(input, quantity)?;
    let unit = if suffix.is_empty() {
        bare.ok_or_else(|| fail(UnitProblem::MissingUnit))?
    } else {
        TimeUnit::from_suffix(&suffix).ok_or_else(|| fail(UnitProblem::UnknownSuffix(suffix)))?
    };
    let nanos = number
        .checked_mul(unit.as_nanos())
        .ok_or_else(|| fail(UnitProblem::Overflow))?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| fail(UnitProblem::Overflow))?;
    let subsec = (nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, subsec))
}

/// Parses a size such as `512m`, `4g`, `64 KB`, `100b`. A bare number is read in `bare`; with no
/// bare unit, a bare number is an error.
pub fn parse_byte_size(input: &str, bare: Option<ByteUnit>) -> Result<ByteSize, UnitParseError> {
    let quantity = Quantity::Size;
    let fail = |problem| UnitParseError { quantity, problem };
    let (number, suffix) = split_number(input, quantity)?;
    let unit = if suffix.is_empty() {
        bare.ok_or_else(|| fail(UnitProblem::MissingUnit))?
    } else {
        ByteUnit::from_suffix(&suffix).ok_or_else(|| fail(UnitProblem::UnknownSuffix(suffix)))?
    };
    u64::try_from(number)
        .ok()
        .and_then(|number| number.checked_mul(unit.as_bytes()))
        .map(ByteSize)
        .ok_or_else(|| fail(UnitProblem::Overflow))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dur(input: &str, bare: Option<TimeUnit>) -> Duration {
        parse_duration(input, bare).unwrap_or_else(|e| panic!("{input:?}: {e}"))
    }

    fn size(input: &str, bare: Option<ByteUnit>) -> u64 {
        parse_byte_size(input, bare)
            .unwrap_or_else(|e| panic!("{input:?}: {e}"))
            .as_bytes()
    }

    #[test]
    fn every_duration_unit_and_form() {
        // Spark parity: JavaUtils.timeStringAs suffixes, plus ns.
        let cases = [
            ("7ns", Duration::from_nanos(7)),
            ("7us", Duration::from_micros(7)),
            ("500ms", Duration::from_millis(500)),
            ("60s", Duration::from_secs(60)),
            ("2m", Duration::from_secs(120)),
            ("2min", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3_600)),
            ("3d", Duration::from_secs(3 * 86_400)),
            ("  60 s  ", Duration::from_secs(60)),
            ("500MS", Duration::from_millis(500)),
            ("2Min", Duration::from_secs(120)),
            ("0s", Duration::ZERO),
        ];
        for (input, want) in cases {
            assert_eq!(dur(input, None), want, "{input:?}");
        }
    }

    #[test]
    fn bare_duration_uses_the_keys_unit() {
        assert_eq!(dur("60", Some(TimeUnit::Seconds)), Duration::from_secs(60));
        assert_eq!(
            dur("60", Some(TimeUnit::Milliseconds)),
            Duration::from_millis(60)
        );
        assert_eq!(
            parse_duration("60", None).unwrap_err().problem,
            UnitProblem::MissingUnit
        );
    }

    #[test]
    fn duration_errors() {
        let cases = [
            ("", UnitProblem::Empty),
            ("   ", UnitProblem::Empty),
            ("-5s", UnitProblem::Negative),
            ("1.5s", UnitProblem::Fraction),
            ("s", UnitProblem::NotANumber),
            ("+5s", UnitProblem::NotANumber),
            ("5 parsecs", UnitProblem::UnknownSuffix("parsecs".into())),
            ("5s5", UnitProblem::UnknownSuffix("s5".into())),
            ("99999999999999999999s", UnitProblem::Overflow),
            (
                "999999999999999999999999999999999999999999ns",
                UnitProblem::Overflow,
            ),
            ("18446744073709551615d", UnitProblem::Overflow),
        ];
        for (input, problem) in cases {
            let err = parse_duration(input, Some(TimeUnit::Seconds)).unwrap_err();
            assert_eq!(err.problem, problem, "{input:?}");
            assert!(err.to_string().contains("expected a duration"), "{err}");
        }
    }

    #[test]
    fn every_size_unit_and_form() {
        // Spark parity: JavaUtils.byteStringAs suffixes, binary multiples.
        let cases = [
            ("100b", 100),
            ("1k", 1 << 10),
            ("1kb", 1 << 10),
            ("512m", 512 << 20),
            ("512MB", 512 << 20),
            ("4g", 4 << 30),
            ("4 GB", 4 << 30),
            ("2t", 2 << 40),
            ("2tb", 2 << 40),
            ("1p", 1 << 50),
            ("1Pb", 1 << 50),
            ("0m", 0),
        ];
        for (input, want) in cases {
            assert_eq!(size(input, None), want, "{input:?}");
        }
        assert_eq!(size("512", Some(ByteUnit::MiB)), 512 << 20);
        assert_eq!(size("512", Some(ByteUnit::Byte)), 512);
    }

    #[test]
    fn size_errors() {
        let cases = [
            ("", UnitProblem::Empty),
            ("-1g", UnitProblem::Negative),
            ("1.5g", UnitProblem::Fraction),
            ("g", UnitProblem::NotANumber),
            ("1x", UnitProblem::UnknownSuffix("x".into())),
            ("1kib", UnitProblem::UnknownSuffix("kib".into())),
            ("16384p", UnitProblem::Overflow),
        ];
        for (input, problem) in cases {
            let err = parse_byte_size(input, Some(ByteUnit::MiB)).unwrap_err();
            assert_eq!(err.problem, problem, "{input:?}");
            assert!(err.to_string().contains("expected a size"), "{err}");
        }
        assert_eq!(
            parse_byte_size("512", None).unwrap_err().problem,
            UnitProblem::MissingUnit
        );
    }

    #[test]
    fn byte_size_accessors_and_display() {
        let s = ByteSize::from_mib(1536);
        assert_eq!(s.as_bytes(), 1536 << 20);
        assert_eq!(s.as_kib(), 1536 << 10);
        assert_eq!(s.as_mib(), 1536);
        assert_eq!(s.as_gib(), 1);
        assert_eq!(s.to_string(), "1536m");
        assert_eq!(ByteSize::from_gib(4).to_string(), "4g");
        assert_eq!(ByteSize::from_kib(3).to_string(), "3k");
        assert_eq!(ByteSize::from_bytes(100).to_string(), "100b");
        assert_eq!(ByteSize::ZERO.to_string(), "0b");
        assert_eq!(ByteSize::from_bytes(1 << 50).to_string(), "1p");
        assert_eq!("4g".parse::<ByteSize>(), Ok(ByteSize::from_gib(4)));
        assert_eq!("100".parse::<ByteSize>(), Ok(ByteSize::from_bytes(100)));
        assert_eq!(ByteSize::from_gib(u64::MAX).as_bytes(), u64::MAX);
    }

    #[test]
    fn duration_display() {
        assert_eq!(format_duration(Duration::from_secs(60)), "1min");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_nanos(1)), "1ns");
        assert_eq!(
            format_duration(Duration::MAX),
            "18446744073709551615999999999ns"
        );
    }

    proptest! {
        #[test]
        fn duration_parser_never_panics(input in any::<String>()) {
            let _ = parse_duration(&input, Some(TimeUnit::Seconds));
            let _ = parse_duration(&input, None);
        }

        #[test]
        fn size_parser_never_panics(input in any::<String>()) {
            let _ = parse_byte_size(&input, Some(ByteUnit::MiB));
            let _ = parse_byte_size(&input, None);
        }

        #[test]
        fn unit_shaped_input_never_panics(
            number in "-?[0-9]{0,25}(\\.[0-9]{0,3})?",
            space in " {0,2}",
            suffix in "[a-zA-Z]{0,4}",
        ) {
            let input = format!("{number}{space}{suffix}");
            let _ = parse_duration(&input, Some(TimeUnit::Days));
            let _ = parse_byte_size(&input, Some(ByteUnit::PiB));
        }

        #[test]
        fn duration_round_trips(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            prop_assert_eq!(parse_duration(&format_duration(d), None), Ok(d));
        }

        #[test]
        fn small_duration_round_trips(millis in 0u64..10_000_000_000) {
            let d = Duration::from_millis(millis);
            prop_assert_eq!(parse_duration(&format_duration(d), None), Ok(d));
        }

        #[test]
        fn size_round_trips(bytes in any::<u64>()) {
            let s = ByteSize::from_bytes(bytes);
            prop_assert_eq!(s.to_string().parse::<ByteSize>(), Ok(s));
            prop_assert_eq!(parse_byte_size(&s.to_string(), None), Ok(s));
        }

        #[test]
        fn size_in_whole_units_round_trips(n in 0u64..1 << 20, shift in 0u32..4) {
            let s = ByteSize::from_bytes(n << (10 * shift));
            prop_assert_eq!(parse_byte_size(&s.to_string(), None), Ok(s));
        }
    }
}
