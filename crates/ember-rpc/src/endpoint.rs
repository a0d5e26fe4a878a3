//! The endpoint trait and the context handed to its handlers.
//!
//! Spark counterpart: `RpcEndpoint` / `ThreadSafeRpcEndpoint`.
//!
//! # Lifecycle
//!
//! ```text
//!   setup_endpoint ──▶ on_start ──▶ { receive | receive_and_reply | on_connected |
//!                                     on_disconnected | on_network_error }* ──▶ on_stop
//! ```
//!
//! * An endpoint handles one message at a time, in arrival order, on its own task; it owns its
//!   state through `&mut self`, so it needs no locks.
//! * `on_start` runs before the first message. If it fails, the endpoint is removed and
//!   [`RpcEnv::setup_endpoint`](crate::RpcEnv::setup_endpoint) returns the error.
//! * `on_stop` runs after the last message: after [`RpcEnv::stop`](crate::RpcEnv::stop),
//!   [`EndpointContext::stop_self`], or [`RpcEnv::shutdown`](crate::RpcEnv::shutdown). Messages
//!   that were already queued are handled first; later ones are refused.
//! * Connection events are delivered to every endpoint of the RpcEnv, in order with its messages.
//!
//! # Errors and panics
//!
//! A handler that returns an error or panics does not stop the endpoint: the error or the panic
//! message is logged, the asker of a request that has not been answered gets it as a
//! [`CallFailure`], and the endpoint goes on with its next message. State the handler changed
//! before failing stays changed, so handlers should validate before they mutate.
//!
//! # Deadlocks
//!
//! A handler that awaits an `ask` to its own endpoint waits forever (the reply would be handled
//! after the current message). Ask other endpoints, or send to yourself and continue in the next
//! message.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use crate::address::RpcAddress;
use crate::endpoint_ref::EndpointRef;
use crate::env::RpcEnv;
use crate::error::{CallFailure, HandlerResult, RpcError};
use crate::transport::connection::{Connection, ReplyError, WireReply};
use crate::transport::envelope;

/// A message type an endpoint can receive: serializable so it can cross the network.
pub trait RpcMessage: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> RpcMessage for T {}

