//! Refs to endpoints, local or remote: `send` one way, `ask` for a reply.
//!
//! Spark counterpart: `RpcEndpointRef` / `NettyRpcEndpointRef`. A ref is serializable (as its
//! address and name), so messages can carry refs; a ref decoded by an RpcEnv is bound to it. A
//! ref to an endpoint in the same RpcEnv hands messages straight to its inbox, without encoding.

use std::any::TypeId;
use std::cell::RefCell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::oneshot;

use crate::address::{RpcAddress, URL_SCHEME};
use crate::call_context::RpcCallContext;
use crate::dispatcher::{Inbox, InboxItem};
use crate::endpoint::RpcMessage;
use crate::env::{ASK_TIMEOUT_KEY, RpcEnv};
use crate::error::RpcError;
use crate::transport::connection::{Outgoing, ReplyError};
use crate::transport::envelope;
use crate::transport::outbox::Outbox;

/// A handle to the endpoint `name` at `address`, which receives messages of type `M`.
pub struct EndpointRef<M> {
    inner: Arc<RefInner<M>>,
}

struct RefInner<M> {
    env: RpcEnv,
    address: RpcAddress,
    name: String,
    local: OnceLock<Inbox<M>>,
    outbox: OnceLock<Arc<Outbox>>,
}

/// A message that could not be sent, handed back with the reason.
pub struct SendError<M> {
    /// Why the send failed.
    pub error: RpcError,
    /// The message, when it can be handed back.
    pub message: Option<M>,
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "send failed: {}", self.error)
    }
}

impl<M> std::error::Error for SendError<M> {}

impl<M> From<SendError<M>> for RpcError {
    fn from(e: SendError<M>) -> Self {
        e.error
    }
}

impl<M> EndpointRef<M> {
    /// The address of the RpcEnv the endpoint lives in.
    pub fn address(&self) -> &RpcAddress {
        &self.inner.address
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The RpcEnv this ref sends through.
    pub fn env(&self) -> &RpcEnv {
        &self.inner.env
    }

    /// Whether the endpoint is in the RpcEnv this ref sends through.
    pub fn is_local(&self) -> bool {
        self.inner.address == *self.inner.env.address()
    }

    /// `ember://Name@host:port`.
    pub fn url(&self) -> String {
        format!("{URL_SCHEME}://{}@{}", self.inner.name, self.inner.address)
    }
}

impl<M: RpcMessage> EndpointRef<M> {
    pub(crate) fn new(env: RpcEnv, address: RpcAddress, name: &str) -> Self {
        Self {
            inner: Arc::new(RefInner {
                env,
                address,
                name: name.to_owned(),
                local: OnceLock::new(),
                outbox: OnceLock::new(),
            }),
        }
    }

    pub(crate) fn local(env: RpcEnv, name: &str, inbox: Inbox<M>) -> Self {
        let this = Self::new(env.clone(), env.address().clone(), name);
        let _ = this.inner.local.set(inbox);
        this
    }

    /// The same endpoint viewed as receiving another message type (the receiver decides whether
    /// it can decode what is sent).
    pub fn cast<N: RpcMessage>(&self) -> EndpointRef<N> {
        EndpointRef::new(
            self.inner.env.clone(),
            self.inner.address.clone(),
            &self.inner.name,
        )
    }

    /// Sends one way. Never waits for the network: a remote message is queued for its
    /// connection. Fails at once only for local reasons (the endpoint here stopped, the message
    /// is too large, the RpcEnv is shut down), handing the message back when it can.
    pub fn send(&self, message: impl Into<M>) -> Result<(), SendError<M>> {
        let message = message.into();
        let env = &self.inner.env;
        if env.is_stopped() {
            return Err(SendError {
                error: RpcError::EnvStopped,
                message: Some(message),
            });
        }
        if let Err(error) = envelope::check_name(&self.inner.name) {
            return Err(SendError {
                error,
                message: Some(message),
            });
        }
        if self.is_local() {
            return match self.local_sender() {
                Some(Ok(inbox)) => {
                    inbox
                        .post(InboxItem::OneWay(message))
                        .map_err(|item| SendError {
                            error: self.stopped_error(),
                            message: match item {
                                InboxItem::OneWay(m) => Some(m),
                                _ => None,
                            },
                        })
                }
                Some(Err(())) => {
                    let bytes = env.encode(&message).map_err(|error| SendError {
                        error,
                        message: None,
                    })?;
                    env.dispatcher()
                        .post_remote(env, &self.inner.name, &bytes, None)
                        .map_err(|(failure, _)| SendError {
                            error: RpcError::from_failure(
                                &self.inner.address,
                                &self.inner.name,
                                failure,
                            ),
                            message: Some(message),
                        })
                }
                None => Err(SendError {
                    error: self.not_found(),
                    message: Some(message),
                }),
            };
        }
        let frame = match envelope::encode_one_way(
            &self.inner.name,
            &message,
            env.config().max_message_size,
        ) {
            Ok(frame) => frame,
            Err(error) => {
                return Err(SendError {
                    error,
                    message: Some(message),
                });
            }
        };
        self.outbox().send(env, Outgoing { frame, ask: None });
        Ok(())
    }

