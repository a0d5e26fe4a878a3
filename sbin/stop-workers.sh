#!/usr/bin/env bash
# Stops the workers on every host in conf/workers.

sbin="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=ember-config.sh
. "$sbin/ember-config.sh"

exec "$sbin/workers.sh" cd "$EMBER_HOME" \; "$sbin/stop-worker.sh"
