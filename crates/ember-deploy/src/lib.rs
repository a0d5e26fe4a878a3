//! ember-deploy
