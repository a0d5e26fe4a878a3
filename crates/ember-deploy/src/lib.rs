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
//! | [`client`] | `StandaloneAppClient` |

pub mod client;
pub mod config;
pub mod description;
pub mod error;
pub mod ids;
pub mod messages;
pub mod state;
pub mod web;

pub use error::DeployError;
