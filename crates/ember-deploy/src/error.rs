//! The errors of the cluster manager.

use std::path::PathBuf;

use ember_rpc::{AddressError, ConfError, RpcAddress, RpcError};

use crate::file_server::FileServerRefusal;
use crate::ids::{AppId, ExecutorId};
use crate::state::ExecutorState;

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
    /// A file could not be read, written, copied or moved.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done (`read`, `create`, `rename`, …).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A worker was started without a master to register with.
    #[error("no master to register with: give at least one ember://host:port")]
    NoMasters,
    /// No master answered the worker's registrations before the retries ran out.
    #[error(
        "all masters are unresponsive, giving up after {attempts} registration attempts \
         (masters tried: {masters})"
    )]
    RegistrationGaveUp {
        /// The masters tried, comma-separated `ember://host:port` URLs.
        masters: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// A master refused the worker's registration before any master accepted it.
    #[error("worker registration refused by the master: {message}")]
    RegistrationRefused {
        /// The master's reason.
        message: String,
    },
    /// The master never acknowledged an executor's state change.
    #[error(
        "could not report executor {app_id}/{exec_id} as {state} to the master after \
         {attempts} attempts: {source}"
    )]
    ExecutorStateSync {
        /// The executor's application.
        app_id: AppId,
        /// The executor.
        exec_id: ExecutorId,
        /// The state that was being reported.
        state: ExecutorState,
        /// Attempts made (`ember.worker.executorStateSync.maxAttempts`).
        attempts: u32,
        /// The last failure.
        source: Box<RpcError>,
    },
    /// An application binary's bytes do not have the SHA-256 digest it was announced with.
    #[error(
        "application binary {name:?} has the wrong SHA-256 digest: expected {expected}, got {actual}"
    )]
    DigestMismatch {
        /// The binary's name.
        name: String,
        /// The digest announced.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// An application binary's size differs from the size it was announced with.
    #[error(
        "application binary {name:?} has the wrong size: expected {expected} bytes, got {actual}"
    )]
    SizeMismatch {
        /// The binary's name.
        name: String,
        /// The size announced.
        expected: u64,
        /// The size received.
        actual: u64,
    },
    /// A file server refused a request.
    #[error("the file server at {address} refused the request: {refusal}")]
    FileServer {
        /// The RpcEnv hosting the file server.
        address: RpcAddress,
        /// Why it refused.
        refusal: FileServerRefusal,
    },
    /// A child process could not be started.
    #[error("could not start {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A digest is not 64 hexadecimal digits.
    #[error(
        "application binary {name:?} has an invalid SHA-256 digest {digest:?}: expected 64 hex digits"
    )]
    InvalidDigest {
        /// The binary's name.
        name: String,
        /// The digest given.
        digest: String,
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
