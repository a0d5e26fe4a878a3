//! [`ShippedBox`]: a trait object that can be serialized in one process and deserialized in
//! another process running the same binary.
//!
//! On the wire an entry is `(offset, type_check, seal, payload)`:
//!
//! - `offset`: a [`RelFnPtr`] to the trampoline `decode_entry::<T, D>`, monomorphized for the
//!   concrete type `T` and the trait-object type `D`; it knows how to turn the payload into a
//!   `Box<D>`, so the receiver does not need to know `T`.
//! - `type_check`: a 64-bit check value of `(T, D)`; the trampoline refuses any other value
//!   before it deserializes anything.
//! - `seal`: a 64-bit check value over `(offset, type_check, D)` keyed by the binary digest; the
//!   receiver recomputes it before it touches the pointer, so bytes from another build, corrupted
//!   bytes, or an entry decoded as the wrong `D` are refused without a call.
//! - `payload`: the postcard encoding of the `T` value.
//!
//! The entry is encoded once, when the box is made (like Spark's `ClosureCleaner` check, a value
//! that cannot be serialized fails where it is created, not when a task is launched), and the
//! bytes are kept beside the live value. The value is therefore immutable: a `ShippedBox` derefs to
//! `&D` and clones share it.

use std::any::{Any, type_name};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::de::{self, DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::check;
use super::digest::binary_digest;
use super::error::ClosureError;
use super::rel_ptr::RelFnPtr;

/// Connects a concrete type `T` to the trait-object type `Self` it is shipped as.
///
/// Implement it once per trait, for every `T` that implements the trait; the body is always the
/// unsizing coercion `value`. Because `dyn YourTrait` is a local type, a downstream crate may
/// write this impl for its own traits:
///
/// ```
/// use ember_core::closure::ShipAs;
/// use serde::{Serialize, de::DeserializeOwned};
///
/// pub trait Partitioner: Send + Sync {
///     fn partition(&self, key: u64) -> usize;
/// }
///
/// impl<T> ShipAs<T> for dyn Partitioner
/// where
///     T: Partitioner + Serialize + DeserializeOwned + 'static,
/// {
///     fn upcast(value: Box<T>) -> Box<Self> {
///         value
///     }
/// }
/// ```
pub trait ShipAs<T> {
    /// Turns the concrete value into the trait object.
    fn upcast(value: Box<T>) -> Box<Self>;
}

/// Any serializable, shareable value can be shipped as `dyn Any + Send + Sync` and downcast on
/// the other side.
impl<T> ShipAs<T> for dyn Any + Send + Sync
where
    T: Any + Send + Sync,
{
    fn upcast(value: Box<T>) -> Box<Self> {
        value
    }
}

/// The one signature every trampoline has. It is concrete (not generic), so a code pointer that
/// lands on *any* trampoline is a sound call; the caller checks which one by downcasting the
/// result.
pub(crate) type Trampoline = fn(payload: &[u8], type_check: u64) -> Result<Decoded, ClosureError>;

/// What a trampoline returns: a `Box<Box<D>>` behind `dyn Any`, and the concrete type's name.
pub(crate) struct Decoded {
    value: Box<dyn Any>,
    concrete: &'static str,
}

impl Decoded {
    pub(crate) fn new(value: Box<dyn Any>, concrete: &'static str) -> Self {
        Self { value, concrete }
    }

    pub(crate) fn concrete(&self) -> &'static str {
        self.concrete
    }
}

/// The trampoline for concrete type `T` shipped as `D`.
fn decode_entry<T, D>(payload: &[u8], type_check: u64) -> Result<Decoded, ClosureError>
where
    T: DeserializeOwned + 'static,
    D: ?Sized + ShipAs<T> + 'static,
{
    let expected = check::type_check::<T, D>();
    if type_check != expected {
        return Err(ClosureError::TypeMismatch {
            what: type_name::<T>(),
            expected_hash: expected,
            found_hash: type_check,
        });
    }
    let value: T = decode_exact(payload, type_name::<T>())?;
    let boxed: Box<D> = D::upcast(Box::new(value));
    Ok(Decoded::new(Box::new(boxed), type_name::<T>()))
}

/// Decodes postcard bytes that must hold exactly one `T`.
///
/// postcard drops the message of errors raised inside `Deserialize` impls, so a nested
/// [`ShippedBox`] that fails leaves its [`ClosureError`] in [`NESTED_ERROR`] and this function,
/// which wraps every decode of shipped bytes, reports it as the cause.
pub(crate) fn decode_exact<T: DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, ClosureError> {
    NESTED_ERROR.with(|slot| slot.take());
    let result = postcard::take_from_bytes::<T>(bytes);
    let nested = NESTED_ERROR.with(|slot| slot.take());
    let (value, rest) = result.map_err(|e| match nested {
        Some(source) => ClosureError::Nested {
            what,
            source: Box::new(source),
        },
        None => ClosureError::Decode {
            what,
            reason: e.to_string(),
        },
    })?;
    if !rest.is_empty() {
        return Err(ClosureError::Decode {
            what,
            reason: format!("{} trailing bytes", rest.len()),
        });
    }
    Ok(value)
}

