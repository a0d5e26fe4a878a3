#!/usr/bin/env bash
# Stops the workers on every host in conf/workers, then the master on this machine.

sbin="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$sbin/stop-workers.sh"
"$sbin/stop-master.sh"