/// A process-local actor that receives typed messages, locally or over the network.
///
/// Handlers are `async`; each returns when the message has been handled.
pub trait RpcEndpoint: Send + 'static {
    /// Everything this endpoint receives, one-way or as requests.
    type Message: RpcMessage;

    /// Runs before the first message.
    fn on_start(
        &mut self,
        _ctx: &EndpointContext<Self::Message>,
    ) -> impl Future<Output = HandlerResult> + Send {
        async { Ok(()) }
    }

    /// Handles a one-way message (sent with [`EndpointRef::send`]).
    fn receive(
        &mut self,
        ctx: &EndpointContext<Self::Message>,
        message: Self::Message,
    ) -> impl Future<Output = HandlerResult> + Send;

    /// Handles a request (sent with [`EndpointRef::ask`]). Reply through `reply`, now or later
    /// (it may be stored and answered while handling another message), or fail it.
    /// The default fails every request with [`CallFailure::Unsupported`].
    fn receive_and_reply(
        &mut self,
        _ctx: &EndpointContext<Self::Message>,
        _message: Self::Message,
        reply: RpcCallContext,
    ) -> impl Future<Output = HandlerResult> + Send {
        async move {
            reply.send_failure(CallFailure::Unsupported);
            Ok(())
        }
    }

    /// Runs after the last message.
    fn on_stop(
        &mut self,
        _ctx: &EndpointContext<Self::Message>,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// A remote RpcEnv connected (its first connection with this one was established).
    fn on_connected(
        &mut self,
        _ctx: &EndpointContext<Self::Message>,
        _remote: RpcAddress,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// A remote RpcEnv disconnected (its last connection with this one closed).
    fn on_disconnected(
        &mut self,
        _ctx: &EndpointContext<Self::Message>,
        _remote: RpcAddress,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// A connection to or from a remote RpcEnv failed.
    fn on_network_error(
        &mut self,
        _ctx: &EndpointContext<Self::Message>,
        _remote: RpcAddress,
        _error: RpcError,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// What every handler of one endpoint gets: its own ref, its RpcEnv, timers and task spawning.
#[derive(Debug)]
pub struct EndpointContext<M> {
    pub(crate) env: RpcEnv,
    pub(crate) self_ref: EndpointRef<M>,
}

impl<M: RpcMessage> EndpointContext<M> {
    /// A ref to this endpoint, e.g. to put into a message so that others can reply.
    pub fn self_ref(&self) -> &EndpointRef<M> {
        &self.self_ref
    }

    /// The RpcEnv this endpoint lives in.
    pub fn env(&self) -> &RpcEnv {
        &self.env
    }

    /// This endpoint's name.
    pub fn name(&self) -> &str {
        self.self_ref.name()
    }

    /// Stops this endpoint once the current message is handled.
    pub fn stop_self(&self) {
        self.env.stop(&self.self_ref);
    }

    /// Sends `message` to this endpoint after `delay`, unless the returned handle is cancelled
    /// or dropped first.
    pub fn schedule_once(&self, delay: Duration, message: M) -> TimerHandle {
        let target = self.self_ref.clone();
        let token = self.env.shutdown_token().child_token();
        let guard = token.clone();
        self.env.spawn(async move {
            tokio::select! {
                _ = guard.cancelled() => {}
                _ = tokio::time::sleep(delay) => {
                    let _ = target.send(message);
                }
            }
        });
        TimerHandle { token }
    }

    /// Sends `make()` to this endpoint after `initial_delay` and then every `period`, until the
    /// returned handle is cancelled or dropped. Ticks missed while the process was busy are
    /// skipped, not bunched.
    pub fn schedule_every(
        &self,
        initial_delay: Duration,
        period: Duration,
        make: impl Fn() -> M + Send + 'static,
    ) -> TimerHandle {
        let target = self.self_ref.clone();
        let token = self.env.shutdown_token().child_token();
        let guard = token.clone();
        let period = period.max(Duration::from_millis(1));
        self.env.spawn(async move {
            let start = tokio::time::Instant::now() + initial_delay;
            let mut ticks = tokio::time::interval_at(start, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = guard.cancelled() => break,
                    _ = ticks.tick() => {
                        if target.send(make()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        TimerHandle { token }
    }

    /// Runs `future` on the RpcEnv's runtime, owned by the RpcEnv (it is awaited on shutdown).
    /// Use it for work that must not hold up the endpoint's inbox; report back with a message to
    /// [`self_ref`](Self::self_ref).
    pub fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.env.spawn(future);
    }
}

/// A scheduled message. Dropping or cancelling it stops the timer.
#[derive(Debug)]
#[must_use = "dropping a TimerHandle cancels its timer"]
pub struct TimerHandle {
    token: tokio_util::sync::CancellationToken,
}

impl TimerHandle {
    /// Stops the timer.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Keeps the timer running for the life of the RpcEnv, without a handle.
    pub fn detach(self) {
        std::mem::forget(self);
    }
}

impl Drop for TimerHandle {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// A reply that stays in the process: the value itself, re-encoded only if the asker expects a
/// different type than the replier sent.
pub(crate) trait LocalReply: Send {
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
    fn value_type(&self) -> std::any::TypeId;
    fn encode(&self) -> Result<Vec<u8>, postcard::Error>;
}

impl<T: Serialize + Send + 'static> LocalReply for T {
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
    fn value_type(&self) -> std::any::TypeId {
        std::any::TypeId::of::<T>()
    }
    fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(self)
    }
}

pub(crate) type LocalReplyResult = Result<Box<dyn LocalReply>, CallFailure>;

pub(crate) enum ReplySink {
    Local(tokio::sync::oneshot::Sender<LocalReplyResult>),
    /// A local asker whose ref is typed differently: the reply travels encoded.
    Encoded(tokio::sync::oneshot::Sender<WireReply>),
    Remote {
        connection: Arc<Connection>,
        request_id: u64,
    },
}

/// The shared slot a request's reply goes through: the handler's [`RpcCallContext`] and the
/// endpoint loop both hold it, so that a panicking handler's asker still gets an answer.
pub(crate) struct ReplySlot {
    sink: Mutex<Option<ReplySink>>,
    endpoint: String,
}

impl ReplySlot {
    fn take(&self) -> Option<ReplySink> {
        self.sink.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub(crate) fn fail(&self, failure: CallFailure) {
        let Some(sink) = self.take() else { return };
        match sink {
            ReplySink::Local(tx) => {
                let _ = tx.send(Err(failure));
            }
            ReplySink::Encoded(tx) => {
                let _ = tx.send(Err(ReplyError::Failure(failure)));
            }
            ReplySink::Remote {
                connection,
                request_id,
            } => {
                connection.send_failure(request_id, &failure);
            }
        }
    }
}

/// The handle for answering one request. Reply with [`reply`](Self::reply) or fail with
/// [`send_failure`](Self::send_failure), now or later. Dropping it unanswered fails the request
/// with [`CallFailure::NoReply`].
pub struct RpcCallContext {
    slot: Arc<ReplySlot>,
    sender: Option<RpcAddress>,
}

impl std::fmt::Debug for RpcCallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcCallContext")
            .field("endpoint", &self.slot.endpoint)
            .field("sender", &self.sender)
            .finish()
    }
}

impl RpcCallContext {
    pub(crate) fn local(
        endpoint: &str,
        tx: tokio::sync::oneshot::Sender<LocalReplyResult>,
    ) -> Self {
        Self {
            slot: Arc::new(ReplySlot {
                sink: Mutex::new(Some(ReplySink::Local(tx))),
                endpoint: endpoint.to_owned(),
            }),
            sender: None,
        }
    }

    pub(crate) fn local_encoded(
        endpoint: &str,
        tx: tokio::sync::oneshot::Sender<WireReply>,
    ) -> Self {
        Self {
            slot: Arc::new(ReplySlot {
                sink: Mutex::new(Some(ReplySink::Encoded(tx))),
                endpoint: endpoint.to_owned(),
            }),
            sender: None,
        }
    }

    pub(crate) fn remote(endpoint: &str, connection: Arc<Connection>, request_id: u64) -> Self {
        let sender = Some(connection.peer().clone());
        Self {
            slot: Arc::new(ReplySlot {
                sink: Mutex::new(Some(ReplySink::Remote {
                    connection,
                    request_id,
                })),
                endpoint: endpoint.to_owned(),
            }),
            sender,
        }
    }

    pub(crate) fn slot(&self) -> Arc<ReplySlot> {
        self.slot.clone()
    }

    /// The address of the RpcEnv that asked, or `None` when the asker is in this process.
    pub fn sender_address(&self) -> Option<&RpcAddress> {
        self.sender.as_ref()
    }

    /// Answers the request. A reply that cannot be encoded, or is larger than
    /// `ember.rpc.message.maxSize`, fails the request instead, and the reason is logged.
    pub fn reply<T: Serialize + Send + 'static>(self, value: T) {
        let Some(sink) = self.slot.take() else { return };
        match sink {
            ReplySink::Local(tx) => {
                let _ = tx.send(Ok(Box::new(value)));
            }
            ReplySink::Encoded(tx) => {
                let reply = postcard::to_allocvec(&value)
                    .map(bytes::Bytes::from)
                    .map_err(|e| {
                        ReplyError::Failure(CallFailure::HandlerFailed {
                            message: format!("the reply could not be encoded: {e}"),
                        })
                    });
                let _ = tx.send(reply);
            }
            ReplySink::Remote {
                connection,
                request_id,
            } => match envelope::encode_response(request_id, &value, connection.max_frame()) {
                Ok(frame) => connection.send_frame(frame),
                Err(err) => {
                    warn!(endpoint = %self.slot.endpoint, peer = %connection.peer(), %err,
                        "reply could not be sent; failing the request instead");
                    connection.send_failure(
                        request_id,
                        &CallFailure::HandlerFailed {
                            message: format!("the reply could not be sent: {err}"),
                        },
                    );
                }
            },
        }
    }

    /// Fails the request; the asker gets `failure` in an [`RpcError::Remote`].
    pub fn send_failure(self, failure: CallFailure) {
        self.slot.fail(failure);
    }

    /// Fails the request with an error's text as [`CallFailure::HandlerFailed`].
    pub fn send_error(self, error: &dyn std::fmt::Display) {
        self.slot.fail(CallFailure::HandlerFailed {
            message: error.to_string(),
        });
    }
}

impl Drop for RpcCallContext {
    fn drop(&mut self) {
        // While unwinding, the endpoint loop answers with the panic message instead.
        // While the endpoint loop holds the slot (the handler is still running), the loop
        // answers instead: with the handler's error, its panic, or `NoReply`.
        if Arc::strong_count(&self.slot) == 1
            && !std::thread::panicking()
            && self.slot.sink.lock().map(|s| s.is_some()).unwrap_or(false)
        {
            debug!(endpoint = %self.slot.endpoint, "request dropped without a reply");
            self.slot.fail(CallFailure::NoReply);
        }
    }
}