thread_local! {
    /// The last error of a nested `ShippedBox` deserialization on this thread (see
    /// [`decode_exact`]). An error swallowed by the enclosing type (an untagged enum trying
    /// variants) may linger until the next decode clears it; at worst it is then named as the
    /// cause of a later failure in the same decode.
    static NESTED_ERROR: std::cell::RefCell<Option<ClosureError>> =
        const { std::cell::RefCell::new(None) };
}

/// The encoded form of one entry, exactly as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Wire {
    pub(crate) ptr: RelFnPtr,
    pub(crate) type_check: u64,
    pub(crate) seal: u64,
    pub(crate) payload: Payload,
}

impl Wire {
    /// Encodes `value` as an entry for `D`.
    fn encode<T, D>(value: &T) -> Result<Self, ClosureError>
    where
        T: Serialize + DeserializeOwned + 'static,
        D: ?Sized + ShipAs<T> + 'static,
    {
        let payload = postcard::to_allocvec(value).map_err(|e| ClosureError::Encode {
            what: type_name::<T>(),
            reason: e.to_string(),
        })?;
        let trampoline: Trampoline = decode_entry::<T, D>;
        let ptr = RelFnPtr::new(trampoline);
        let type_check = check::type_check::<T, D>();
        let seal = check::seal::<D>(binary_digest()?, ptr.offset(), type_check);
        Ok(Self {
            ptr,
            type_check,
            seal,
            payload: Payload(payload),
        })
    }

    /// Turns the entry back into a value, after checking the seal and the pointer.
    #[allow(unsafe_code)] // The one call of `RelFnPtr::resolve`; see the SAFETY comment.
    fn open<D: ?Sized + 'static>(&self) -> Result<(Box<D>, &'static str), ClosureError> {
        let digest = binary_digest()?;
        if check::seal::<D>(digest, self.ptr.offset(), self.type_check) != self.seal {
            return Err(ClosureError::SealMismatch {
                what: type_name::<D>(),
                digest: *digest,
            });
        }
        // SAFETY: the seal is keyed by this binary's digest and covers the offset, so (up to a
        // 2^-64 accident) this offset was computed by `RelFnPtr::new` from a real trampoline in
        // `Wire::encode`, in a process running this same executable. That is `resolve`'s
        // contract. Entries are only as trustworthy as their sender: a peer that knows the
        // digest could forge a seal, which is why peers must be authenticated (module docs).
        let trampoline = unsafe { self.ptr.resolve() }?;
        let decoded = trampoline(&self.payload.0, self.type_check)?;
        let concrete = decoded.concrete();
        match decoded.value.downcast::<Box<D>>() {
            Ok(boxed) => Ok((*boxed, concrete)),
            // The seal covers `D`, so this means a check-value collision; still refuse safely.
            Err(_) => Err(ClosureError::TypeMismatch {
                what: type_name::<D>(),
                expected_hash: self.type_check,
                found_hash: self.type_check,
            }),
        }
    }

    #[cfg(test)]
    pub(crate) fn reseal<D: ?Sized + 'static>(&mut self) {
        self.seal = check::seal::<D>(binary_digest().unwrap(), self.ptr.offset(), self.type_check);
    }
}

/// Payload bytes, encoded as a serde byte string (a length and raw bytes in postcard).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Payload(pub(crate) Vec<u8>);

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.0.len())
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(PayloadVisitor)
    }
}

struct PayloadVisitor;

