#!/usr/bin/env bash
# Starts the master on this machine.
#   start-master.sh [ember master options...]
# Environment: EMBER_MASTER_HOST, EMBER_MASTER_PORT (7077), EMBER_MASTER_WEBUI_PORT (8080).

sbin="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=ember-config.sh
. "$sbin/ember-config.sh"

if [[ "${1:-}" = "--help" ]]; then
  echo "Usage: ./sbin/start-master.sh [options]"
  "$EMBER_BIN" master --help
  exit 0
fi

EMBER_MASTER_PORT="${EMBER_MASTER_PORT:-7077}"
EMBER_MASTER_HOST="${EMBER_MASTER_HOST:-$(hostname -f 2>/dev/null || hostname)}"
EMBER_MASTER_WEBUI_PORT="${EMBER_MASTER_WEBUI_PORT:-8080}"

exec "$sbin/ember-daemon.sh" start master 1 \
  --host "$EMBER_MASTER_HOST" --port "$EMBER_MASTER_PORT" --webui-port "$EMBER_MASTER_WEBUI_PORT" "$@"
