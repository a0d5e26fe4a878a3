#!/usr/bin/env bash
# Stops the workers started on this machine by start-worker.sh (all EMBER_WORKER_INSTANCES).

sbin="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=ember-config.sh
. "$sbin/ember-config.sh"

instances="${EMBER_WORKER_INSTANCES:-1}"
for ((i = 1; i <= instances; i++)); do
  "$sbin/ember-daemon.sh" stop worker "$i"
done