impl<'de> Visitor<'de> for PayloadVisitor {
    type Value = Payload;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Payload, E> {
        Ok(Payload(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
        Ok(Payload(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Payload, A::Error> {
        // Formats without a byte-string type (JSON) write a sequence of numbers. The size hint
        // comes from the input, so it is capped before it is trusted with an allocation.
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Ok(Payload(bytes))
    }
}

/// A trait object `D` that serializes as its concrete type and deserializes, in another process
/// running the same binary, back into a `D` — without the receiver naming the concrete type.
///
/// Make one with [`ShippedBox::new`] from any `T: Serialize + DeserializeOwned + 'static` for
/// which `D: ShipAs<T>`. It derefs to `D`, implements `Serialize`/`Deserialize` (so it can be a
/// field of a `#[derive(Serialize, Deserialize)]` struct, including a type that is itself shipped
/// in another `ShippedBox`), and clones cheaply by sharing the value and its encoded bytes.
///
/// ```
/// use ember_core::closure::{ShipAs, ShippedBox};
/// use serde::{Deserialize, Serialize, de::DeserializeOwned};
///
/// trait Shape: Send + Sync {
///     fn area(&self) -> f64;
/// }
///
/// impl<T: Shape + Serialize + DeserializeOwned + 'static> ShipAs<T> for dyn Shape {
///     fn upcast(value: Box<T>) -> Box<Self> {
///         value
///     }
/// }
///
/// #[derive(Serialize, Deserialize)]
/// struct Square(f64);
///
/// impl Shape for Square {
///     fn area(&self) -> f64 {
///         self.0 * self.0
///     }
/// }
///
/// let shape: ShippedBox<dyn Shape> = ShippedBox::new(Square(3.0))?;
/// let bytes = shape.to_bytes()?;
/// // ... in an executor running the same binary:
/// let back = ShippedBox::<dyn Shape>::from_bytes(&bytes)?;
/// assert_eq!(back.area(), 9.0);
/// # Ok::<(), ember_core::closure::ClosureError>(())
/// ```
pub struct ShippedBox<D: ?Sized + 'static> {
    value: Arc<D>,
    wire: Arc<Wire>,
    concrete: &'static str,
}

impl<D: ?Sized + 'static> ShippedBox<D> {
    /// Encodes `value` for shipping and keeps it for local use.
    ///
    /// Fails if `value` cannot be serialized, or if the binary digest (which keys the seal)
    /// cannot be computed.
    pub fn new<T>(value: T) -> Result<Self, ClosureError>
    where
        T: Serialize + DeserializeOwned + 'static,
        D: ShipAs<T>,
    {
        let wire = Wire::encode::<T, D>(&value)?;
        Ok(Self {
            value: Arc::from(D::upcast(Box::new(value))),
            wire: Arc::new(wire),
            concrete: type_name::<T>(),
        })
    }

    /// Encodes the box on its own (postcard).
    pub fn to_bytes(&self) -> Result<Vec<u8>, ClosureError> {
        postcard::to_allocvec(&*self.wire).map_err(|e| ClosureError::Encode {
            what: type_name::<Self>(),
            reason: e.to_string(),
        })
    }

    /// Decodes a box encoded by [`ShippedBox::to_bytes`] in a process running the same binary.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ClosureError> {
        Self::from_wire(decode_exact::<Wire>(bytes, type_name::<Self>())?)
    }

    fn from_wire(wire: Wire) -> Result<Self, ClosureError> {
        let (boxed, concrete) = wire.open::<D>()?;
        Ok(Self {
            value: Arc::from(boxed),
            wire: Arc::new(wire),
            concrete,
        })
    }

    /// Decodes a fresh, unshared copy of the value from the kept bytes, for callers that need to
    /// own or mutate it (for example a per-task accumulator).
    pub fn decode_owned(&self) -> Result<Box<D>, ClosureError> {
        self.wire.open::<D>().map(|(boxed, _)| boxed)
    }

    /// The shared value.
    pub fn shared(&self) -> Arc<D> {
        Arc::clone(&self.value)
    }

    /// The name of the concrete type behind the trait object (for logs and errors).
    pub fn concrete_type(&self) -> &'static str {
        self.concrete
    }

    /// The size of the encoded concrete value in bytes.
    pub fn payload_len(&self) -> usize {
        self.wire.payload.0.len()
    }

    #[cfg(test)]
    pub(crate) fn wire(&self) -> &Wire {
        &self.wire
    }
}

impl<D: ?Sized + 'static> Deref for ShippedBox<D> {
    type Target = D;

    fn deref(&self) -> &D {
        &self.value
    }
}

impl<D: ?Sized + 'static> AsRef<D> for ShippedBox<D> {
    fn as_ref(&self) -> &D {
        &self.value
    }
}

impl<D: ?Sized + 'static> Clone for ShippedBox<D> {
    fn clone(&self) -> Self {
        Self {
            value: Arc::clone(&self.value),
            wire: Arc::clone(&self.wire),
            concrete: self.concrete,
        }
    }
}

impl<D: ?Sized + 'static> fmt::Debug for ShippedBox<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShippedBox")
            .field("as", &type_name::<D>())
            .field("concrete", &self.concrete)
            .field("offset", &self.wire.ptr.offset())
            .field("payload_len", &self.wire.payload.0.len())
            .finish()
    }
}

impl<D: ?Sized + 'static> Serialize for ShippedBox<D> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.wire.serialize(serializer)
    }
}

impl<'de, D: ?Sized + 'static> Deserialize<'de> for ShippedBox<D> {
    fn deserialize<De: Deserializer<'de>>(deserializer: De) -> Result<Self, De::Error> {
        let wire = Wire::deserialize(deserializer)?;
        Self::from_wire(wire).map_err(|e| {
            let message = e.to_string();
            NESTED_ERROR.with(|slot| *slot.borrow_mut() = Some(e));
            de::Error::custom(message)
        })
    }
}
