//! The listener: accepts connections and runs the server side of the handshake on each.
//!
//! Spark counterpart: `TransportServer`. A peer that fails the handshake (wrong magic, other
//! protocol version, missing or wrong secret, too slow) is refused and logged; nobody else
//! notices.

use std::time::Duration;

use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::address::RpcAddress;
use crate::env::RpcEnv;
use crate::transport::connection::Connection;
use crate::transport::handshake::{self, HandshakeError, ServerHandshake, Step};
use crate::transport::outbox::{read_handshake_frame, write_handshake_frame};

/// Accepts until the RpcEnv shuts down.
pub(crate) async fn accept_loop(env: RpcEnv, listener: TcpListener) {
    let shutdown = env.shutdown_token();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                let env2 = env.clone();
                env.spawn(async move { serve(env2, stream, remote.into()).await });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
    debug!(address = %env.address(), "listener closed");
}

async fn serve(env: RpcEnv, mut stream: TcpStream, remote: RpcAddress) {
    let _ = stream.set_nodelay(true);
    let timeout = env.config().connect_timeout;
    let shutdown = env.shutdown_token();
    let outcome = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = tokio::time::timeout(timeout, handshake(&env, &mut stream)) => r,
    };
    match outcome {
        Ok(Ok((peer, buffered))) => {
            debug!(%remote, %peer, "accepted a connection");
            let conn = Connection::start(&env, stream, peer.clone(), buffered);
            env.outbox(&peer).adopt(&conn);
        }
        Ok(Err(HandshakeFailure::Io(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
            warn!(%remote, reason = %e, "refused a connection: malformed handshake frame");
        }
        Ok(Err(HandshakeFailure::Io(e))) => {
            debug!(%remote, error = %e, "connection closed during the handshake");
        }
        Ok(Err(HandshakeFailure::Refused(e))) => {
            warn!(%remote, reason = %e, "refused a connection");
        }
        Err(_) => {
            warn!(%remote, ?timeout, "refused a connection: no handshake in time (ember.rpc.connect.timeout)");
        }
    }
}

enum HandshakeFailure {
    Io(std::io::Error),
    Refused(HandshakeError),
}

async fn handshake(
    env: &RpcEnv,
    stream: &mut TcpStream,
) -> Result<(RpcAddress, BytesMut), HandshakeFailure> {
    let mut machine = ServerHandshake::new(
        env.address().clone(),
        env.config().secret.clone(),
        handshake::nonce(),
    );
    let mut buf = BytesMut::with_capacity(512);
    loop {
        let frame = read_handshake_frame(stream, &mut buf)
            .await
            .map_err(HandshakeFailure::Io)?;
        match machine.on_frame(&frame) {
            Step::Send(body) => write_handshake_frame(stream, &body)
                .await
                .map_err(HandshakeFailure::Io)?,
            Step::SendAndDone(body, peer) => {
                write_handshake_frame(stream, &body)
                    .await
                    .map_err(HandshakeFailure::Io)?;
                return Ok((peer, buf));
            }
            Step::Done(peer) => return Ok((peer, buf)),
            Step::Fail(body, error) => {
                if let Some(body) = body {
                    let _ = write_handshake_frame(stream, &body).await;
                }
                return Err(HandshakeFailure::Refused(error));
            }
        }
    }
}
