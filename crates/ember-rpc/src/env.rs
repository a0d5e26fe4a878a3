//! The RpcEnv: a listener, the endpoints registered in it, and the connections to its peers.
//!
//! Spark counterpart: `NettyRpcEnv` (with `RpcEnv.create`, `setupEndpoint`,
//! `setupEndpointRef`, `stop`, `shutdown`, `awaitTermination`, and the `RpcEndpointVerifier`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use crate::address::RpcAddress;
use crate::call_context::RpcCallContext;
use crate::conf::{
    ByteSize, ByteUnit, ConfError, ConfigEntry, ConfigEntryDoc, EmberConf, TimeUnit,
};
use crate::dispatcher::inbox::EndpointTask;
use crate::dispatcher::{Dispatcher, PeerEvent};
use crate::endpoint::{EndpointContext, RpcEndpoint, RpcMessage};
use crate::endpoint_ref::EndpointRef;
use crate::error::{HandlerResult, RpcError};
use crate::transport::connection::Connection;
use crate::transport::envelope::check_name;
use crate::transport::handshake::Secret;
use crate::transport::outbox::Outbox;
use crate::transport::server;

/// The key of the default ask timeout, named in timeout errors.
pub const ASK_TIMEOUT_KEY: &str = "ember.rpc.askTimeout";

/// `ember.rpc.message.maxSize`: the largest message sent or accepted.
pub const MESSAGE_MAX_SIZE: ConfigEntry<ByteSize> = ConfigEntry::bytes(
    "ember.rpc.message.maxSize",
    Some("128m"),
    ByteUnit::MiB,
    "Largest RPC message (frame) an RpcEnv sends or accepts; a bare number is in MiB. A larger \
     incoming frame closes its connection; a larger outgoing one fails the send. From 64k (so \
     that every protocol message fits) to 2047m.",
);

/// The smallest `ember.rpc.message.maxSize` accepted: below it, ordinary protocol messages
/// (registrations carrying refs and descriptions, status updates) would no longer fit and
/// every send of them would fail.
pub const MIN_MESSAGE_MAX_SIZE: ByteSize = ByteSize::from_kib(64);
/// The largest `ember.rpc.message.maxSize` accepted (Spark parity:
/// `RpcUtils.maxMessageSizeBytes` refuses 2048 MiB and more); frame lengths are 32-bit.
pub const MAX_MESSAGE_MAX_SIZE: ByteSize = ByteSize::from_mib(2047);
/// `ember.rpc.askTimeout`: how long an ask waits for its reply by default.
pub const ASK_TIMEOUT: ConfigEntry<Duration> = ConfigEntry::duration(
    ASK_TIMEOUT_KEY,
    Some("120s"),
    TimeUnit::Seconds,
    "How long an ask waits for its reply unless the caller sets a timeout.",
);
/// `ember.rpc.connect.timeout`: how long connecting and the handshake may take.
pub const CONNECT_TIMEOUT: ConfigEntry<Duration> = ConfigEntry::duration(
    "ember.rpc.connect.timeout",
    Some("10s"),
    TimeUnit::Seconds,
    "How long opening a connection plus its handshake may take, on either side.",
);
/// `ember.rpc.ask.busyPoll`: how long a connection may poll for a reply after writing a
/// request (see `transport::busy_poll`).
pub const ASK_BUSY_POLL: ConfigEntry<Duration> = ConfigEntry::duration(
    "ember.rpc.ask.busyPoll",
    Some("50us"),
    TimeUnit::Microseconds,
    "After writing a request, how long the connection may watch its socket for the reply \
     without parking (it stops at the reply's first byte). On an otherwise idle machine this \
     keeps the CPU from halting between request and reply, which on a virtual machine costs \
     tens of microseconds per ask. Each connection times its round trips with and without it \
     and polls only while polling is clearly faster; one connection per process polls at a \
     time. 0 turns it off.",
);
/// `ember.authenticate`: whether RPC connections must prove the shared secret.
pub const AUTHENTICATE: ConfigEntry<bool> = ConfigEntry::new(
    "ember.authenticate",
    Some("false"),
    "Require every RPC connection to prove knowledge of ember.authenticate.secret (HMAC \
     challenge-response in both directions).",
);
/// `ember.authenticate.secret`: the shared secret.
pub const AUTHENTICATE_SECRET: ConfigEntry<String> = ConfigEntry::new(
    "ember.authenticate.secret",
    None,
    "The shared secret used when ember.authenticate is on. Never logged.",
)
.with_env("EMBER_AUTHENTICATE_SECRET");

