//! Ember: a cluster computing runtime.
//!
//! This is the crate applications depend on, and the home of the `ember` command
//! ([`cli`]): `ember master`, `ember worker`, `ember conf`.

pub mod cli;
