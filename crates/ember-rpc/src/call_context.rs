//! The reply side of a request: the [`RpcCallContext`] a handler answers through.
//!
//! Spark counterpart: `RpcCallContext` / `NettyRpcCallContext`.
//!
//! # Who answers a request
//!
//! Exactly one answer reaches the asker. The context and the endpoint loop share one slot; its
//! state, kept under one lock, decides who answers when the handler does not:
//!
//! ```text
//!  queued ── the loop starts the handler ──▶ in handler ── handler returns Ok ──▶ kept
//!    │                                        │      │                              │
//!    │ dropped unanswered                     │      │ handler fails or panics      │ dropped
//!    ▼                                        │      ▼                              ▼ unanswered
//!  NoReply, sent by the drop                  │    the loop sends that failure    NoReply, sent
//!                                             │                                   by the drop
//!                                             │ dropped unanswered
//!                                             ▼
//!                                  dropped in handler ── handler returns ──▶ the loop sends
//!                                                                            NoReply (or the
//!                                                                            handler's failure)
//! ```
//!
//! A reply or failure sent through the context at any point answers the request; everything
//! after the first answer is ignored. Because the drop and the handler's return both decide under
//! the same lock, a context handed to another task or thread and dropped there while the handler
//! returns is still answered exactly once.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use tracing::{debug, warn};

use crate::address::RpcAddress;
use crate::error::CallFailure;
use crate::transport::connection::{Connection, ReplyError, WireReply};
use crate::transport::envelope;

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

/// Where a request's answer goes.
pub(crate) enum ReplySink {
    Local(tokio::sync::oneshot::Sender<LocalReplyResult>),
    /// A local asker whose ref is typed differently: the reply travels encoded.
    Encoded(tokio::sync::oneshot::Sender<WireReply>),
    Remote {
        connection: Arc<Connection>,
        request_id: u64,
    },
}

impl ReplySink {
    fn fail(self, failure: CallFailure) {
        match self {
            ReplySink::Local(tx) => {
                let _ = tx.send(Err(failure));
            }
            ReplySink::Encoded(tx) => {
                let _ = tx.send(Err(ReplyError::Failure(failure)));
            }
            ReplySink::Remote {
                connection,
                request_id,
            } => connection.send_failure(request_id, &failure),
        }
    }
}

#[derive(Default)]
struct SlotState {
    /// `None` once the request is answered.
    sink: Option<ReplySink>,
    /// The endpoint loop is running the handler the context was given to.
    in_handler: bool,
    /// The context was dropped unanswered while `in_handler`: the loop answers.
    dropped: bool,
}

/// The slot a request's answer goes through, shared by the context and the endpoint loop.
pub(crate) struct ReplySlot {
    state: Mutex<SlotState>,
    endpoint: String,
}

impl ReplySlot {
    fn new(endpoint: &str, sink: ReplySink) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(SlotState {
                sink: Some(sink),
                ..SlotState::default()
            }),
            endpoint: endpoint.to_owned(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Option<ReplySink> {
        self.lock().sink.take()
    }

    fn fail(&self, failure: CallFailure) {
        if let Some(sink) = self.take() {
            sink.fail(failure);
        }
    }

    /// The context is being dropped: answer `NoReply` now, unless the handler it was given to
    /// is still running (then the loop answers when it returns).
    fn context_dropped(&self) {
        let sink = {
            let mut state = self.lock();
            if state.sink.is_none() {
                return;
            }
            if state.in_handler {
                state.dropped = true;
                return;
            }
            state.sink.take()
        };
        if let Some(sink) = sink {
            debug!(endpoint = %self.endpoint, "request dropped without a reply");
            sink.fail(CallFailure::NoReply);
        }
    }
}

/// Held by the endpoint loop while a handler runs with a request's context; see the module
/// documentation for who answers when.
pub(crate) struct HandlerScope {
    slot: Option<Arc<ReplySlot>>,
}

impl HandlerScope {
    /// The handler returned: fail the request with `failure` if it is still unanswered, or with
    /// `NoReply` if its context was dropped unanswered meanwhile. A context still held (to be
    /// answered later) is left alone when there is no failure.
    pub(crate) fn finish(mut self, failure: Option<CallFailure>) {
        if let Some(slot) = self.slot.take() {
            Self::close(&slot, failure);
        }
    }

    fn close(slot: &ReplySlot, failure: Option<CallFailure>) {
        let answer = {
            let mut state = slot.lock();
            state.in_handler = false;
            match failure {
                Some(failure) => state.sink.take().map(|sink| (sink, failure)),
                None if state.dropped => state.sink.take().map(|sink| (sink, CallFailure::NoReply)),
                None => None,
            }
        };
        if let Some((sink, failure)) = answer {
            sink.fail(failure);
        }
    }
}

impl Drop for HandlerScope {
    /// The handler's future was dropped before it returned (the endpoint's task ended): answer
    /// as if it had returned without a failure.
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            Self::close(&slot, None);
        }
    }
}