    /// Asks and waits for a reply of type `R`, at most `ember.rpc.askTimeout`.
    pub async fn ask<R: DeserializeOwned + Send + 'static>(
        &self,
        message: impl Into<M>,
    ) -> Result<R, RpcError> {
        let timeout = self.inner.env.config().ask_timeout;
        self.ask_with_timeout(message, timeout, ASK_TIMEOUT_KEY)
            .await
    }

    /// Asks with an explicit timeout; `key` names the configuration that set it (for the
    /// timeout error).
    pub async fn ask_with_timeout<R: DeserializeOwned + Send + 'static>(
        &self,
        message: impl Into<M>,
        timeout: Duration,
        key: &'static str,
    ) -> Result<R, RpcError> {
        let message = message.into();
        let env = &self.inner.env;
        if env.is_stopped() {
            return Err(RpcError::EnvStopped);
        }
        envelope::check_name(&self.inner.name)?;
        let timed_out = || RpcError::AskTimeout {
            address: self.inner.address.clone(),
            endpoint: self.inner.name.clone(),
            timeout,
            key,
        };
        if self.is_local()
            && let Some(Ok(inbox)) = self.local_sender()
        {
            let (reply_tx, reply_rx) = oneshot::channel();
            let call = RpcCallContext::local(&self.inner.name, reply_tx);
            if inbox.post(InboxItem::Request(message, call)).is_err() {
                return Err(self.stopped_error());
            }
            return match tokio::time::timeout(timeout, reply_rx).await {
                Err(_) => Err(timed_out()),
                Ok(Err(_)) => Err(self.stopped_error()),
                Ok(Ok(Err(failure))) => Err(RpcError::from_failure(
                    &self.inner.address,
                    &self.inner.name,
                    failure,
                )),
                Ok(Ok(Ok(value))) => {
                    if value.value_type() == TypeId::of::<R>() {
                        let any = value.into_any();
                        Ok(*any.downcast::<R>().expect("type id checked above"))
                    } else {
                        let bytes = value.encode().map_err(|e| self.decode_error(e))?;
                        env.decode_message(&bytes).map_err(|e| self.decode_error(e))
                    }
                }
            };
        }
        if self.is_local() && self.local_sender().is_none() {
            return Err(self.not_found());
        }
        // Remote (or a local endpoint of another message type): go through the encoded path.
        let id = env.next_request_id();
        let frame = envelope::encode_request(
            id,
            &self.inner.name,
            &message,
            env.config().max_message_size,
        )?;
        let (reply_tx, reply_rx) = oneshot::channel();
        if self.is_local() {
            let call = RpcCallContext::local_encoded(&self.inner.name, reply_tx);
            let payload = frame_payload(&frame);
            if let Err((failure, call)) =
                env.dispatcher()
                    .post_remote(env, &self.inner.name, payload, Some(call))
                && let Some(call) = call
            {
                call.send_failure(failure);
            }
        } else {
            self.outbox().send(
                env,
                Outgoing {
                    frame,
                    ask: Some((id, reply_tx)),
                },
            );
        }
        match tokio::time::timeout(timeout, reply_rx).await {
            Err(_) => Err(timed_out()),
            Ok(Err(_)) => Err(RpcError::ConnectionLost {
                address: self.inner.address.clone(),
            }),
            Ok(Ok(Err(ReplyError::Transport(e)))) => Err(e),
            Ok(Ok(Err(ReplyError::Failure(failure)))) => Err(RpcError::from_failure(
                &self.inner.address,
                &self.inner.name,
                failure,
            )),
            Ok(Ok(Ok(bytes))) => env.decode_message(&bytes).map_err(|e| self.decode_error(e)),
        }
    }

    /// The local inbox: `Some(Ok)` if it takes `M`, `Some(Err)` if it takes another type,
    /// `None` if there is no such endpoint.
    fn local_sender(&self) -> Option<Result<Inbox<M>, ()>> {
        let cached = self.inner.local.get();
        if let Some(inbox) = cached
            && inbox.is_open()
        {
            return Some(Ok(inbox.clone()));
        }
        match self
            .inner
            .env
            .dispatcher()
            .typed_sender::<M>(&self.inner.name)
        {
            Some(Some(inbox)) => {
                let _ = self.inner.local.set(inbox.clone());
                Some(Ok(inbox))
            }
            Some(None) => Some(Err(())),
            // The endpoint this ref knew has stopped and nothing took its name: its closed inbox
            // refuses with "stopped" rather than "no such endpoint".
            None => cached.map(|inbox| Ok(inbox.clone())),
        }
    }

    fn outbox(&self) -> &Arc<Outbox> {
        self.inner
            .outbox
            .get_or_init(|| self.inner.env.outbox(&self.inner.address))
    }

    fn stopped_error(&self) -> RpcError {
        RpcError::EndpointStopped {
            endpoint: self.inner.name.clone(),
        }
    }

    fn not_found(&self) -> RpcError {
        RpcError::EndpointNotFound {
            address: self.inner.address.clone(),
            endpoint: self.inner.name.clone(),
        }
    }

    fn decode_error(&self, reason: impl fmt::Display) -> RpcError {
        RpcError::DecodeReply {
            address: self.inner.address.clone(),
            endpoint: self.inner.name.clone(),
            reason: reason.to_string(),
        }
    }
}

