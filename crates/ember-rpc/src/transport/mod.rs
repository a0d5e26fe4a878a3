//! The TCP transport: frames, envelopes, the handshake, connections, outboxes and the listener.
//!
//! Spark counterparts: `network/` (`TransportServer`, `TransportClient`, `TransportFrameDecoder`)
//! and `rpc/netty/Outbox`.

pub(crate) mod busy_poll;
pub(crate) mod connection;
pub(crate) mod envelope;
pub(crate) mod frame;
pub mod handshake;
pub(crate) mod outbox;
pub(crate) mod server;

#[cfg(test)]
mod live_tests;
