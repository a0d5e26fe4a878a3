#!/usr/bin/env bash
# Stops the master started on this machine by start-master.sh.

sbin="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$sbin/ember-daemon.sh" stop master 1
