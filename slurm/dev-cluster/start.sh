#!/usr/bin/env bash
# start.sh - bring up a REAL SLURM cluster (slurmctld + slurmd + slurmdbd/MariaDB
# accounting + munge) on this machine, without systemd: node $(hostname -s) and, for
# multi-node jobs, a second node "<host>2" whose slurmd runs in its own network
# namespace (own address, over a veth pair) and UTS namespace (own hostname).
#
# Tested on Debian 12 (bookworm), as root, 2 cores / 24 GiB, no GPU:
#   slurm-wlm 22.05.8-4+deb12u3, munge 0.5.15, mariadb 10.11, submitit 1.5.4.
#
# Idempotent: daemons already running (checked through their pid files) are left
# alone; configs are rewritten only when their content changes (then the slurm
# daemons concerned are restarted; jobs and state survive). It returns once the
# node has registered and `sinfo` shows it usable (idle, or mixed/allocated when
# jobs are already running).
#
# Knobs (environment variables):
#   SLURM_CLUSTER_NAME   cluster name               (default: alignkit)
#   SLURM_PARTITION      default partition name     (default: debug)
#   SLURM_NODE_CPUS      CPUs advertised by the node (default: 8). May be
#                        larger than nproc: SlurmdParameters=config_overrides
#                        makes slurmd accept it, so more small jobs run at once.
#   SLURM_NODE_MEM_MB    memory advertised when SLURM_NODE_CPUS > nproc (default 256 GiB;
#                        otherwise 90 % of RAM). Not enforced: no cgroups.
#   SLURM_FAKE_GPUS      fake gres/gpu count on the node, 0 = none (default: 4)
#   SLURM_CRED_EXPIRE    seconds a requeued job waits before it may run again
#                        (default 120 in SLURM; here: 10)
#   SLURM_PREEMPT_PARTITION  high-priority partition whose jobs preempt (requeue)
#                        jobs of the default one; "" = no preemption (default: urgent)
#   SLURM_PREEMPT_GRACE  seconds between the preemption signal and the kill (20)
#   SLURM_CGROUP_PLUGIN  cgroup.conf CgroupPlugin (default cgroup/v1, see below)
#   SLURM_MAX_ARRAY_SIZE MaxArraySize (default 101: arrays of at most 101 tasks, as on many
#                        production clusters, so every test exercises alignkit's array chunks)
#   SLURM_SMALL_QOS      a QOS with MaxSubmitJobsPerUser=$SLURM_SMALL_QOS_MAX_SUBMIT (default
#                        "small", 150); "" = none. Limits are enforced (AccountingStorageEnforce).
#   SLURM_SECOND_NODE    name of the second node ("" = single node, the old setup;
#                        default: <host>2). It is only in partition $SLURM_MULTI_PARTITION,
#                        so single-node jobs (debug, urgent) never land on it.
#   SLURM_MULTI_PARTITION partition of both nodes, for multi-node jobs (default: multinode)
#   SLURM_NODE_NET       /24 prefix of the node addresses (default 10.213.0): the first node is
#                        .1 (on lo, so it never vanishes), the second .2 (in netns alignkit-<name>)
#   SLURM_NO_INSTALL=1   never run apt-get (fail if packages are missing)
#
# Stop with stop.sh (kills only the PIDs in the pid files written here).
set -euo pipefail

CLUSTER=${SLURM_CLUSTER_NAME:-alignkit}
PARTITION=${SLURM_PARTITION:-debug}
NCPUS=${SLURM_NODE_CPUS:-8}   # > nproc: small test jobs run side by side
NGPUS=${SLURM_FAKE_GPUS:-4}
CRED_EXPIRE=${SLURM_CRED_EXPIRE:-10}
URGENT=${SLURM_PREEMPT_PARTITION-urgent}  # set empty to disable preemption
GRACE_S=${SLURM_PREEMPT_GRACE:-20}
MAX_ARRAY=${SLURM_MAX_ARRAY_SIZE:-101}
SMALL_QOS=${SLURM_SMALL_QOS-small}
SMALL_QOS_MAX_SUBMIT=${SLURM_SMALL_QOS_MAX_SUBMIT:-150}
DBPASS=slurmtestpass                   # local test DB only, socket-only MariaDB
NODE=$(hostname -s)
NODE2=${SLURM_SECOND_NODE-${NODE}2}
MULTI=${SLURM_MULTI_PARTITION:-multinode}
NET=${SLURM_NODE_NET:-10.213.0}
NETNS=alignkit-$NODE2
ETC=/etc/slurm
LOG=/var/log/slurm
RUN=/run/slurm                         # pid files of the slurm daemons
STATE=/var/lib/slurm

