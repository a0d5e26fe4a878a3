//! One endpoint's inbox and the task that drains it.
//!
//! Spark counterpart: `Inbox` and `MessageLoop`. The loop runs `on_start`, then each queued item
//! in order, then `on_stop` after a stop request; a failing or panicking handler is logged (and
//! its request failed) and the loop goes on.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::task::Poll;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::call_context::RpcCallContext;
use crate::dispatcher::PeerEvent;
use crate::endpoint::{EndpointContext, RpcEndpoint};
use crate::error::CallFailure;

/// What an inbox holds.
pub(crate) enum InboxItem<M> {
    OneWay(M),
    Request(M, RpcCallContext),
    /// Boxed: events are rare, and every queued message pays for the largest variant.
    Event(Box<PeerEvent>),
    Stop,
}

/// Polls `future`, turning a panic inside it into `Err(panic message)`.
pub(crate) async fn catch_panic<F: Future>(future: F) -> Result<F::Output, String> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    })
    .await
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_owned()
    }
}

/// Everything the endpoint task needs.
pub(crate) struct EndpointTask<E: RpcEndpoint> {
    pub(crate) endpoint: E,
    pub(crate) ctx: EndpointContext<E::Message>,
    pub(crate) rx: mpsc::UnboundedReceiver<InboxItem<E::Message>>,
    pub(crate) id: u64,
    pub(crate) stopped: CancellationToken,
}

impl<E: RpcEndpoint> EndpointTask<E> {
    /// Runs the endpoint from `on_start` to `on_stop`. `started` learns whether `on_start`
    /// succeeded.
    pub(crate) async fn run(mut self, started: oneshot::Sender<Result<(), String>>) {
        let name = self.ctx.name().to_owned();
        let outcome = match catch_panic(self.endpoint.on_start(&self.ctx)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(panic) => Err(format!("on_start panicked: {panic}")),
        };
        if let Err(reason) = outcome {
            error!(endpoint = %name, %reason, "endpoint failed to start");
            self.finish(&name);
            let _ = started.send(Err(reason));
            return;
        }
        let _ = started.send(Ok(()));

        while let Some(item) = self.rx.recv().await {
            match item {
                InboxItem::OneWay(message) => {
                    match catch_panic(self.endpoint.receive(&self.ctx, message)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => warn!(endpoint = %name, error = %e, "message handler failed"),
                        Err(panic) => {
                            error!(endpoint = %name, %panic, "message handler panicked")
                        }
                    }
                }
                InboxItem::Request(message, call) => {
                    // Who answers a request the handler leaves unanswered is decided in one
                    // place: see `call_context`.
                    let scope = call.enter_handler();
                    let failure = match catch_panic(
                        self.endpoint.receive_and_reply(&self.ctx, message, call),
                    )
                    .await
                    {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => {
                            warn!(endpoint = %name, error = %e, "request handler failed");
                            Some(CallFailure::HandlerFailed {
                                message: e.to_string(),
                            })
                        }
                        Err(panic) => {
                            error!(endpoint = %name, %panic, "request handler panicked");
                            Some(CallFailure::HandlerPanicked { message: panic })
                        }
                    };
                    scope.finish(failure);
                }
                InboxItem::Event(event) => {
                    let handled = match *event {
                        PeerEvent::Connected(addr) => {
                            catch_panic(self.endpoint.on_connected(&self.ctx, addr)).await
                        }
                        PeerEvent::Disconnected(addr) => {
                            catch_panic(self.endpoint.on_disconnected(&self.ctx, addr)).await
                        }
                        PeerEvent::NetworkError(addr, err) => {
                            catch_panic(self.endpoint.on_network_error(&self.ctx, addr, err)).await
                        }
                    };
                    if let Err(panic) = handled {
                        error!(endpoint = %name, %panic, "connection event handler panicked");
                    }
                }
                InboxItem::Stop => break,
            }
        }
        if let Err(panic) = catch_panic(self.endpoint.on_stop(&self.ctx)).await {
            error!(endpoint = %name, %panic, "on_stop panicked");
        }
        self.finish(&name);
    }

    /// Unregisters, refuses what is still queued, and signals that the endpoint is done.
    fn finish(&mut self, name: &str) {
        self.ctx.env.dispatcher().remove_finished(name, self.id);
        self.rx.close();
        let mut dropped = 0usize;
        while let Ok(item) = self.rx.try_recv() {
            match item {
                InboxItem::Request(_, call) => call.send_failure(CallFailure::EndpointStopped),
                InboxItem::OneWay(_) => dropped += 1,
                InboxItem::Event(_) | InboxItem::Stop => {}
            }
        }
        if dropped > 0 {
            debug!(endpoint = %name, dropped, "dropped messages that arrived after the stop");
        }
        self.stopped.cancel();
    }
}
