#!/usr/bin/env bash
# Sourced by the other sbin scripts: locates EMBER_HOME, the configuration directory and the
# `ember` binary, and loads conf/ember-env.sh once.

if [ -z "${EMBER_HOME:-}" ]; then
  EMBER_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fi
export EMBER_HOME
export EMBER_CONF_DIR="${EMBER_CONF_DIR:-$EMBER_HOME/conf}"

if [ -z "${EMBER_ENV_LOADED:-}" ]; then
  export EMBER_ENV_LOADED=1
  if [ -f "$EMBER_CONF_DIR/ember-env.sh" ]; then
    set -a
    # shellcheck disable=SC1091
    . "$EMBER_CONF_DIR/ember-env.sh"
    set +a
  fi
fi

# The ember binary: $EMBER_BIN, else bin/ember, else a release build in the source tree, else PATH.
if [ -z "${EMBER_BIN:-}" ]; then
  if [ -x "$EMBER_HOME/bin/ember" ]; then
    EMBER_BIN="$EMBER_HOME/bin/ember"
  elif [ -x "$EMBER_HOME/target/release/ember" ]; then
    EMBER_BIN="$EMBER_HOME/target/release/ember"
  else
    EMBER_BIN="$(command -v ember || true)"
  fi
fi
export EMBER_BIN
