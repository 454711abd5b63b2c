#!/bin/sh
# A single-node SLURM "cluster" on this machine for `make test-slurm`: Debian's slurm-wlm and munge,
# one node (this host, on the loopback address) with one partition. Run as root; idempotent (it
# installs, configures and starts only what is missing, and waits until the node is idle).
#
#   sudo sh tools/slurm/setup_local_slurm.sh      # start (installs slurm-wlm and munge if needed)
#   sudo sh tools/slurm/stop_local_slurm.sh       # stop the daemons again
#
# Small on purpose: no accounting database (slurmdbd; so `sacct` has nothing to say: submitit then
# reads job states from its result files, and our launcher from squeue), no cgroups (process
# tracking by /proc), CPUs shared per core, memory not enforced. Daemons listen on 127.0.0.1 only.
set -eu

if [ "$(id -u)" != "0" ]; then
  echo "error: $0 must run as root (it installs Debian packages and starts the SLURM and munge daemons)" >&2
  exit 2
fi

NODE="$(hostname -s)"
CONF=/etc/slurm/slurm.conf
CPUS="$(nproc)"
MEM_MB="$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)"   # 80 % of RAM for jobs

# 1. packages
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  echo "installing slurm-wlm and munge (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null; }
fi

# 2. munge (authentication between the SLURM commands and daemons)
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  echo "creating /etc/munge/munge.key"
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
fi
if ! munge -n >/dev/null 2>&1; then
  echo "starting munged"
  runuser -u munge -- /usr/sbin/munged --num-threads=1
  for _ in 1 2 3 4 5 6 7 8 9 10; do munge -n >/dev/null 2>&1 && break; sleep 0.5; done
  munge -n | unmunge >/dev/null || { echo "error: munged does not answer (see /var/log/munge/munged.log)" >&2; exit 1; }
fi

# 3. slurm.conf (rewritten only when it changes)
mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
chown slurm:slurm /var/spool/slurmctld /var/log/slurm /run/slurm
TMP="$(mktemp)"
cat > "$TMP" <<CONF
# Written by tools/slurm/setup_local_slurm.sh: a one-node test cluster on the loopback address.
ClusterName=omnire-local
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
JobRequeue=1
KillWait=30
MinJobAge=300
InactiveLimit=0
SlurmdTimeout=300
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=local Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
CONF
CHANGED=0
if ! cmp -s "$TMP" "$CONF"; then
  install -m 0644 "$TMP" "$CONF"
  CHANGED=1
fi
rm -f "$TMP"

# 4. daemons (restarted when the configuration changed)
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if [ "$CHANGED" = "1" ]; then
  running /run/slurm/slurmd.pid && kill "$(cat /run/slurm/slurmd.pid)" && sleep 1
  running /run/slurm/slurmctld.pid && kill "$(cat /run/slurm/slurmctld.pid)" && sleep 1
fi
if ! running /run/slurm/slurmctld.pid; then
  echo "starting slurmctld"
  /usr/sbin/slurmctld
fi
if ! running /run/slurm/slurmd.pid; then
  echo "starting slurmd"
  /usr/sbin/slurmd
fi

# 5. wait for the node
for _ in $(seq 1 30); do
  STATE="$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)"
  case "$STATE" in
    idle*|mixed*|allocated*) echo "SLURM ready: node ${NODE} ${STATE}, partition local, ${CPUS} CPUs"; exit 0 ;;
  esac
  sleep 1
done
echo "error: the SLURM node ${NODE} did not become idle (state: ${STATE:-none}); see /var/log/slurm/" >&2
exit 1
