//! [`TaskFn`]: the type-erased task closure an executor runs, built on [`ShippedBox`].
//!
//! Spark counterpart: the `func: (TaskContext, Iterator[T]) => U` of a `ResultTask`, serialized
//! into the task binary by the driver and deserialized by `Executor.TaskRunner`. Here the closure
//! takes a partition index and returns a serializable value; the executor sends the encoded
//! value back and the driver decodes it with the job's [`ResultDecoder`].

use std::any::type_name;
use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::ClosureError;
use super::shipped::{ShipAs, ShippedBox, decode_exact};

/// The body of a task: given a partition index, compute and encode the partition's result.
///
/// Implementations must be serializable to be shipped (see [`TaskFn::from_body`]); the usual
/// one wraps a user closure ([`TaskFn::new`]).
pub trait TaskBody: Send + Sync + 'static {
    /// Runs the task for `partition` and returns the postcard encoding of its result.
    ///
    /// A panic in user code propagates to the caller; the executor catches it (see
    /// [`TaskFn::run`]).
    fn run(&self, partition: usize) -> Result<Vec<u8>, ClosureError>;
}

impl<B> ShipAs<B> for dyn TaskBody
where
    B: TaskBody,
{
    fn upcast(value: Box<B>) -> Box<Self> {
        value
    }
}

/// A user closure over a partition index, as a [`TaskBody`].
#[derive(Serialize, Deserialize)]
#[serde(
    transparent,
    bound(serialize = "F: Serialize", deserialize = "F: DeserializeOwned")
)]
struct PartitionFn<F, R> {
    f: F,
    #[serde(skip)]
    result: PhantomData<fn() -> R>,
}

impl<F, R> TaskBody for PartitionFn<F, R>
where
    F: serde_closure::traits::Fn<(usize,), Output = R> + Send + Sync + 'static,
    R: Serialize + 'static,
{
    fn run(&self, partition: usize) -> Result<Vec<u8>, ClosureError> {
        let result = self.f.call((partition,));
        postcard::to_allocvec(&result).map_err(|e| ClosureError::Encode {
            what: type_name::<R>(),
            reason: e.to_string(),
        })
    }
}

/// A serializable, type-erased task closure: a partition index in, encoded result bytes out.
///
/// The driver makes one with [`TaskFn::new`] and keeps the returned [`ResultDecoder`]; it ships
/// the `TaskFn` (it implements `Serialize`/`Deserialize`, or use [`TaskFn::to_bytes`]); the
/// executor decodes it and calls [`TaskFn::run`], which needs no knowledge of the closure's type.
///
/// ```
/// use ember_core::closure::TaskFn;
/// use serde_closure::Fn;
///
/// let words = vec!["spark".to_string(), "ember".to_string()];
/// let suffix = String::from("!");
/// let (task, decoder) = TaskFn::new(Fn!(move |partition: usize| {
///     format!("{}{}", words[partition], suffix)
/// }))?;
///
/// // Driver: ship the bytes in a LaunchTask message.
/// let bytes = task.to_bytes()?;
///
/// // Executor (the same binary, in another process): decode and run.
/// let output = TaskFn::from_bytes(&bytes)?.run(1)?;
///
/// // Driver: decode the StatusUpdate's result with the job's decoder.
/// assert_eq!(decoder.decode(&output)?, "ember!");
/// # Ok::<(), ember_core::closure::ClosureError>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskFn {
    body: ShippedBox<dyn TaskBody>,
}

impl TaskFn {
    /// Wraps a serializable closure over a partition index.
    ///
    /// `F` is usually a `serde_closure::Fn!(move |partition: usize| ...)` closure. On stable Rust
    /// those implement [`serde_closure::traits::Fn`] rather than `std::ops::Fn`, so that is the
    /// bound here; ordinary closures and functions satisfy it too but are not serializable.
    ///
    /// Fails if the closure's captured state cannot be serialized.
    pub fn new<F, R>(f: F) -> Result<(TaskFn, ResultDecoder<R>), ClosureError>
    where
        F: serde_closure::traits::Fn<(usize,), Output = R>
            + Serialize
            + DeserializeOwned
            + Send
            + Sync
            + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let body = PartitionFn {
            f,
            result: PhantomData,
        };
        Ok((Self::from_body(body)?, ResultDecoder::new()))
    }

    /// Wraps any serializable [`TaskBody`].
    pub fn from_body<B>(body: B) -> Result<TaskFn, ClosureError>
    where
        B: TaskBody + Serialize + DeserializeOwned,
    {
        Ok(Self {
            body: ShippedBox::new(body)?,
        })
    }

    /// The shipped body.
    pub fn shipped(&self) -> &ShippedBox<dyn TaskBody> {
        &self.body
    }

    /// Encodes the task on its own (postcard).
    pub fn to_bytes(&self) -> Result<Vec<u8>, ClosureError> {
        self.body.to_bytes()
    }

    /// Decodes a task encoded by [`TaskFn::to_bytes`] in a process running the same binary.
    pub fn from_bytes(bytes: &[u8]) -> Result<TaskFn, ClosureError> {
        Ok(Self {
            body: ShippedBox::from_bytes(bytes)?,
        })
    }

    /// Runs the task for `partition` and returns the encoded result.
    ///
    /// In the driver this calls the original closure directly; a local backend that wants to
    /// exercise the wire format as Spark's local mode does can run
    /// `TaskFn::from_bytes(&task.to_bytes()?)?.run(p)` instead.
    ///
    /// Panics in the user closure are not caught here; the executor wraps this call in
    /// `std::panic::catch_unwind` to report the panic message. Nothing in this module holds a
    /// lock or leaves shared state half-updated across the call, so catching is sound. Wrapping
    /// the call in `AssertUnwindSafe` is justified when, as the executor does, each task attempt
    /// decodes its own `TaskFn` and discards it after a panic, so no state the panic may have
    /// broken is observed again (user closures can only share state through `Sync` types such as
    /// atomics and mutexes, which stay consistent or poison).
    pub fn run(&self, partition: usize) -> Result<Vec<u8>, ClosureError> {
        self.body.run(partition)
    }

    /// The name of the concrete body type (for logs).
    pub fn concrete_type(&self) -> &'static str {
        self.body.concrete_type()
    }
}

/// Decodes the result bytes of a [`TaskFn`] made by [`TaskFn::new`] as the closure's return
/// type `R`. The driver keeps it for the job while the untyped `TaskFn` travels.
pub struct ResultDecoder<R> {
    result: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> ResultDecoder<R> {
    /// A decoder for results of type `R`.
    pub fn new() -> Self {
        Self {
            result: PhantomData,
        }
    }

    /// Decodes one task's result.
    pub fn decode(&self, bytes: &[u8]) -> Result<R, ClosureError> {
        decode_exact(bytes, type_name::<R>())
    }
}

impl<R: DeserializeOwned> Default for ResultDecoder<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> Clone for ResultDecoder<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for ResultDecoder<R> {}

impl<R> fmt::Debug for ResultDecoder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResultDecoder<{}>", type_name::<R>())
    }
}
