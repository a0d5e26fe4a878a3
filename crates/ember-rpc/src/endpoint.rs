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
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::address::RpcAddress;
use crate::call_context::RpcCallContext;
use crate::endpoint_ref::EndpointRef;
use crate::env::RpcEnv;
use crate::error::{CallFailure, HandlerResult, RpcError};

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

    /// Stops this endpoint: the messages already queued (behind the current one) are still
    /// handled, then `on_stop` runs; messages sent after this call are refused.
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
