//! The errors of the cluster manager.

use std::path::PathBuf;

use ember_rpc::{AddressError, ConfError, RpcError};

/// Everything that can stop a daemon or fail a deploy operation.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A configuration value is malformed or missing.
    #[error(transparent)]
    Conf(#[from] ConfError),
    /// A master URL or address is malformed.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// The RPC layer failed (binding, connecting, asking).
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// A web UI (or REST) server could not listen.
    #[error("could not bind the {what} on {address}: {source}")]
    Bind {
        /// Which server.
        what: &'static str,
        /// The address asked for.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A directory could not be created or used.
    #[error("could not use directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A configuration value parses but is not acceptable (a missing companion key, a value out
    /// of range, a mode not supported yet).
    #[error("invalid configuration {key}: {reason}")]
    InvalidConfig {
        /// The key at fault.
        key: &'static str,
        /// What is wrong and what would be accepted.
        reason: String,
    },
    /// The master's recovery state could not be written or read.
    #[error(transparent)]
    Persistence(#[from] crate::master::persistence::PersistenceError),
    /// The master lost its leadership (another master leads now) and stopped.
    #[error("the master lost its leadership and stopped")]
    LeadershipRevoked,
}
