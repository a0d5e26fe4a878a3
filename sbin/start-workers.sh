#!/usr/bin/env bash
# Starts a worker on every host in conf/workers, registered with this machine's master.
# Environment: EMBER_MASTER_HOST, EMBER_MASTER_PORT (7077).

sbin="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=ember-config.sh
. "$sbin/ember-config.sh"

EMBER_MASTER_PORT="${EMBER_MASTER_PORT:-7077}"
EMBER_MASTER_HOST="${EMBER_MASTER_HOST:-$(hostname -f 2>/dev/null || hostname)}"

exec "$sbin/workers.sh" cd "$EMBER_HOME" \; "$sbin/start-worker.sh" "ember://$EMBER_MASTER_HOST:$EMBER_MASTER_PORT" "$@"
