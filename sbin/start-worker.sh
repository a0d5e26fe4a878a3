#!/usr/bin/env bash
# Starts one or more workers on this machine.
#   start-worker.sh <master-url> [ember worker options...]
# Environment: EMBER_WORKER_INSTANCES (1), EMBER_WORKER_PORT (instance i uses PORT+i-1),
#   EMBER_WORKER_WEBUI_PORT (8081; instance i uses +i-1), EMBER_WORKER_CORES, EMBER_WORKER_MEMORY,
#   EMBER_WORKER_DIR.

sbin="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=ember-config.sh
. "$sbin/ember-config.sh"

if [ $# -lt 1 ] || [[ "$1" = "--help" ]]; then
  echo "Usage: ./sbin/start-worker.sh <master-url> [options]"
  echo "  e.g. ./sbin/start-worker.sh ember://master-host:7077"
  [ $# -lt 1 ] && exit 1
  "$EMBER_BIN" worker --help
  exit 0
fi

master="$1"; shift
EMBER_WORKER_WEBUI_PORT="${EMBER_WORKER_WEBUI_PORT:-8081}"
instances="${EMBER_WORKER_INSTANCES:-1}"

status=0
for ((i = 1; i <= instances; i++)); do
  port_args=()
  if [ -n "${EMBER_WORKER_PORT:-}" ]; then
    port_args=(--port $((EMBER_WORKER_PORT + i - 1)))
  fi
  webui_port=$((EMBER_WORKER_WEBUI_PORT + i - 1))
  "$sbin/ember-daemon.sh" start worker "$i" --webui-port "$webui_port" "${port_args[@]}" "$master" "$@" || status=1
done
exit $status