/// The keys this crate reads.
pub fn config_entries() -> Vec<ConfigEntryDoc> {
    vec![
        MESSAGE_MAX_SIZE.describe(),
        ASK_TIMEOUT.describe(),
        ASK_BUSY_POLL.describe(),
        CONNECT_TIMEOUT.describe(),
        AUTHENTICATE.describe(),
        AUTHENTICATE_SECRET.describe(),
    ]
}

/// How an RpcEnv is set up.
#[derive(Debug, Clone)]
pub struct RpcEnvConfig {
    /// A name for logs (`ember-master`, `ember-worker`, `ember-driver`, …).
    pub system_name: String,
    /// The host or IP to listen on.
    pub bind_host: String,
    /// The host others should use to reach this RpcEnv (defaults to `bind_host`).
    pub advertise_host: Option<String>,
    /// The port to listen on; 0 picks a free one.
    pub port: u16,
    /// Largest frame sent or accepted (`ember.rpc.message.maxSize`).
    pub max_message_size: usize,
    /// Default ask timeout (`ember.rpc.askTimeout`).
    pub ask_timeout: Duration,
    /// How long connecting plus the handshake may take (`ember.rpc.connect.timeout`).
    pub connect_timeout: Duration,
    /// How long a connection polls for a reply after writing a request
    /// (`ember.rpc.ask.busyPoll`; zero turns it off).
    pub ask_busy_poll: Duration,
    /// The shared secret when `ember.authenticate` is on.
    pub secret: Option<Secret>,
}

impl RpcEnvConfig {
    /// A configuration with Ember's defaults.
    pub fn new(system_name: impl Into<String>, bind_host: impl Into<String>, port: u16) -> Self {
        Self {
            system_name: system_name.into(),
            bind_host: bind_host.into(),
            advertise_host: None,
            port,
            max_message_size: 128 * 1024 * 1024,
            ask_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            ask_busy_poll: Duration::from_micros(50),
            secret: None,
        }
    }

    /// A configuration with the RPC settings of `conf`. Fails on a malformed value, and when
    /// `ember.authenticate` is on without a secret.
    pub fn from_conf(
        system_name: impl Into<String>,
        bind_host: impl Into<String>,
        port: u16,
        conf: &EmberConf,
    ) -> Result<Self, ConfError> {
        let mut config = Self::new(system_name, bind_host, port);
        let max = conf.get(&MESSAGE_MAX_SIZE)?;
        if max < MIN_MESSAGE_MAX_SIZE || max > MAX_MESSAGE_MAX_SIZE {
            let value = conf
                .get_raw(MESSAGE_MAX_SIZE.key())
                .or(MESSAGE_MAX_SIZE.default_text())
                .unwrap_or_default();
            return Err(ConfError::invalid_value(
                MESSAGE_MAX_SIZE.key(),
                value,
                format!(
                    "must be from {MIN_MESSAGE_MAX_SIZE} to {MAX_MESSAGE_MAX_SIZE} (a bare number \
                     is in MiB); {max} would refuse ordinary messages or overflow a frame length"
                ),
            ));
        }
        config.max_message_size = max.as_bytes() as usize;
        config.ask_timeout = conf.get(&ASK_TIMEOUT)?;
        config.connect_timeout = conf.get(&CONNECT_TIMEOUT)?;
        config.ask_busy_poll = conf.get(&ASK_BUSY_POLL)?;
        if conf.get(&AUTHENTICATE)? {
            let secret = conf
                .get_opt(&AUTHENTICATE_SECRET)?
                .filter(|s| !s.is_empty())
                .ok_or(ConfError::Missing {
                    key: AUTHENTICATE_SECRET.key().to_owned(),
                })?;
            config.secret = Some(Secret::new(secret));
        }
        Ok(config)
    }
}

pub(crate) struct EnvInner {
    config: RpcEnvConfig,
    address: RpcAddress,
    dispatcher: Dispatcher,
    outboxes: Mutex<HashMap<RpcAddress, Arc<Outbox>>>,
    /// Live connections per peer, for connect/disconnect events.
    peers: Mutex<HashMap<RpcAddress, usize>>,
    shutdown: CancellationToken,
    terminated: CancellationToken,
    tracker: TaskTracker,
    /// The runtime the env was created on: tasks it spawns run there even when the caller (a
    /// `send` from a plain thread, say) is outside any runtime.
    runtime: tokio::runtime::Handle,
    next_request_id: AtomicU64,
    next_connection_id: AtomicU64,
}

