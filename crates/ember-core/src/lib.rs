//! ember-core
