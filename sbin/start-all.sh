#!/usr/bin/env bash
# Starts the master on this machine, then a worker on every host in conf/workers.

sbin="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$sbin/start-master.sh" || exit 1
"$sbin/start-workers.sh"
