#!/usr/bin/env bash
# stop.sh - stop what start.sh started, by PID (from the pid
# files it uses), never by process name. Running jobs are killed by slurmd's
# shutdown; job/accounting state is kept unless --purge is given.
#
#   stop.sh           stop the slurmds, slurmctld, slurmdbd, mariadbd, munged
#   stop-cluster.sh --purge   also wipe slurmctld state, the accounting DB and logs
#                             (next start = brand-new cluster, job ids from 1)
set -uo pipefail

RUN=/run/slurm
log() { printf '[dev-cluster stop %(%H:%M:%S)T] %s\n' -1 "$*"; }

# stop_pid PIDFILE COMM : TERM the pid if it really is COMM, wait, then KILL
stop_pid() {
  local pf=$1 comm=$2 pid i
  [ -s "$pf" ] || { log "$comm: no pid file ($pf)"; return 0; }
  pid=$(tr -dc '0-9' < "$pf")
  if [ -z "$pid" ] || [ ! -r "/proc/$pid/comm" ] || [ "$(cat /proc/$pid/comm)" != "$comm" ]; then
    log "$comm: pid ${pid:-?} not running (stale pid file removed)"; rm -f "$pf"; return 0
  fi
  log "stopping $comm (pid $pid)"
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 1 100); do                  # up to 30 s
    [ -d "/proc/$pid" ] || break
    # a zombie child of this shell would linger: it is gone for our purpose
    [ "$(awk '{print $3}' /proc/$pid/stat 2>/dev/null)" = Z ] && break
    sleep 0.3
  done
  if [ -d "/proc/$pid" ] && [ "$(awk '{print $3}' /proc/$pid/stat 2>/dev/null)" != Z ]; then
    log "$comm (pid $pid) did not stop: KILL"; kill -KILL "$pid" 2>/dev/null; sleep 0.5
  fi
  rm -f "$pf"
}

# order: compute nodes (the second node's slurmd keeps its pid file in $RUN/<node>/, see
# start.sh), controller, accounting, database, auth. The network namespace and addresses stay.
for pf in "$RUN"/*/slurmd.pid; do [ -e "$pf" ] && stop_pid "$pf" slurmd; done
stop_pid "$RUN/slurmd.pid"          slurmd
stop_pid "$RUN/slurmctld.pid"       slurmctld
stop_pid "$RUN/slurmdbd.pid"        slurmdbd
if [ "${1:-}" = "--purge" ]; then
  log "purging slurmctld state, slurmd spool, accounting DB and logs"
  rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/* /var/lib/slurm/slurmd-*/*
  rm -f /var/log/slurm/*.log
  # drop the DB through the server (deleting its folder would confuse InnoDB)
  if [ -S /run/mysqld/mysqld.sock ]; then
    mariadb --protocol=socket -e 'DROP DATABASE IF EXISTS slurm_acct_db' \
      || log "could not drop slurm_acct_db"
  else
    log "mariadbd not running: slurm_acct_db kept"
  fi
fi
stop_pid /run/mysqld/mysqld.pid     mariadbd
stop_pid /run/munge/munged.pid      munged
log "stopped"
