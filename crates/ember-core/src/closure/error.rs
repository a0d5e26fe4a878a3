//! The errors of closure shipping.
//!
//! Spark counterparts: `NotSerializableException` ("Task not serializable") when a closure cannot
//! be encoded, and the `ClassNotFoundException`/`InvalidClassException` family when an executor
//! cannot turn task bytes back into code. Ember adds the checks that guard its code pointers: a
//! seal that ties an entry to the binary that produced it, a per-entry type check, and the
//! executable-image range check.

use std::path::PathBuf;

use super::digest::BinaryDigest;

/// Everything that can go wrong when shipping closures and trait objects between processes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClosureError {
    /// A value could not be encoded (its `Serialize` impl failed).
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// The type (or kind of data) being encoded.
        what: &'static str,
        /// The encoder's message.
        reason: String,
    },
    /// Bytes could not be decoded into the expected value.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// The type (or kind of data) being decoded.
        what: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// A shipped value nested inside `what` could not be decoded.
    #[error("cannot decode {what}: {source}")]
    Nested {
        /// The enclosing type being decoded.
        what: &'static str,
        /// Why the nested value failed.
        source: Box<ClosureError>,
    },
    /// The seal of a shipped entry does not match: the entry was produced by a different binary,
    /// was corrupted, or is being decoded as a different trait-object type than it was encoded
    /// as. Nothing was called.
    #[error(
        "shipped {what} is not sealed by this binary (digest {digest}): it was produced by a \
         different build of the application, corrupted in transit, or encoded as another type; \
         refusing to call its code pointer"
    )]
    SealMismatch {
        /// The trait-object type the entry was decoded as.
        what: &'static str,
        /// The digest of this process's binary, which keys the seal.
        digest: BinaryDigest,
    },
    /// A trampoline found a type check that is not its own: the entry names a different
    /// concrete type than the code it points to. Nothing was deserialized.
    #[error(
        "type check failed for {what}: the decoder expects {expected_hash:#018x} but the entry \
         carries {found_hash:#018x}"
    )]
    TypeMismatch {
        /// The concrete type the trampoline decodes.
        what: &'static str,
        /// The check value of that type.
        expected_hash: u64,
        /// The check value the entry carried.
        found_hash: u64,
    },
    /// A code pointer would land outside this executable's code. Nothing was called.
    #[error(
        "shipped code pointer offset {offset:#x} does not land inside this executable's code; \
         refusing to call it"
    )]
    BadPointer {
        /// The offset from the anchor, as carried by the entry.
        offset: i64,
    },
    /// The application binary could not be read to compute its digest.
    #[error("cannot compute the digest of {}: {reason}", path.display())]
    Digest {
        /// The file that was read.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
}

impl ClosureError {
    /// Whether the error means the bytes came from a different binary (or were corrupted), as
    /// opposed to a user type that failed to encode or decode.
    pub fn is_binary_mismatch(&self) -> bool {
        match self {
            Self::SealMismatch { .. } | Self::TypeMismatch { .. } | Self::BadPointer { .. } => true,
            Self::Nested { source, .. } => source.is_binary_mismatch(),
            _ => false,
        }
    }
}
