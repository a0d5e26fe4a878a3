//! One outbox per remote address: frames wait here while the connection is being made.
//!
//! Spark counterpart: `Outbox`. States:
//!
//! ```text
//!            send                      handshake done
//!   Idle ─────────────▶ Connecting ─────────────────▶ Connected
//!    ▲  ◀──────────────────┘  connect failed:              │
//!    │                         queued asks fail at once     │ connection lost:
//!    └──────────────────────────────────────────────────────┘ its asks fail at once
//! ```
//!
//! An inbound connection from the same peer is adopted when the outbox is idle, so two daemons
//! that talk both ways share one connection.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::address::RpcAddress;
use crate::env::RpcEnv;
use crate::error::RpcError;
use crate::transport::connection::{Connection, Outgoing};
use crate::transport::frame::{self, FrameDecoder};
use crate::transport::handshake::{self, ClientHandshake, HandshakeError, Step};

#[derive(Debug)]
enum State {
    Idle,
    Connecting(Vec<Outgoing>),
    Connected(Arc<Connection>),
}

/// Frames bound for one remote address.
#[derive(Debug)]
pub(crate) struct Outbox {
    address: RpcAddress,
    state: Mutex<State>,
}

impl Outbox {
    pub(crate) fn new(address: RpcAddress) -> Self {
        Self {
            address,
            state: Mutex::new(State::Idle),
        }
    }

    /// Sends now if connected, otherwise queues and makes sure a connection is being made.
    pub(crate) fn send(self: &Arc<Self>, env: &RpcEnv, out: Outgoing) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *state {
            State::Connected(conn) if conn.is_open() => {
                conn.enqueue(out);
                return;
            }
            State::Connecting(queue) => {
                queue.push(out);
                return;
            }
            _ => {}
        }
        if env.is_stopped() {
            drop(state);
            out.fail(RpcError::EnvStopped);
            return;
        }
        *state = State::Connecting(vec![out]);
        drop(state);
        let (env2, this) = (env.clone(), self.clone());
        env.spawn(async move { this.connect(env2).await });
    }

    async fn connect(self: Arc<Self>, env: RpcEnv) {
        let timeout = env.config().connect_timeout;
        let shutdown = env.shutdown_token();
        let attempt = tokio::select! {
            r = tokio::time::timeout(timeout, dial(&env, &self.address)) => match r {
                Ok(r) => r,
                Err(_) => Err(RpcError::ConnectFailed {
                    address: self.address.clone(),
                    reason: format!("no connection after {timeout:?} (ember.rpc.connect.timeout)"),
                }),
            },
            _ = shutdown.cancelled() => Err(RpcError::EnvStopped),
        };
        match attempt {
            Ok((stream, peer, buffered)) => {
                if peer != self.address {
                    debug!(dialled = %self.address, advertised = %peer, "peer advertises another address");
                }
                let conn = Connection::start(&env, stream, self.address.clone(), buffered);
                // The queue drains under the lock: a send racing in from another thread must
                // wait behind the messages that were queued before it.
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if let State::Connecting(queued) =
                    std::mem::replace(&mut *state, State::Connected(conn.clone()))
                {
                    for out in queued {
                        conn.enqueue(out);
                    }
                }
            }
            Err(error) => {
                let queued = {
                    let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    match std::mem::replace(&mut *state, State::Idle) {
                        State::Connecting(queued) => queued,
                        other => {
                            *state = other;
                            Vec::new()
                        }
                    }
                };
                let one_way = queued.iter().filter(|o| o.ask.is_none()).count();
                warn!(address = %self.address, %error, dropped_messages = one_way,
                    failed_asks = queued.len() - one_way, "could not connect");
                for out in queued {
                    out.fail(error.clone());
                }
                env.network_error(&self.address, error);
            }
        }
    }

    /// Uses an inbound connection from this peer when nothing else is.
    pub(crate) fn adopt(&self, conn: &Arc<Connection>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let idle = match &*state {
            State::Idle => true,
            State::Connected(c) => !c.is_open(),
            State::Connecting(_) => false,
        };
        if idle {
            *state = State::Connected(conn.clone());
        }
    }

    /// Forgets a closed connection, so that the next send reconnects.
    pub(crate) fn detach(&self, conn: &Connection) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let State::Connected(c) = &*state
            && c.id() == conn.id()
        {
            *state = State::Idle;
        }
    }
}

/// Connects and runs the client side of the handshake.
async fn dial(
    env: &RpcEnv,
    address: &RpcAddress,
) -> Result<(TcpStream, RpcAddress, BytesMut), RpcError> {
    let connect_failed = |reason: String| RpcError::ConnectFailed {
        address: address.clone(),
        reason,
    };
    let mut stream = TcpStream::connect((address.host.as_str(), address.port))
        .await
        .map_err(|e| connect_failed(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let mut machine = ClientHandshake::new(
        env.address().clone(),
        env.config().secret.clone(),
        handshake::nonce(),
    );
    let mut buf = BytesMut::with_capacity(512);
    let hello = machine.start();
    write_handshake_frame(&mut stream, &hello)
        .await
        .map_err(|e| connect_failed(e.to_string()))?;
    loop {
        let frame = read_handshake_frame(&mut stream, &mut buf)
            .await
            .map_err(|e| connect_failed(format!("during the handshake: {e}")))?;
        match machine.on_frame(&frame) {
            Step::Send(body) => write_handshake_frame(&mut stream, &body)
                .await
                .map_err(|e| connect_failed(e.to_string()))?,
            Step::Done(peer) => return Ok((stream, peer, buf)),
            Step::SendAndDone(..) => unreachable!("only the server finishes by sending"),
            Step::Fail(body, error) => {
                if let Some(body) = body {
                    let _ = write_handshake_frame(&mut stream, &body).await;
                }
                return Err(handshake_error(address, error));
            }
        }
    }
}

pub(crate) fn handshake_error(address: &RpcAddress, error: HandshakeError) -> RpcError {
    match error {
        HandshakeError::Authentication(reason) => RpcError::Authentication {
            address: address.clone(),
            reason,
        },
        HandshakeError::Protocol(reason) | HandshakeError::NotEmber(reason) => {
            RpcError::Handshake {
                address: address.clone(),
                reason,
            }
        }
    }
}

pub(crate) async fn write_handshake_frame(
    stream: &mut TcpStream,
    body: &[u8],
) -> std::io::Result<()> {
    let framed = frame::frame(body, handshake::MAX_HANDSHAKE_FRAME)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    stream.write_all(&framed).await
}

pub(crate) async fn read_handshake_frame(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> std::io::Result<bytes::Bytes> {
    let decoder = FrameDecoder::new(handshake::MAX_HANDSHAKE_FRAME);
    loop {
        if let Some(frame) = decoder
            .decode(buf)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        {
            return Ok(frame);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the peer closed the connection",
            ));
        }
    }
}
