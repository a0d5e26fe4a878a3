#!/usr/bin/env bash
# Runs an Ember daemon in the background, with a pid file and a rotated log.
#
#   ember-daemon.sh [--config <conf-dir>] (start|stop|status) (master|worker) <instance> [args...]
#
# Environment:
#   EMBER_CONF_DIR       configuration directory (default $EMBER_HOME/conf)
#   EMBER_LOG_DIR        where logs go (default $EMBER_HOME/logs)
#   EMBER_LOG_MAX_FILES  rotated logs kept (default 5)
#   EMBER_PID_DIR        where pid files go (default /tmp)
#   EMBER_IDENT_STRING   identity in file names (default $USER)
#   EMBER_NICENESS       nice level (default 0)
#   EMBER_NO_DAEMONIZE   if set, run in the foreground without a pid file
#   EMBER_STOP_TIMEOUT   seconds `stop` waits for the daemon to exit (default 30)
#   EMBER_BIN            the ember binary (default: see ember-config.sh)

set -u
usage="Usage: ember-daemon.sh [--config <conf-dir>] (start|stop|status) (master|worker) <instance> [args...]"

if [ $# -le 2 ]; then
  echo "$usage" >&2
  exit 1
fi

sbin="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ "$1" = "--config" ]; then
  shift
  conf_dir="$1"
  if [ ! -d "$conf_dir" ]; then
    echo "ERROR: $conf_dir is not a directory" >&2
    exit 1
  fi
  export EMBER_CONF_DIR="$conf_dir"
  shift
fi

# shellcheck source=ember-config.sh
. "$sbin/ember-config.sh"

option="$1"; shift
role="$1"; shift
instance="$1"; shift

case "$role" in
  master|worker) ;;
  *) echo "ERROR: unknown daemon '$role' (expected master or worker)" >&2; echo "$usage" >&2; exit 1 ;;
esac

EMBER_IDENT_STRING="${EMBER_IDENT_STRING:-${USER:-$(id -un)}}"
EMBER_LOG_DIR="${EMBER_LOG_DIR:-$EMBER_HOME/logs}"
EMBER_PID_DIR="${EMBER_PID_DIR:-/tmp}"
EMBER_NICENESS="${EMBER_NICENESS:-0}"
EMBER_LOG_MAX_FILES="${EMBER_LOG_MAX_FILES:-5}"
host_name="$(hostname)"

log="$EMBER_LOG_DIR/ember-$EMBER_IDENT_STRING-$role-$instance-$host_name.out"
pid="$EMBER_PID_DIR/ember-$EMBER_IDENT_STRING-$role-$instance.pid"

rotate_log() {
  local file="$1" num="$EMBER_LOG_MAX_FILES"
  if ! [[ "$num" =~ ^[0-9]+$ ]] || [ "$num" -le 0 ]; then
    echo "ERROR: EMBER_LOG_MAX_FILES must be a positive number, not '$num'" >&2
    exit 1
  fi
  if [ -f "$file" ]; then
    while [ "$num" -gt 1 ]; do
      local prev=$((num - 1))
      [ -f "$file.$prev" ] && mv "$file.$prev" "$file.$num"
      num=$prev
    done
    mv "$file" "$file.1"
  fi
}

# Whether process $1 exists and has not exited. A daemon started here is an orphan adopted by
# init; an exited one stays a zombie until init reaps it, which some inits (in containers and
# micro-VMs) do late or never, and `kill -0` succeeds on a zombie.
is_alive() {
  local p="$1" state=""
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 1
  if [ -r "/proc/$p/stat" ]; then
    # The state is the field after the parenthesised command name.
    state="$(sed -n 's/^.*) \(.\).*$/\1/p' "/proc/$p/stat" 2>/dev/null)"
  else
    state="$(ps -o stat= -p "$p" 2>/dev/null)"
  fi
  case "$state" in
    Z*) return 1 ;;
  esac
  return 0
}

# Whether $1 is a live process running the ember binary.
is_ember_process() {
  local p="$1"
  is_alive "$p" || return 1
  local exe
  exe="$(readlink "/proc/$p/exe" 2>/dev/null || true)"
  case "$exe" in
    *ember*) return 0 ;;
  esac
  # Fall back to the command name where /proc is unavailable.
  ps -p "$p" -o comm= 2>/dev/null | grep -q ember
}

case "$option" in
  start)
    if [ -z "$EMBER_BIN" ] || [ ! -x "$EMBER_BIN" ]; then
      echo "ERROR: cannot find the ember binary; build it (cargo build --release) or set EMBER_BIN" >&2
      exit 1
    fi
    if [ -n "${EMBER_NO_DAEMONIZE:-}" ]; then
      exec nice -n "$EMBER_NICENESS" "$EMBER_BIN" "$role" "$@"
    fi
    mkdir -p "$EMBER_PID_DIR" "$EMBER_LOG_DIR" || { echo "ERROR: cannot create $EMBER_PID_DIR or $EMBER_LOG_DIR" >&2; exit 1; }
    if [ -f "$pid" ]; then
      target_pid="$(cat "$pid")"
      if is_ember_process "$target_pid"; then
        echo "$role running as process $target_pid.  Stop it first." >&2
        exit 1
      fi
    fi
    rotate_log "$log"
    echo "starting $role, logging to $log"
    {
      echo "Ember command: $EMBER_BIN $role $*"
      echo "========================================"
    } >> "$log"
    nohup nice -n "$EMBER_NICENESS" "$EMBER_BIN" "$role" "$@" >> "$log" 2>&1 < /dev/null &
    new_pid=$!
    echo "$new_pid" > "$pid"
    # Give it a moment to fail fast (bad arguments, port in use), polling rather than waiting.
    for _ in $(seq 1 20); do
      is_alive "$new_pid" || break
      sleep 0.1
    done
    if ! is_alive "$new_pid"; then
      echo "failed to launch: $EMBER_BIN $role $*" >&2
      tail -n 10 "$log" | sed 's/^/  /' >&2
      echo "full log in $log" >&2
      rm -f "$pid"
      exit 1
    fi
    ;;

  stop)
    if [ -f "$pid" ]; then
      target_pid="$(cat "$pid")"
      if is_ember_process "$target_pid"; then
        echo "stopping $role"
        kill "$target_pid"
        timeout="${EMBER_STOP_TIMEOUT:-30}"
        for _ in $(seq 1 $((timeout * 10))); do
          is_alive "$target_pid" || break
          sleep 0.1
        done
        if is_alive "$target_pid"; then
          echo "$role did not stop within ${timeout}s; killing it" >&2
          kill -9 "$target_pid" 2>/dev/null
        fi
        rm -f "$pid"
      else
        echo "no $role to stop"
        rm -f "$pid"
      fi
    else
      echo "no $role to stop"
    fi
    ;;

  status)
    if [ -f "$pid" ]; then
      target_pid="$(cat "$pid")"
      if is_ember_process "$target_pid"; then
        echo "$role is running (process $target_pid)."
        exit 0
      fi
      echo "file $pid is present but $role is not running."
      exit 1
    fi
    echo "$role is not running."
    exit 2
    ;;

  *)
    echo "$usage" >&2
    exit 1
    ;;
esac