/// The message bytes of a request frame built by `encode_request` (past prefix and header).
fn frame_payload(frame: &[u8]) -> &[u8] {
    let body = &frame[crate::transport::frame::PREFIX_LEN..];
    // kind, varint id, name length, name
    let mut i = 1;
    while body[i] & 0x80 != 0 {
        i += 1;
    }
    i += 1;
    let name_len = body[i] as usize;
    &body[i + 1 + name_len..]
}

impl<M> Clone for EndpointRef<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<M> fmt::Debug for EndpointRef<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EndpointRef({URL_SCHEME}://{}@{})",
            self.inner.name, self.inner.address
        )
    }
}

impl<M> fmt::Display for EndpointRef<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{URL_SCHEME}://{}@{}",
            self.inner.name, self.inner.address
        )
    }
}

impl<M> PartialEq for EndpointRef<M> {
    fn eq(&self, other: &Self) -> bool {
        self.inner.address == other.inner.address && self.inner.name == other.inner.name
    }
}

impl<M> Eq for EndpointRef<M> {}

impl<M> Hash for EndpointRef<M> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.address.hash(state);
        self.inner.name.hash(state);
    }
}

#[derive(Serialize, Deserialize)]
struct WireRef<'a> {
    address: std::borrow::Cow<'a, RpcAddress>,
    name: std::borrow::Cow<'a, str>,
}

impl<M> Serialize for EndpointRef<M> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireRef {
            address: std::borrow::Cow::Borrowed(&self.inner.address),
            name: std::borrow::Cow::Borrowed(&self.inner.name),
        }
        .serialize(serializer)
    }
}

impl<'de, M: RpcMessage> Deserialize<'de> for EndpointRef<M> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireRef::deserialize(deserializer)?;
        if !envelope::is_valid_name(&wire.name) {
            return Err(refuse(format!(
                "an endpoint ref names an endpoint of {} bytes; names must be 1 to {} bytes",
                wire.name.len(),
                envelope::MAX_NAME_LEN
            )));
        }
        let env = DECODING_ENV.with(|e| e.borrow().clone()).ok_or_else(|| {
            refuse("an EndpointRef can only be decoded by an RpcEnv (RpcEnv::decode)".into())
        })?;
        Ok(EndpointRef::new(env, wire.address.into_owned(), &wire.name))
    }
}

thread_local! {
    static DECODING_ENV: RefCell<Option<RpcEnv>> = const { RefCell::new(None) };
    /// Why a ref refused to decode during the current decode: postcard's error for a custom
    /// refusal carries no text.
    static REFUSAL: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn refuse<E: serde::de::Error>(reason: String) -> E {
    let error = E::custom(&reason);
    REFUSAL.with(|r| *r.borrow_mut() = Some(reason));
    error
}

/// The reason a ref gave for refusing to decode since [`with_decoding_env`] began.
pub(crate) fn take_refusal() -> Option<String> {
    REFUSAL.with(|r| r.borrow_mut().take())
}

/// Runs `f` with `env` as the RpcEnv that decoded refs bind to.
pub(crate) fn with_decoding_env<T>(env: &RpcEnv, f: impl FnOnce() -> T) -> T {
    REFUSAL.with(|r| r.borrow_mut().take());
    struct Restore(Option<RpcEnv>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            DECODING_ENV.with(|e| *e.borrow_mut() = previous);
        }
    }
    let previous = DECODING_ENV.with(|e| e.borrow_mut().replace(env.clone()));
    let _restore = Restore(previous);
    f()
}
