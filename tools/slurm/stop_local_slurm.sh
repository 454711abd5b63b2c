#!/bin/sh
# Stop the daemons that tools/slurm/setup_local_slurm.sh started (slurmd, slurmctld, munged).
# Run as root. Jobs still running are killed with their node daemon.
set -u
if [ "$(id -u)" != "0" ]; then echo "error: $0 must run as root" >&2; exit 2; fi
stop() {  # pid file, name
  [ -f "$1" ] || return 0
  pid="$(cat "$1")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    echo "stopped $2"
  fi
}
stop /run/slurm/slurmd.pid slurmd
stop /run/slurm/slurmctld.pid slurmctld
stop /run/munge/munged.pid munged
exit 0