impl EnvInner {
    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// A handle to an RpcEnv. Cheap to clone; all clones are the same RpcEnv.
#[derive(Clone)]
pub struct RpcEnv {
    inner: Arc<EnvInner>,
}

impl std::fmt::Debug for RpcEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcEnv")
            .field("system", &self.inner.config.system_name)
            .field("address", &self.inner.address)
            .finish()
    }
}

const VERIFIER_NAME: &str = "endpoint-verifier";

/// Asks whether an endpoint exists (Spark's `RpcEndpointVerifier.CheckExistence`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CheckExistence(String);

struct Verifier;

impl RpcEndpoint for Verifier {
    type Message = CheckExistence;

    async fn receive(
        &mut self,
        _: &EndpointContext<CheckExistence>,
        _: CheckExistence,
    ) -> HandlerResult {
        Ok(())
    }

    async fn receive_and_reply(
        &mut self,
        ctx: &EndpointContext<CheckExistence>,
        message: CheckExistence,
        reply: RpcCallContext,
    ) -> HandlerResult {
        reply.reply(ctx.env().dispatcher().lookup(&message.0).is_some());
        Ok(())
    }
}

impl RpcEnv {
    /// Binds the listener and starts accepting. Must run inside a tokio runtime.
    pub async fn create(config: RpcEnvConfig) -> Result<RpcEnv, RpcError> {
        let listener = TcpListener::bind((config.bind_host.as_str(), config.port))
            .await
            .map_err(|e| RpcError::Bind {
                address: format!("{}:{}", config.bind_host, config.port),
                reason: e.to_string(),
            })?;
        let local = listener.local_addr().map_err(|e| RpcError::Bind {
            address: format!("{}:{}", config.bind_host, config.port),
            reason: e.to_string(),
        })?;
        let host = config
            .advertise_host
            .clone()
            .unwrap_or_else(|| config.bind_host.clone());
        let address = RpcAddress::new(host, local.port());
        let env = RpcEnv {
            inner: Arc::new(EnvInner {
                config,
                address,
                dispatcher: Dispatcher::default(),
                outboxes: Mutex::new(HashMap::new()),
                peers: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                terminated: CancellationToken::new(),
                tracker: TaskTracker::new(),
                runtime: tokio::runtime::Handle::current(),
                next_request_id: AtomicU64::new(1),
                next_connection_id: AtomicU64::new(1),
            }),
        };
        env.setup_endpoint(VERIFIER_NAME, Verifier).await?;
        env.spawn(server::accept_loop(env.clone(), listener));
        info!(system = %env.inner.config.system_name, address = %env.inner.address,
            "RpcEnv listening");
        Ok(env)
    }

    pub(crate) fn inner(&self) -> &EnvInner {
        &self.inner
    }

    pub(crate) fn dispatcher(&self) -> &Dispatcher {
        &self.inner.dispatcher
    }

    /// Where this RpcEnv listens, as others should address it.
    pub fn address(&self) -> &RpcAddress {
        &self.inner.address
    }

    /// The configuration it was created with.
    pub fn config(&self) -> &RpcEnvConfig {
        &self.inner.config
    }

    /// Registers `endpoint` under `name`, runs its `on_start`, and returns a ref to it.
    /// Fails if the name is taken or `on_start` fails.
    pub async fn setup_endpoint<E: RpcEndpoint>(
        &self,
        name: &str,
        endpoint: E,
    ) -> Result<EndpointRef<E::Message>, RpcError> {
        check_name(name)?;
        let reg = self.inner.dispatcher.register::<E::Message>(name)?;
        let self_ref = EndpointRef::local(self.clone(), name, reg.inbox);
        let task = EndpointTask {
            endpoint,
            ctx: EndpointContext {
                env: self.clone(),
                self_ref: self_ref.clone(),
            },
            rx: reg.rx,
            id: reg.id,
            stopped: reg.stopped,
        };
        let (started_tx, started_rx) = oneshot::channel();
        self.spawn(task.run(started_tx));
        match started_rx.await {
            Ok(Ok(())) => Ok(self_ref),
            Ok(Err(reason)) => Err(RpcError::StartFailed {
                endpoint: name.to_owned(),
                reason,
            }),
            Err(_) => Err(RpcError::EnvStopped),
        }
    }

