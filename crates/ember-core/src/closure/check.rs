//! 64-bit check values: the per-entry type check and the seal.
//!
//! Both are SHA-256 over a domain tag and length-prefixed fields, truncated to 64 bits. They guard
//! against accidents (a corrupted entry, an entry from another build, an entry decoded as the
//! wrong trait object); they are not a defence against a peer that wants to forge entries — that
//! is the job of the RPC layer's authentication (see the module docs).

use std::any::{TypeId, type_name};
use std::hash::{Hash, Hasher};

use sha2::{Digest as _, Sha256};

use super::digest::BinaryDigest;

/// Builds a 64-bit check value from typed fields.
struct CheckBuilder(Sha256);

impl CheckBuilder {
    fn new(domain: &str) -> Self {
        let mut builder = Self(Sha256::new());
        builder.bytes(domain.as_bytes());
        builder
    }

    fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes(&value.to_le_bytes())
    }

    /// Feeds the identity of a type: its `TypeId` (exact within one binary, which is the only
    /// place these values are compared) and its name (so that the value reads the same across
    /// builds of unchanged code, which keeps the check meaningful as documentation).
    fn type_of<T: ?Sized + 'static>(&mut self) -> &mut Self {
        TypeId::of::<T>().hash(&mut ShaHasher(&mut self.0));
        self.bytes(type_name::<T>().as_bytes())
    }

    fn finish(&self) -> u64 {
        let full: [u8; 32] = self.0.clone().finalize().into();
        let mut first = [0u8; 8];
        first.copy_from_slice(&full[..8]);
        u64::from_le_bytes(first)
    }
}

/// Lets `Hash` impls (such as `TypeId`'s) write straight into SHA-256.
struct ShaHasher<'a>(&'a mut Sha256);

impl Hasher for ShaHasher<'_> {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Never asked for: the surrounding `CheckBuilder` finalizes the SHA-256 state.
        0
    }
}

/// The type check of an entry whose concrete type is `T`, shipped behind `Box<D>`. The
/// trampoline for `(T, D)` recomputes it and refuses an entry that carries another value.
pub(crate) fn type_check<T: 'static, D: ?Sized + 'static>() -> u64 {
    CheckBuilder::new("ember.closure.type.v1")
        .type_of::<T>()
        .type_of::<D>()
        .finish()
}

/// The seal of an entry: binds its code-pointer offset and type check to the binary that made
/// it (keyed by that binary's digest) and to the trait-object type `D` it was shipped as. The
/// receiver recomputes it with its own digest and its own `D` before touching the pointer.
pub(crate) fn seal<D: ?Sized + 'static>(key: &BinaryDigest, offset: i64, type_check: u64) -> u64 {
    CheckBuilder::new("ember.closure.seal.v1")
        .bytes(key.as_bytes())
        .u64(offset as u64)
        .u64(type_check)
        .type_of::<D>()
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_checks_tell_types_apart() {
        assert_eq!(type_check::<u32, str>(), type_check::<u32, str>());
        assert_ne!(type_check::<u32, str>(), type_check::<u64, str>());
        assert_ne!(type_check::<u32, str>(), type_check::<u32, [u8]>());
    }

    #[test]
    fn type_checks_tell_closures_of_one_function_apart() {
        // Two closures in one function share a type name; their TypeIds differ.
        fn check_of<T: 'static>(_: &T) -> u64 {
            type_check::<T, str>()
        }
        let a = |x: u32| x + 1;
        let b = |x: u32| x + 1;
        assert_eq!(type_name_of(&a), type_name_of(&b));
        assert_ne!(check_of(&a), check_of(&b));
    }

    fn type_name_of<T>(_: &T) -> &'static str {
        type_name::<T>()
    }

    #[test]
    fn seals_depend_on_every_input() {
        let key = BinaryDigest::from_bytes([7; 32]);
        let other_key = BinaryDigest::from_bytes([8; 32]);
        let base = seal::<str>(&key, 100, 5);
        assert_eq!(base, seal::<str>(&key, 100, 5));
        assert_ne!(base, seal::<str>(&other_key, 100, 5));
        assert_ne!(base, seal::<str>(&key, 101, 5));
        assert_ne!(base, seal::<str>(&key, 100, 6));
        assert_ne!(base, seal::<[u8]>(&key, 100, 5));
    }
}
