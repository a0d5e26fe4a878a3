//! The errors of the RPC layer.
//!
//! `ask` tells its outcomes apart: a timeout (naming the address, the endpoint and the config key
//! that sets it), a lost connection, an endpoint that does not exist, and a failure reported by
//! the remote handler. Spark counterparts: `RpcTimeoutException`, `RpcEndpointNotFoundException`,
//! `RpcEnvStoppedException`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::address::RpcAddress;

/// Everything that can go wrong when talking through an [`RpcEnv`](crate::RpcEnv).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// No reply arrived in time.
    #[error(
        "ask to endpoint {endpoint:?} at {address} timed out after {timeout:?} (this timeout is set by {key})"
    )]
    AskTimeout {
        /// Address of the RpcEnv asked.
        address: RpcAddress,
        /// Name of the endpoint asked.
        endpoint: String,
        /// How long the ask waited.
        timeout: Duration,
        /// The configuration key that sets this timeout.
        key: &'static str,
    },
    /// The connection carrying the request closed before the reply came.
    #[error("connection to {address} was lost before the reply arrived")]
    ConnectionLost {
        /// The peer whose connection closed.
        address: RpcAddress,
    },
    /// An established connection to the peer closed because of an error: a failed read or
    /// write, or a frame that broke the protocol. The next send reconnects.
    #[error("connection to {address} closed: {reason}")]
    ConnectionClosed {
        /// The peer.
        address: RpcAddress,
        /// What closed it.
        reason: String,
    },
    /// A connection to the peer could not be made.
    #[error("could not connect to {address}: {reason}")]
    ConnectFailed {
        /// The address connected to.
        address: RpcAddress,
        /// What failed (the OS error or the handshake step).
        reason: String,
    },
    /// The peer refused the handshake: wrong magic, protocol version mismatch, or an RpcEnv
    /// shutting down.
    #[error("handshake with {address} failed: {reason}")]
    Handshake {
        /// The peer.
        address: RpcAddress,
        /// The reason given by the side that refused.
        reason: String,
    },
    /// Authentication failed: a missing or wrong shared secret on either side.
    #[error("authentication with {address} failed: {reason}")]
    Authentication {
        /// The peer.
        address: RpcAddress,
        /// The reason given by the side that refused.
        reason: String,
    },
    /// No endpoint of that name is registered at the address.
    #[error("no endpoint named {endpoint:?} at {address}")]
    EndpointNotFound {
        /// Where the endpoint was looked up.
        address: RpcAddress,
        /// The name looked up.
        endpoint: String,
    },
    /// The endpoint received the request but failed it.
    #[error("endpoint {endpoint:?} at {address} failed the request: {failure}")]
    Remote {
        /// Where the endpoint lives.
        address: RpcAddress,
        /// The endpoint's name.
        endpoint: String,
        /// What the endpoint reported.
        failure: CallFailure,
    },
    /// An encoded message exceeds `ember.rpc.message.maxSize`.
    #[error("message of {size} bytes exceeds the limit of {max} bytes (ember.rpc.message.maxSize)")]
    MessageTooLarge {
        /// Encoded size.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// A message or reply could not be encoded.
    #[error("could not encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's complaint.
        reason: String,
    },
    /// A reply could not be decoded into the type the asker expects.
    #[error("could not decode the reply from {endpoint:?} at {address}: {reason}")]
    DecodeReply {
        /// The replying endpoint's address.
        address: RpcAddress,
        /// The replying endpoint.
        endpoint: String,
        /// The decoder's complaint.
        reason: String,
    },
    /// The local RpcEnv has been shut down.
    #[error("the RpcEnv has been shut down")]
    EnvStopped,
    /// The local endpoint has stopped.
    #[error("endpoint {endpoint:?} has stopped")]
    EndpointStopped {
        /// The endpoint's name.
        endpoint: String,
    },
    /// An endpoint name is already taken in this RpcEnv.
    #[error("an endpoint named {endpoint:?} is already registered")]
    DuplicateEndpoint {
        /// The name.
        endpoint: String,
    },
    /// An endpoint name is empty or longer than 255 bytes.
    #[error("invalid endpoint name {endpoint:?}: names must be 1 to 255 bytes")]
    InvalidName {
        /// The name.
        endpoint: String,
    },
    /// The endpoint's `on_start` failed, so it never started.
    #[error("endpoint {endpoint:?} failed to start: {reason}")]
    StartFailed {
        /// The endpoint's name.
        endpoint: String,
        /// The error `on_start` returned.
        reason: String,
    },
    /// The listener could not be bound.
    #[error("could not bind {address}: {reason}")]
    Bind {
        /// The address asked for.
        address: String,
        /// The OS error.
        reason: String,
    },
}

impl RpcError {
    /// Whether trying again later may succeed (the peer may come back, the network may heal).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RpcError::AskTimeout { .. }
                | RpcError::ConnectionLost { .. }
                | RpcError::ConnectionClosed { .. }
                | RpcError::ConnectFailed { .. }
        )
    }

    /// Whether the error means the peer could not be reached or went away.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            RpcError::ConnectionLost { .. }
                | RpcError::ConnectionClosed { .. }
                | RpcError::ConnectFailed { .. }
                | RpcError::Handshake { .. }
                | RpcError::Authentication { .. }
        )
    }

    pub(crate) fn from_failure(address: &RpcAddress, endpoint: &str, failure: CallFailure) -> Self {
        match failure {
            CallFailure::EndpointNotFound => RpcError::EndpointNotFound {
                address: address.clone(),
                endpoint: endpoint.to_owned(),
            },
            failure => RpcError::Remote {
                address: address.clone(),
                endpoint: endpoint.to_owned(),
                failure,
            },
        }
    }
}

/// Why an endpoint failed a request. Travels on the wire in failure replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CallFailure {
    /// The named endpoint does not exist (or has stopped).
    #[error("no such endpoint")]
    EndpointNotFound,
    /// The request's bytes do not decode as a message for that endpoint.
    #[error("the request could not be decoded: {reason}")]
    UndecodableRequest {
        /// The decoder's complaint.
        reason: String,
    },
    /// The handler returned an error.
    #[error("{message}")]
    HandlerFailed {
        /// The error, as its `Display` text.
        message: String,
    },
    /// The handler panicked; the endpoint keeps serving.
    #[error("the handler panicked: {message}")]
    HandlerPanicked {
        /// The panic message.
        message: String,
    },
    /// The handler finished without replying and dropped the request.
    #[error("the endpoint dropped the request without replying")]
    NoReply,
    /// The endpoint stopped before replying.
    #[error("the endpoint stopped before replying")]
    EndpointStopped,
    /// The message kind is not handled as a request by this endpoint.
    #[error("this endpoint does not answer requests of this kind")]
    Unsupported,
}

/// What a handler returns. Errors are logged; for requests, the asker gets them as a
/// [`CallFailure::HandlerFailed`].
pub type HandlerResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
