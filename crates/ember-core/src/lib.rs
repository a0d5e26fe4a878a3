//! ember-core: Ember's application runtime.
//!
//! The Rust counterpart of Spark core: the `Context`, RDDs, the DAG and task schedulers, the
//! scheduler backends, executors and shuffle. Its [`closure`] module turns user functions in the
//! driver into code executors can run; it is the only module in Ember allowed `unsafe`.

pub mod closure;
