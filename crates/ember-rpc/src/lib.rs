//! Ember's RPC framework.
//!
//! The Rust counterpart of Spark's `NettyRpcEnv`: an [`RpcEnv`] hosts named endpoints, each an
//! actor that handles typed messages one at a time; [`EndpointRef`]s send to them (`send`, one
//! way) or ask them (`ask`, request and reply with a timeout), in the same process or across TCP.

pub mod address;
pub mod conf;
pub mod error;

pub use address::{AddressError, RpcAddress};
pub use conf::{
    ByteSize, ByteUnit, ConfError, ConfLoader, ConfigEntry, ConfigEntryDoc, ConfigEnum,
    ConfigValue, EmberConf, TimeUnit,
};
pub use error::{CallFailure, HandlerResult, RpcError};
