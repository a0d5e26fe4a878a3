//! Ember's RPC framework.
//!
//! The Rust counterpart of Spark's `NettyRpcEnv`: an [`RpcEnv`] hosts named endpoints, each an
//! actor that handles typed messages one at a time ([`RpcEndpoint`]); [`EndpointRef`]s send to
//! them one way or ask them for a reply with a timeout, in the same process or across TCP.
//!
//! | piece | Spark | here |
//! |---|---|---|
//! | configuration | `SparkConf`, `ConfigEntry` | [`conf`] |
//! | environment | `NettyRpcEnv` | [`env`] |
//! | endpoint | `RpcEndpoint` | [`endpoint`] |
//! | call context | `RpcCallContext` | [`call_context`] |
//! | refs | `NettyRpcEndpointRef` | [`endpoint_ref`] |
//! | dispatcher, inbox | `Dispatcher`, `Inbox`, `MessageLoop` | `dispatcher` |
//! | frames, connections, outbox, server, auth | `TransportFrameDecoder`, `TransportClient`, `Outbox`, `TransportServer`, `AuthEngine` | [`transport`] |

pub mod address;
pub mod call_context;
pub mod conf;
mod dispatcher;
pub mod endpoint;
pub mod endpoint_ref;
pub mod env;
pub mod error;
pub mod transport;

pub use address::{AddressError, RpcAddress, parse_endpoint_url};
pub use call_context::RpcCallContext;
pub use conf::{
    ByteSize, ByteUnit, ConfError, ConfLoader, ConfigEntry, ConfigEntryDoc, ConfigEnum,
    ConfigValue, EmberConf, TimeUnit,
};
pub use dispatcher::inbox::panic_message;
pub use endpoint::{EndpointContext, RpcEndpoint, RpcMessage, TimerHandle};
pub use endpoint_ref::{EndpointRef, SendError};
pub use env::{ASK_TIMEOUT_KEY, RpcEnv, RpcEnvConfig};
pub use error::{CallFailure, HandlerResult, RpcError};
pub use transport::handshake::{PROTOCOL_VERSION, Secret};
