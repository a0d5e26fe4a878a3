//! Code pointers stored relative to an anchor, the only `unsafe` in Ember.
//!
//! A [`RelFnPtr`] is the distance in bytes from [`ANCHOR`] to a [`Trampoline`]. Under ASLR/PIE the
//! loader moves the whole image by one amount, so the distance between two items of the same
//! binary is the same in every process that runs it, while their absolute addresses are not.
//!
//! # Safety argument
//!
//! Turning an integer back into a function pointer and calling it is sound only if the integer
//! is the address of a function with exactly the pointer's signature. [`RelFnPtr::resolve`] relies
//! on its caller for that (it is an `unsafe fn`): the offset must have been produced by
//! [`RelFnPtr::new`] from a real `Trampoline` in a process running this same executable. Every
//! trampoline has the one concrete, non-generic signature [`Trampoline`], so *any* genuine
//! trampoline is a sound call target; which one it is only matters for the result, which the
//! caller checks by a safe `Any` downcast. `resolve` itself additionally refuses any address
//! outside this executable's code mappings, so a corrupted offset that slipped past the caller's
//! checks still cannot send control into data, the heap, or another library.

#![allow(unsafe_code)]

use serde::{Deserialize, Serialize};

use super::error::ClosureError;
use super::image::CodeRanges;
use super::shipped::Trampoline;

/// The fixed point offsets are measured from. A `static` has one address for the whole program
/// (unlike a generic or inlinable function, which may be instantiated more than once), and it
/// moves with the rest of the image.
static ANCHOR: u8 = 0xEB;

fn anchor_address() -> usize {
    (&raw const ANCHOR).addr()
}

/// A [`Trampoline`] stored as its distance from [`ANCHOR`]; meaningful in any process running the
/// same executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct RelFnPtr {
    offset: i64,
}

impl RelFnPtr {
    /// Records where `f` lives relative to the anchor.
    pub(crate) fn new(f: Trampoline) -> Self {
        // Exposing the provenance pairs with `with_exposed_provenance` in `resolve`.
        let addr = (f as *const ()).expose_provenance();
        let offset = addr.wrapping_sub(anchor_address()) as isize as i64;
        Self { offset }
    }

    /// A pointer with an arbitrary offset, to test the checks.
    #[cfg(test)]
    pub(crate) fn from_offset(offset: i64) -> Self {
        Self { offset }
    }

    /// The distance from the anchor.
    pub(crate) fn offset(self) -> i64 {
        self.offset
    }

    /// The absolute address the offset designates in this process, if it lies inside this
    /// executable's code.
    pub(crate) fn target_in_code(self) -> Result<usize, ClosureError> {
        let bad = ClosureError::BadPointer {
            offset: self.offset,
        };
        let offset = isize::try_from(self.offset).map_err(|_| bad.clone())?;
        let addr = anchor_address()
            .checked_add_signed(offset)
            .ok_or_else(|| bad.clone())?;
        if CodeRanges::current().contains(addr) {
            Ok(addr)
        } else {
            Err(bad)
        }
    }

    /// Turns the offset back into the trampoline it was made from.
    ///
    /// Fails with [`ClosureError::BadPointer`] if the address is outside this executable's code.
    ///
    /// # Safety
    ///
    /// `self` must hold an offset computed by [`RelFnPtr::new`] in a process running this same
    /// executable (byte for byte). The caller establishes this by checking the entry's seal,
    /// which is keyed by this binary's digest, before calling.
    pub(crate) unsafe fn resolve(self) -> Result<Trampoline, ClosureError> {
        let addr = self.target_in_code()?;
        let ptr: *const () = std::ptr::with_exposed_provenance(addr);
        // SAFETY: by the caller's contract, `addr` is `anchor + (f - anchor')` where `f` was the
        // address of a `Trampoline` and `anchor'` the anchor's address in a process running this
        // same executable. The loader places the whole image at one displacement, so `addr` is
        // that same function in this process: a valid, non-null function pointer of type
        // `Trampoline`, which has the size and ABI of `*const ()` on every supported target.
        // The range check above is belt and braces: it holds for every genuine offset.
        Ok(unsafe { std::mem::transmute::<*const (), Trampoline>(ptr) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::closure::shipped::Decoded;

    fn dummy_trampoline(_payload: &[u8], _type_check: u64) -> Result<Decoded, ClosureError> {
        Ok(Decoded::new(Box::new(42u32), "u32"))
    }

    #[test]
    fn a_pointer_round_trips_through_its_offset() {
        let f: Trampoline = dummy_trampoline;
        let rel = RelFnPtr::new(f);
        let bytes = postcard::to_allocvec(&rel).unwrap();
        let back: RelFnPtr = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, rel);
        // SAFETY: `back` was made by `RelFnPtr::new` from a `Trampoline` in this very process.
        let g = unsafe { back.resolve() }.unwrap();
        assert!(std::ptr::fn_addr_eq(f, g));
        let decoded = g(&[], 0).unwrap();
        assert_eq!(decoded.concrete(), "u32");
    }

    #[test]
    fn absurd_offsets_are_rejected_before_any_call() {
        for offset in [i64::MIN, i64::MAX, -1 << 40, 1 << 40, -(1 << 31), 1 << 31] {
            let err = RelFnPtr::from_offset(offset).target_in_code().unwrap_err();
            assert_eq!(err, ClosureError::BadPointer { offset });
        }
    }

    #[test]
    fn offsets_into_data_are_rejected() {
        // The anchor itself is data, not code.
        assert!(RelFnPtr::from_offset(0).target_in_code().is_err());
        static DATA: [u8; 16] = [0; 16];
        let data_offset = ((&raw const DATA).addr() as i64).wrapping_sub(anchor_address() as i64);
        assert!(RelFnPtr::from_offset(data_offset).target_in_code().is_err());
    }
}