    /// A ref to the endpoint `name` at `address`, after checking that it exists there (a clear
    /// [`RpcError::EndpointNotFound`] if not, a connection error if the address is unreachable).
    pub async fn setup_endpoint_ref<M: RpcMessage>(
        &self,
        address: &RpcAddress,
        name: &str,
    ) -> Result<EndpointRef<M>, RpcError> {
        check_name(name)?;
        let exists = if address == self.address() {
            self.dispatcher().lookup(name).is_some()
        } else {
            let verifier: EndpointRef<CheckExistence> =
                self.endpoint_ref(address.clone(), VERIFIER_NAME);
            verifier.ask(CheckExistence(name.to_owned())).await?
        };
        if exists {
            Ok(self.endpoint_ref(address.clone(), name))
        } else {
            Err(RpcError::EndpointNotFound {
                address: address.clone(),
                endpoint: name.to_owned(),
            })
        }
    }

    /// A ref to the endpoint `name` at `address`, without checking that it exists. Sends to a
    /// missing endpoint are dropped (and logged there); asks fail with
    /// [`RpcError::EndpointNotFound`]. A name that cannot exist (empty, or over 255 bytes) makes
    /// every send and ask through the ref fail at once with [`RpcError::InvalidName`], before
    /// anything is queued; [`setup_endpoint_ref`](Self::setup_endpoint_ref) refuses it up front.
    pub fn endpoint_ref<M: RpcMessage>(&self, address: RpcAddress, name: &str) -> EndpointRef<M> {
        EndpointRef::new(self.clone(), address, name)
    }

    /// Stops the endpoint behind `endpoint` (if it lives here): messages already queued are
    /// handled, then `on_stop` runs; later messages are refused.
    pub fn stop<M>(&self, endpoint: &EndpointRef<M>) {
        if endpoint.address() == self.address() {
            self.dispatcher().stop(endpoint.name());
        }
    }

    /// Stops every endpoint (each runs `on_stop`, which may still send), then closes the
    /// listener and all connections, failing their pending asks, and waits for every task the
    /// RpcEnv owns.
    pub async fn shutdown(&self) {
        if self.inner.shutdown.is_cancelled() {
            self.await_termination().await;
            return;
        }
        self.inner.dispatcher.stop_all().await;
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
        self.inner.terminated.cancel();
        debug!(address = %self.inner.address, "RpcEnv terminated");
    }

    /// Waits until [`shutdown`](Self::shutdown) has finished.
    pub async fn await_termination(&self) {
        self.inner.terminated.cancelled().await;
    }

    /// Whether shutdown has begun.
    pub fn is_stopped(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// A token cancelled when the RpcEnv shuts down; child tokens of it stop timers and loops.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Runs a task owned by this RpcEnv: shutdown waits for it, so it should watch
    /// [`shutdown_token`](Self::shutdown_token). Callable from any thread: the task runs on
    /// the runtime the env was created on.
    pub fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner
            .runtime
            .spawn(self.inner.tracker.track_future(future));
    }

    /// Encodes a value the way messages are encoded (for persistence and tests).
    pub fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, RpcError> {
        postcard::to_allocvec(value).map_err(|e| RpcError::Encode {
            what: "value",
            reason: e.to_string(),
        })
    }

    /// Decodes a value; [`EndpointRef`]s inside it are bound to this RpcEnv.
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, postcard::Error> {
        crate::endpoint_ref::with_decoding_env(self, || postcard::from_bytes(bytes))
    }