/// The handle for answering one request. Reply with [`reply`](Self::reply) or fail with
/// [`send_failure`](Self::send_failure), now or later, from any task or thread. Dropping it
/// unanswered fails the request with [`CallFailure::NoReply`] (if the handler it was given to
/// fails or panics instead, the asker gets that failure).
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
            slot: ReplySlot::new(endpoint, ReplySink::Local(tx)),
            sender: None,
        }
    }

    pub(crate) fn local_encoded(
        endpoint: &str,
        tx: tokio::sync::oneshot::Sender<WireReply>,
    ) -> Self {
        Self {
            slot: ReplySlot::new(endpoint, ReplySink::Encoded(tx)),
            sender: None,
        }
    }

    pub(crate) fn remote(endpoint: &str, connection: Arc<Connection>, request_id: u64) -> Self {
        let sender = Some(connection.peer().clone());
        Self {
            slot: ReplySlot::new(
                endpoint,
                ReplySink::Remote {
                    connection,
                    request_id,
                },
            ),
            sender,
        }
    }

    /// Marks the context as given to a handler, until the returned scope is finished.
    pub(crate) fn enter_handler(&self) -> HandlerScope {
        self.slot.lock().in_handler = true;
        HandlerScope {
            slot: Some(self.slot.clone()),
        }
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

    /// Fails the request; the asker gets `failure` in an [`RpcError::Remote`](crate::RpcError).
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
        self.slot.context_dropped();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn context() -> (RpcCallContext, oneshot::Receiver<LocalReplyResult>) {
        let (tx, rx) = oneshot::channel();
        (RpcCallContext::local("e", tx), rx)
    }

    fn answer(mut rx: oneshot::Receiver<LocalReplyResult>) -> Result<u32, CallFailure> {
        match rx.try_recv().expect("the request was answered") {
            Ok(value) => Ok(*value.into_any().downcast::<u32>().unwrap()),
            Err(failure) => Err(failure),
        }
    }

    #[test]
    fn dropped_inside_the_handler_is_answered_when_it_returns() {
        let (call, mut rx) = context();
        let scope = call.enter_handler();
        drop(call);
        assert!(
            rx.try_recv().is_err(),
            "not answered while the handler runs"
        );
        scope.finish(None);
        assert_eq!(answer(rx), Err(CallFailure::NoReply));
    }

    #[test]
    fn dropped_inside_a_failing_handler_gets_its_failure() {
        let (call, rx) = context();
        let scope = call.enter_handler();
        drop(call);
        let failure = CallFailure::HandlerPanicked {
            message: "boom".into(),
        };
        scope.finish(Some(failure.clone()));
        assert_eq!(answer(rx), Err(failure));
    }

    #[test]
    fn kept_past_the_handler_is_answered_by_its_drop_or_its_reply() {
        let (call, mut rx) = context();
        call.enter_handler().finish(None);
        assert!(rx.try_recv().is_err(), "a kept context is not answered");
        drop(call);
        assert_eq!(answer(rx), Err(CallFailure::NoReply));

        let (call, rx) = context();
        call.enter_handler().finish(None);
        call.reply(7u32);
        assert_eq!(answer(rx), Ok(7));
    }

    #[test]
    fn a_reply_inside_the_handler_wins_over_a_later_failure() {
        let (call, rx) = context();
        let scope = call.enter_handler();
        call.reply(3u32);
        scope.finish(Some(CallFailure::HandlerFailed {
            message: "late".into(),
        }));
        assert_eq!(answer(rx), Ok(3));
    }

    #[test]
    fn a_handler_future_dropped_mid_way_still_answers() {
        let (call, rx) = context();
        let scope = call.enter_handler();
        drop(call);
        drop(scope);
        assert_eq!(answer(rx), Err(CallFailure::NoReply));
    }

    /// A context dropped on another thread exactly while the handler returns: whichever side
    /// decides first, the asker is answered once.
    #[test]
    fn a_drop_racing_the_handler_return_is_answered_exactly_once() {
        for _ in 0..2_000 {
            let (call, rx) = context();
            let scope = call.enter_handler();
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let b = barrier.clone();
            let dropper = std::thread::spawn(move || {
                b.wait();
                drop(call);
            });
            barrier.wait();
            scope.finish(None);
            dropper.join().unwrap();
            assert_eq!(answer(rx), Err(CallFailure::NoReply));
        }
    }
}
