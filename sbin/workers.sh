#!/usr/bin/env bash
# Runs a shell command on every worker host: over ssh, or directly for this machine.
#   workers.sh [--config <conf-dir>] command...
# Hosts come from $EMBER_WORKERS, else $EMBER_CONF_DIR/workers, else localhost; '#' starts a
# comment. Environment: EMBER_SSH_OPTS (default -o StrictHostKeyChecking=no),
# EMBER_SSH_FOREGROUND (run hosts one after another), EMBER_WORKER_SLEEP (seconds between hosts).

usage="Usage: workers.sh [--config <conf-dir>] command..."
if [ $# -le 0 ]; then
  echo "$usage" >&2
  exit 1
fi

sbin="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "$1" = "--config" ]; then
  shift
  export EMBER_CONF_DIR="$1"
  shift
fi
# shellcheck source=ember-config.sh
. "$sbin/ember-config.sh"

if [ -n "${EMBER_WORKERS:-}" ]; then
  hosts_file="$EMBER_WORKERS"
elif [ -f "$EMBER_CONF_DIR/workers" ]; then
  hosts_file="$EMBER_CONF_DIR/workers"
else
  hosts_file=""
fi
if [ -n "$hosts_file" ]; then
  hosts=$(sed 's/#.*$//;/^[[:space:]]*$/d' "$hosts_file")
else
  hosts=localhost
fi

EMBER_SSH_OPTS="${EMBER_SSH_OPTS:--o StrictHostKeyChecking=no}"
this_host="$(hostname)"
this_fqdn="$(hostname -f 2>/dev/null || hostname)"

is_local() {
  case "$1" in
    localhost|127.0.0.1|::1|"$this_host"|"$this_fqdn") return 0 ;;
  esac
  return 1
}

# The command, quoted for a remote shell.
remote_cmd="${*// /\\ }"

for host in $hosts; do
  if is_local "$host"; then
    if [ -n "${EMBER_SSH_FOREGROUND:-}" ]; then
      bash -c "$*" 2>&1 | sed "s/^/$host: /"
    else
      bash -c "$*" 2>&1 | sed "s/^/$host: /" &
    fi
  else
    # shellcheck disable=SC2086
    if [ -n "${EMBER_SSH_FOREGROUND:-}" ]; then
      ssh $EMBER_SSH_OPTS "$host" "$remote_cmd" 2>&1 | sed "s/^/$host: /"
    else
      ssh $EMBER_SSH_OPTS "$host" "$remote_cmd" 2>&1 | sed "s/^/$host: /" &
    fi
  fi
  if [ -n "${EMBER_WORKER_SLEEP:-}" ]; then
    sleep "$EMBER_WORKER_SLEEP"
  fi
done
wait