log() { printf '[dev-cluster start %(%H:%M:%S)T] %s\n' -1 "$*"; }
die() { log "ERROR: $*"; exit 1; }
T0=$(date +%s)

# ---------------------------------------------------------------- packages ---
PKGS=(slurmctld slurmd slurmdbd slurm-client munge mariadb-server iproute2 util-linux)
if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null \
   || ! command -v munged >/dev/null || ! command -v mariadbd >/dev/null \
   || ! command -v sbatch >/dev/null || ! command -v ip >/dev/null || ! command -v unshare >/dev/null; then
  [ "${SLURM_NO_INSTALL:-0}" = 1 ] && die "SLURM packages missing: ${PKGS[*]}"
  log "installing ${PKGS[*]} (apt, --no-install-recommends)"
  # No systemd here: make sure postinst does not start daemons through
  # /etc/init.d (we start them ourselves and track their PIDs).
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d; added_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
  if [ "$added_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

# Node name must resolve; slurmd/slurmctld compare it with `hostname -s`.
getent hosts "$NODE" >/dev/null || echo "127.0.0.1 $NODE" >> /etc/hosts

# ------------------------------------------------------ second node's network --
# Node 1 gets $NET.1 on lo (any local address answers; it survives a lost netns), node 2
# $NET.2 in netns $NETNS, joined by the veth pair ak0 (here) / ak1 (there) with host routes.
# Both names must resolve to these addresses on both sides: gloo binds the address its
# hostname resolves to (127.0.0.1 is unreachable from the other node), and MASTER_ADDR is the
# first node's name. /etc/hosts here gets "$NET.1 $NODE" ahead of the 127.0.0.1 line;
# `ip netns exec` bind-mounts /etc/netns/$NETNS/hosts over /etc/hosts for node 2.
CTL_ADDR=127.0.0.1
if [ -n "$NODE2" ]; then
  CTL_ADDR=$NET.1
  # `replace`, not `add`: idempotent whatever state a previous run or a restored machine left
  ip addr replace "$NET.1/32" dev lo
  [ -e "/run/netns/$NETNS" ] || ip netns add "$NETNS" \
    || die "cannot create network namespace $NETNS (root + iproute2 needed; SLURM_SECOND_NODE= for one node)"
  ip link show ak0 >/dev/null 2>&1 || ip link add ak0 type veth peer name ak1 netns "$NETNS"
  ip link set ak0 up
  ip route replace "$NET.2/32" dev ak0 src "$NET.1"
  ip netns exec "$NETNS" sh -ec "
    ip link set lo up; ip link set ak1 up
    ip addr replace $NET.2/32 dev ak1
    ip route replace $NET.1/32 dev ak1 src $NET.2"
  # hosts_first ADDR NAME: make "ADDR NAME" the first /etc/hosts line naming NAME
  hosts_first() {
    [ "$(getent hosts "$2" | awk '{print $1; exit}')" = "$1" ] && return 0
    local tmp; tmp=$(mktemp)
    { echo "$1 $2"; grep -vxF "$1 $2" /etc/hosts || true; } > "$tmp"
    cat "$tmp" > /etc/hosts; rm -f "$tmp"   # rewritten in place: /etc/hosts may be a bind mount
  }
  hosts_first "$NET.1" "$NODE"
  hosts_first "$NET.2" "$NODE2"
  mkdir -p "/etc/netns/$NETNS"
  printf '127.0.0.1 localhost\n%s %s\n%s %s\n' "$NET.1" "$NODE" "$NET.2" "$NODE2" > "/etc/netns/$NETNS/hosts"
elif grep -q "^$NET\.[12] " /etc/hosts; then   # back to one node: $NODE resolves as before
  tmp=$(mktemp); grep -v "^$NET\.[12] " /etc/hosts > "$tmp" || true; cat "$tmp" > /etc/hosts; rm -f "$tmp"
fi

# -------------------------------------------------------------- helpers ------
# alive PIDFILE COMM : true if the pid in PIDFILE runs a process named COMM
# (a killed daemon can linger as a zombie until PID 1 reaps it: not alive)
alive() {
  local pf=$1 comm=$2 pid
  [ -s "$pf" ] || return 1
  pid=$(tr -dc '0-9' < "$pf")
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat /proc/$pid/comm 2>/dev/null)" = "$comm" ] \
    && [ "$(awk '{print $3}' /proc/$pid/stat 2>/dev/null)" != Z ]
}
# stop_pid PIDFILE COMM : TERM a daemon of ours (config changed), wait for it
stop_pid() {
  local pf=$1 comm=$2 pid i
  alive "$pf" "$comm" || return 0
  pid=$(tr -dc '0-9' < "$pf")
  log "restarting $comm (pid $pid): its config changed"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do alive "$pf" "$comm" || break; sleep 0.3; done
  if alive "$pf" "$comm"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
  rm -f "$pf"
}
# wait_for SECONDS DESCRIPTION CMD... : poll CMD every 0.5 s
wait_for() {
  local t=$1 what=$2; shift 2
  local end=$(( $(date +%s) + t ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$end" ] && die "timed out after ${t}s waiting for $what"
    sleep 0.5
  done
}
# write_if_changed FILE MODE OWNER < content ; returns 0 if the file changed
write_if_changed() {
  local f=$1 mode=$2 owner=$3 tmp
  tmp=$(mktemp)
  cat > "$tmp"
  if [ -f "$f" ] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; return 1; fi
  install -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$tmp" "$f"
  rm -f "$tmp"; return 0
}

mkdir -p "$ETC" "$LOG" "$RUN" "$STATE/slurmctld" "$STATE/slurmd"
chown slurm:slurm "$LOG" "$RUN" "$STATE" "$STATE/slurmctld"
chown root:root "$STATE/slurmd"    # slurmd runs as root
# node 2's slurmd sees these at $RUN and $STATE/slurmd (bind mounts): its own pid file and spool
RUN2=$RUN/$NODE2; SPOOL2=$STATE/slurmd-$NODE2
if [ -n "$NODE2" ]; then mkdir -p "$RUN2" "$SPOOL2"; fi

# ------------------------------------------------------------------ munge ----
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge /etc/munge
if [ ! -s /etc/munge/munge.key ]; then
  log "creating munge key"
  if command -v mungekey >/dev/null; then mungekey --create --force
  else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
fi
chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
if alive /run/munge/munged.pid munged; then
  log "munged already running (pid $(cat /run/munge/munged.pid))"
else
  log "starting munged"
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged          # forks into the background
fi
wait_for 20 munge sh -c 'munge -n | unmunge'

# ---------------------------------------------------------------- MariaDB ----
MYPID=/run/mysqld/mysqld.pid
install -d -o mysql -g mysql -m 0755 /run/mysqld
install -d -o mysql -g adm -m 2750 /var/log/mysql
if [ ! -d /var/lib/mysql/mysql ]; then
  log "initialising MariaDB datadir"
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
fi
if alive "$MYPID" mariadbd; then
  log "mariadbd already running (pid $(cat $MYPID))"
else
  log "starting mariadbd (unix socket only, no TCP port)"
  rm -f "$MYPID"
  setsid /usr/sbin/mariadbd --user=mysql --pid-file="$MYPID" \
      --socket=/run/mysqld/mysqld.sock --skip-networking \
      --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900 \
      --log-error=/var/log/mysql/error.log \
      </dev/null >/dev/null 2>&1 &
fi
wait_for 60 "MariaDB" mariadb-admin --protocol=socket ping
mariadb --protocol=socket <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL

# ---------------------------------------------------------------- configs ----
MEM_MB=$(awk '/MemTotal/ {printf "%d", $2/1024*0.9}' /proc/meminfo)   # 90 % of RAM
NPROC=$(nproc)
OVERRIDE=""
if [ "$NCPUS" -gt "$NPROC" ]; then
  OVERRIDE="SlurmdParameters=config_overrides"; TOPO="CPUs=$NCPUS"
  # with config_overrides the node may also advertise more memory than it has (nothing is
  # enforced without cgroups): real studies ask 64-96 GB per job and must queue here too
  MEM_MB=${SLURM_NODE_MEM_MB:-262144}
else
  # the real topology, as slurmd detects it (else slurmd logs a mismatch)
  TOPO=$(slurmd -C | head -1 | grep -o 'CPUs=.* ThreadsPerCore=[0-9]*')
fi
GRES_NODE=""; GRESTYPES=""
if [ "$NGPUS" -gt 0 ]; then GRES_NODE="Gres=gpu:$NGPUS"; GRESTYPES="GresTypes=gpu"; fi

# Real preemption: jobs of partition $URGENT preempt (requeue) jobs of the
# default partition; with preempt_send_user_signal they first get their --signal (USR2
# for submitit), then GraceTime seconds later SIGTERM/SIGKILL and a requeue.
PREEMPT_CONF=""; GRACE=""; URGENT_PART=""
if [ -n "$URGENT" ]; then
  PREEMPT_CONF="PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal"
  GRACE="GraceTime=$GRACE_S"
  URGENT_PART="PartitionName=$URGENT Nodes=$NODE MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF"
fi

# The second node: same CPUs/memory, no GPUs, only in partition $MULTI (with the first node),
# so single-node jobs of $PARTITION/$URGENT never land on it. Its jobs are preempted like theirs.
NODE2_LINE=""; MULTI_PART=""
if [ -n "$NODE2" ]; then
  NODE2_LINE="NodeName=$NODE2 NodeAddr=$NET.2 $TOPO RealMemory=$MEM_MB State=UNKNOWN"
  MULTI_PART="PartitionName=$MULTI Nodes=$NODE,$NODE2 MaxTime=INFINITE State=UP PriorityTier=1 $GRACE"
fi

changed=0
write_if_changed "$ETC/slurm.conf" 0644 root:root <<EOF && changed=1 || true
# generated by alignkit slurm/dev-cluster/start.sh - test cluster (see its header), no systemd/cgroups
ClusterName=$CLUSTER
SlurmctldHost=$NODE($CTL_ADDR)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=$CRED_EXPIRE
MpiDefault=none
# no systemd, no cgroup delegation: track processes through /proc
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
$OVERRIDE
ReturnToService=2
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldPort=6817
SlurmdPort=6818
# scheduling: FIFO + backfill, short intervals so tests do not wait
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1,defer_batch
PriorityType=priority/basic
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=512
MaxArraySize=$MAX_ARRAY
MaxJobCount=100000
MinJobAge=300
KillWait=5
OverTimeLimit=0
InactiveLimit=0
Waittime=0
# accounting: sacct (used by submitit to poll job states) needs slurmdbd
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$CTL_ADDR
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu
# association and QOS limits (MaxSubmitJobs...) are enforced, as on production clusters
AccountingStorageEnforce=associations,limits,qos
JobCompType=jobcomp/none
$GRESTYPES
NodeName=$NODE NodeAddr=$CTL_ADDR $TOPO RealMemory=$MEM_MB $GRES_NODE State=UNKNOWN
$NODE2_LINE
$PREEMPT_CONF
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP PriorityTier=1 $GRACE
$MULTI_PART
$URGENT_PART
EOF

if [ "$NGPUS" -gt 0 ]; then
  # Fake GPUs. gres/gpu drops File-less entries ("Removing file-less GPU") and
  # rejects regular files ("not a valid character or block device"), so each
  # fake GPU is a symlink to /dev/null. Jobs asking --gres=gpu:N are scheduled
  # and get CUDA_VISIBLE_DEVICES=0..N-1; nothing real is behind it.
  mkdir -p "$STATE/fakegpu"
  for i in $(seq 0 $((NGPUS - 1))); do ln -sfn /dev/null "$STATE/fakegpu/nvidia$i"; done
  write_if_changed "$ETC/gres.conf" 0644 root:root <<EOF && changed=1 || true
AutoDetect=off
NodeName=$NODE Name=gpu File=$STATE/fakegpu/nvidia[0-$((NGPUS - 1))]
EOF
else
  if [ -e "$ETC/gres.conf" ]; then rm -f "$ETC/gres.conf"; changed=1; fi
fi

# slurmd 22.05 always loads a cgroup plugin, even with proctrack/linuxproc +
# task/none. CgroupPlugin=autodetect picks cgroup/v2 wherever /sys/fs/cgroup is
# cgroup2 and then dies without systemd/a writable hierarchy (seen here: "fatal:
# Hybrid mode is not supported"). cgroup/v1 loads and stays idle: slurmd and
# jobs worked with /sys/fs/cgroup as read-only cgroup2 and as an empty tmpfs.
write_if_changed "$ETC/cgroup.conf" 0644 root:root <<EOF && changed=1 || true
CgroupPlugin=${SLURM_CGROUP_PLUGIN:-cgroup/v1}
IgnoreSystemd=yes
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF

dbd_changed=0
write_if_changed "$ETC/slurmdbd.conf" 0600 slurm:slurm <<EOF && dbd_changed=1 || true
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=slurm
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
EOF

# ---------------------------------------------------------------- slurmdbd ---
# A changed config means a restart (state survives: jobs keep running under
# slurmstepd, slurmctld reloads its StateSaveLocation). `scontrol reconfigure`
# is not enough for node CPU/GRES changes in 22.05.
if [ "$dbd_changed" = 1 ]; then stop_pid "$RUN/slurmdbd.pid" slurmdbd; fi
if [ "$changed" = 1 ]; then
  stop_pid "$RUN/slurmd.pid" slurmd
  for pf in "$RUN"/*/slurmd.pid; do [ -e "$pf" ] && stop_pid "$pf" slurmd; done  # a second node's
  stop_pid "$RUN/slurmctld.pid" slurmctld
fi
if alive "$RUN/slurmdbd.pid" slurmdbd; then
  log "slurmdbd already running (pid $(cat $RUN/slurmdbd.pid))"
else
  log "starting slurmdbd"
  rm -f "$RUN/slurmdbd.pid"
  slurmdbd                                     # daemonizes, drops to SlurmUser
fi
wait_for 60 "slurmdbd" sacctmgr -n list cluster
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
  log "registering cluster $CLUSTER in the accounting DB"
  sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi

# A QOS with a small per-user submit limit (tests of alignkit's submit waves use it with
# --qos); the user running this script may use it. Idempotent.
if [ -n "$SMALL_QOS" ]; then
  if ! sacctmgr -n -P show qos format=name | grep -qx "$SMALL_QOS"; then
    log "adding QOS $SMALL_QOS (MaxSubmitJobsPerUser=$SMALL_QOS_MAX_SUBMIT)"
    sacctmgr -i add qos "$SMALL_QOS" >/dev/null
  fi
  sacctmgr -i modify qos where name="$SMALL_QOS" set MaxSubmitJobsPerUser="$SMALL_QOS_MAX_SUBMIT" >/dev/null || true
  ME=$(id -un)
  if ! sacctmgr -n -P show assoc where cluster="$CLUSTER" user="$ME" format=user | grep -qx "$ME"; then
    sacctmgr -i add user "$ME" account=root cluster="$CLUSTER" >/dev/null
  fi
  if ! sacctmgr -n -P show assoc where cluster="$CLUSTER" user="$ME" format=qos | tr ',' '\n' | grep -qx "$SMALL_QOS"; then
    sacctmgr -i modify user where name="$ME" cluster="$CLUSTER" set qos+="$SMALL_QOS" >/dev/null
  fi
fi

# --------------------------------------------------------- slurmctld/slurmd --
# slurmctld refuses to start when ClusterName differs from the one saved in
# its state: a renamed test cluster starts from empty state.
if [ -s "$STATE/slurmctld/clustername" ] && ! grep -qx "$CLUSTER" "$STATE/slurmctld/clustername" \
   && ! alive "$RUN/slurmctld.pid" slurmctld; then
  log "ClusterName changed: clearing $STATE/slurmctld"
  rm -rf "${STATE:?}/slurmctld/"*
fi
if alive "$RUN/slurmctld.pid" slurmctld; then
  log "slurmctld already running (pid $(cat $RUN/slurmctld.pid))"
else
  log "starting slurmctld"
  rm -f "$RUN/slurmctld.pid"
  slurmctld                                    # daemonizes
fi
wait_for 60 "slurmctld" scontrol ping
if alive "$RUN/slurmd.pid" slurmd; then
  log "slurmd already running (pid $(cat $RUN/slurmd.pid))"
else
  log "starting slurmd"
  rm -f "$RUN/slurmd.pid"
  slurmd_started=$(date +%s)
  slurmd                                       # daemonizes, as root
fi

# Node 2: slurmd in the netns (own address) + a UTS namespace (hostname $NODE2); `ip netns exec`
# gives it a private mount namespace, where its pid file and spool are bind-mounted over the
# first node's paths (slurmd has no option for them). Its jobs see the same files otherwise.
declare -A started=()
if [ -n "${slurmd_started:-}" ]; then started[$NODE]=$slurmd_started; fi
if [ -n "$NODE2" ]; then
  if alive "$RUN2/slurmd.pid" slurmd; then
    log "slurmd of $NODE2 already running (pid $(cat "$RUN2/slurmd.pid"))"
  else
    log "starting slurmd of $NODE2 ($NET.2, netns $NETNS)"
    rm -f "$RUN2/slurmd.pid"
    started[$NODE2]=$(date +%s)
    ip netns exec "$NETNS" unshare --uts sh -ec "
      hostname '$NODE2'
      mount --bind '$RUN2' '$RUN'
      mount --bind '$SPOOL2' '$STATE/slurmd'
      exec slurmd -N '$NODE2' -L '$LOG/slurmd-$NODE2.log'"
  fi
fi

# ------------------------------------------------------- wait for the nodes --
# registered NODE : the running slurmd has registered (slurmctld may still show
# the node state saved before a restart)
registered() {
  local since=${started[$1]:-} t
  [ -z "$since" ] && return 0
  t=$(scontrol show node "$1" -o 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2)
  [ -n "$t" ] && [ "$t" != None ] && [ "$(date -d "$t" +%s)" -ge $(( since - 1 )) ]
}
for node in "$NODE" $NODE2; do
  log "waiting for node $node to become usable"
  end=$(( $(date +%s) + 90 )); resumed=0
  while :; do
    st=$(sinfo -h -N -n "$node" -o '%T' 2>/dev/null | head -1 || true)
    registered "$node" || st="unregistered:$st"
    case "$st" in
      idle|mixed|allocated|completing) break ;;
      drained|draining|down*|drain*|fail*)
        if [ "$resumed" = 0 ] && [ "$(date +%s)" -gt $(( end - 80 )) ]; then
          log "node $node state '$st' -> scontrol update state=resume"
          scontrol update nodename="$node" state=resume || true; resumed=1
        fi ;;
    esac
    if [ "$(date +%s)" -ge "$end" ]; then
      sinfo -N -l; sinfo -R; die "node $node never became idle (state '$st'), see $LOG/"
    fi
    sleep 0.5
  done
  log "node $node is $st"
done
log "cluster $CLUSTER up in $(( $(date +%s) - T0 ))s"
sinfo