    /// Decodes a message or reply that arrived: [`decode`](Self::decode), with the reason in
    /// the error text when a ref inside refused to decode. A `Deserialize` implementation that
    /// panics makes the bytes undecodable too: the panic stops here, so it cannot take down the
    /// connection's reader (nor an asker's task).
    pub(crate) fn decode_message<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, String> {
        let decode = || {
            crate::endpoint_ref::with_decoding_env(self, || {
                postcard::from_bytes(bytes).map_err(|e| match crate::endpoint_ref::take_refusal() {
                    Some(refusal) => format!("{e}: {refusal}"),
                    None => e.to_string(),
                })
            })
        };
        // Unwind safety: decoding reads `bytes` and builds a fresh value; the thread-local
        // state it touches is reset by `with_decoding_env` on the way out.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|payload| {
            Err(format!(
                "decoding panicked: {}",
                crate::dispatcher::inbox::panic_message(payload.as_ref())
            ))
        })
    }

    pub(crate) fn next_request_id(&self) -> u64 {
        self.inner.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn outbox(&self, address: &RpcAddress) -> Arc<Outbox> {
        let mut outboxes = self
            .inner
            .outboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(outbox) = outboxes.get(address) {
            return outbox.clone();
        }
        let outbox = Arc::new(Outbox::new(address.clone()));
        outboxes.insert(address.clone(), outbox.clone());
        outbox
    }

    pub(crate) fn connection_opened(&self, conn: &Connection) {
        let first = {
            let mut peers = self.inner.peers.lock().unwrap_or_else(|e| e.into_inner());
            let count = peers.entry(conn.peer().clone()).or_insert(0);
            *count += 1;
            *count == 1
        };
        if first {
            self.dispatcher()
                .broadcast(PeerEvent::Connected(conn.peer().clone()));
        }
    }

    pub(crate) fn connection_closed(&self, conn: &Connection, error: Option<String>) {
        conn.fail_pending();
        let outbox = self
            .inner
            .outboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(conn.peer())
            .cloned();
        if let Some(outbox) = outbox {
            outbox.detach(conn);
        }
        if let Some(reason) = error {
            self.network_error(
                conn.peer(),
                RpcError::ConnectionClosed {
                    address: conn.peer().clone(),
                    reason,
                },
            );
        }
        let last = {
            let mut peers = self.inner.peers.lock().unwrap_or_else(|e| e.into_inner());
            match peers.get_mut(conn.peer()) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                Some(_) => {
                    peers.remove(conn.peer());
                    true
                }
                None => false,
            }
        };
        if last && !self.is_stopped() {
            debug!(peer = %conn.peer(), "peer disconnected");
            self.dispatcher()
                .broadcast(PeerEvent::Disconnected(conn.peer().clone()));
        }
    }

    pub(crate) fn network_error(&self, address: &RpcAddress, error: RpcError) {
        if !self.is_stopped() {
            self.dispatcher()
                .broadcast(PeerEvent::NetworkError(address.clone(), error));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_valid() {
        crate::conf::assert_entries_valid(&config_entries());
    }

    #[test]
    fn from_conf_reads_the_rpc_keys() {
        let mut conf = EmberConf::new();
        conf.set("ember.rpc.message.maxSize", "1")
            .set("ember.rpc.askTimeout", "3")
            .set("ember.rpc.ask.busyPoll", "0")
            .set("ember.authenticate", "true")
            .set("ember.authenticate.secret", "s");
        let c = RpcEnvConfig::from_conf("t", "127.0.0.1", 0, &conf).unwrap();
        assert_eq!(c.max_message_size, 1024 * 1024);
        assert_eq!(c.ask_timeout, Duration::from_secs(3));
        assert_eq!(c.ask_busy_poll, Duration::ZERO);
        let defaults = RpcEnvConfig::from_conf("t", "127.0.0.1", 0, &EmberConf::new()).unwrap();
        assert_eq!(defaults.ask_busy_poll, Duration::from_micros(50));
        assert_eq!(
            defaults.ask_busy_poll,
            RpcEnvConfig::new("t", "127.0.0.1", 0).ask_busy_poll
        );
        assert!(c.secret.is_some());
        conf.remove("ember.authenticate.secret");
        let err = RpcEnvConfig::from_conf("t", "127.0.0.1", 0, &conf).unwrap_err();
        assert!(
            err.to_string().contains("ember.authenticate.secret"),
            "{err}"
        );
    }

    #[test]
    fn from_conf_refuses_a_max_message_size_no_message_fits_in() {
        for (value, ok) in [
            ("0", false),
            ("0b", false),
            ("1k", false),
            ("63k", false),
            ("64k", true),
            ("2047m", true),
            ("2g", false),
            ("8g", false),
        ] {
            let mut conf = EmberConf::new();
            conf.set("ember.rpc.message.maxSize", value);
            match RpcEnvConfig::from_conf("t", "127.0.0.1", 0, &conf) {
                Ok(c) => {
                    assert!(ok, "{value} accepted");
                    assert!(c.max_message_size >= 64 * 1024);
                }
                Err(err) => {
                    assert!(!ok, "{value}: {err}");
                    let text = err.to_string();
                    assert!(
                        text.contains("ember.rpc.message.maxSize")
                            && text.contains(&format!("{value:?}"))
                            && text.contains("64k"),
                        "{text}"
                    );
                }
            }
        }
    }
}
