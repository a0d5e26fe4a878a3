//! Configuration: the typed values that `ember.*` keys hold.
//!
//! Spark counterpart: the value converters behind `ConfigBuilder` and `JavaUtils.timeStringAs` /
//! `byteStringAs`. Files: `value` (value types and enumerations), `units` (durations and sizes),
//! `error`.

mod error;
mod units;
mod value;

pub use error::{ConfError, MalformedReason, REDACTED, is_secret_key, redact_value};
pub use units::{
    BareUnit, ByteSize, ByteUnit, Quantity, TimeUnit, UnitParseError, UnitProblem,
    format_duration, parse_byte_size, parse_duration,
};
pub use value::{ConfigEnum, ConfigValue};
