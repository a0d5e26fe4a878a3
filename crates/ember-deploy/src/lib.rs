//! Ember's standalone cluster manager.
//!
//! The Master and Worker daemons and their protocol: the counterpart of Spark's
//! `org.apache.spark.deploy` package. Each daemon is split into messages, a pure state machine
//! (time is an input; it returns effects) and an endpoint that performs the effects.
//!
//! | module | Spark |
//! |---|---|
//! | [`messages`] | `DeployMessages`, `MasterMessages` |
//! | [`ids`], [`state`], [`description`] | ids, `*State` enums, `*Description` |
//! | [`worker`] | `deploy.worker` (`Worker`, `ExecutorRunner`, `DriverRunner`, `WorkerWebUI`) |
//! | [`file_server`] | `RpcEnvFileServer` (serves the application binary by digest) |
//! | [`master`] | `deploy.master`: the Master daemon |
//! | [`client`] | `StandaloneAppClient` |

pub mod client;
pub mod config;
pub mod description;
pub mod error;
pub mod file_server;
pub mod ids;
pub mod master;
pub mod messages;
pub mod state;
pub mod web;
pub mod worker;

pub use error::DeployError;
