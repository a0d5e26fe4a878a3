//! Closure shipping: turning user functions in the driver into code an executor can run.
//!
//! Spark serializes closures with Java serialization and the executor loads their classes from
//! the application jar. Rust has no class loader, but Ember's driver and executors run the
//! *identical binary* (a Worker starts the application's own executable in the executor role), so
//! the code is already there; only a way to name it is missing. This module names code by its
//! distance from an anchor in the same binary, and is the only place in Ember that uses `unsafe`.
//!
//! # Mechanism
//!
//! - User functions are serializable closures: `serde_closure::Fn!(move |x| ...)` captures its
//!   environment into a struct that implements `Serialize` and `Deserialize`.
//! - A value of concrete type `T` that is to be used as a trait object `D` (a task body, later a
//!   map function, a partitioner, an aggregator...) is put in a [`ShippedBox<D>`]. Its encoding
//!   carries a *trampoline*, `decode_entry::<T, D>`, monomorphized for `T`: a function that
//!   decodes `T` from bytes and returns it as `Box<D>`. The trampoline is stored as an offset from
//!   a fixed anchor (`rel_ptr`), which stays valid under ASLR/PIE because the loader moves the
//!   whole image by one amount. The receiver adds the offset to its own anchor, calls the
//!   trampoline, and gets a `Box<D>` without ever naming `T`.
//! - [`TaskFn`] is a `ShippedBox<dyn TaskBody>`: a closure over a partition index whose result
//!   travels back as postcard bytes, decoded in the driver by the job's [`ResultDecoder`].
//! - [`binary_digest`] is the SHA-256 of the running executable. It goes with executor
//!   registration (the driver refuses a mismatch) and keys the seal of every entry.
//!
//! # Safety argument
//!
//! Calling through a decoded code pointer is sound only if the pointer is a real trampoline of
//! this binary. Three checks stand between received bytes and that call:
//!
//! 1. **Identical binary.** Executors register with the digest of their binary, and the driver
//!    refuses any other; Workers verify a fetched binary with [`digest_file`] before starting it.
//!    Within one binary, an offset taken from a trampoline in one process designates the same
//!    trampoline in every other process.
//! 2. **Seal.** Each entry carries a 64-bit check over `(offset, type check, D)` keyed by the
//!    binary digest. It is verified *before* the pointer is touched, so bytes from another build,
//!    corrupted bytes, and an entry decoded as the wrong trait-object type are refused with
//!    [`ClosureError::SealMismatch`]; random bytes pass with probability 2^-64.
//! 3. **Code range.** The target address must lie in an executable mapping of this binary
//!    (`/proc/self/maps` on Linux), otherwise [`ClosureError::BadPointer`].
//!
//! All trampolines share one concrete signature, so a pointer that reaches *any* trampoline is a
//! sound call. The trampoline then compares the entry's type check with its own (a hash of the
//! `TypeId`s and names of `T` and `D`) before deserializing ([`ClosureError::TypeMismatch`]), and
//! the caller receives the result through a checked `Any` downcast to `Box<D>`.
//!
//! These checks catch accidents. They do not make it safe to decode entries from an untrusted
//! peer: anyone with the binary can compute its digest and forge a seal, and a task is arbitrary
//! code by design. Only accept closures over connections the RPC layer authenticated
//! (`ember.authenticate`), exactly as Spark only accepts tasks from its own driver.
//!
//! Panics in user code pass through this module untouched; executors catch them with
//! `catch_unwind` (see [`TaskFn::run`] for why that is sound).
//!
//! # Example
//!
//! ```
//! use ember_core::closure::TaskFn;
//! use serde_closure::Fn;
//!
//! let factor = 10u64;
//! let offsets = vec![1u64, 2, 3];
//! let (task, decoder) = TaskFn::new(Fn!(move |partition: usize| {
//!     offsets[partition] * factor
//! }))?;
//!
//! let bytes = task.to_bytes()?; // driver -> executor
//! let output = TaskFn::from_bytes(&bytes)?.run(2)?; // executor
//! assert_eq!(decoder.decode(&output)?, 30); // executor -> driver
//! # Ok::<(), ember_core::closure::ClosureError>(())
//! ```
//!
//! # Limitations
//!
//! - On stable Rust `serde_closure` closures implement `serde_closure::traits::Fn`, not
//!   `std::ops::Fn`; call them with `.call((args,))`. Bounds in Ember use the former.
//! - `Fn!` finds captured variables by looking for identifiers in the closure body, so it misses
//!   captures written inside format strings: `format!("{name}")` fails to compile (with an error
//!   about `Copy` not being implemented), `format!("{}", name)` works.
//! - A `ShippedBox` encodes its value when it is made and keeps the bytes, so the value is
//!   immutable (it derefs to `&D`); state changed through interior mutability afterwards is not
//!   shipped.
//! - The application and `ember-core` must be linked into the executable (the default for Rust),
//!   not loaded from a shared library at a separate address.

mod check;
mod digest;
mod error;
mod image;
mod rel_ptr;
mod shipped;
mod task;

#[cfg(test)]
mod tests;

pub use digest::{BinaryDigest, binary_digest, digest_file};
pub use error::ClosureError;
pub use shipped::{ShipAs, ShippedBox};
pub use task::{ResultDecoder, TaskBody, TaskFn};
