#!/usr/bin/env bash
# A real Slurm cluster on this machine, for alignkit's Slurm tests and for trying `alignkit slurm`.
#
#   scripts/local-slurm.sh start [--nodes 1|2]   install if missing, configure, start, wait until idle
#   scripts/local-slurm.sh stop                  stop only the daemons this script started
#   scripts/local-slurm.sh status                print the daemons and `sinfo`; exit 0 when up, 3 when down
#   scripts/local-slurm.sh env                   print the SLURM_CONF export line
#
# One controller (slurmctld) and one or two node daemons (slurmd) on localhost, authenticated by munge.
# With --nodes 2 the two slurmd are node1 and node2 on the same host (ports 17001-17002), so a
# "multi-node" job really runs one task per node daemon. Everything (config, state, spool, logs, pid
# files, the jobcomp file) lives under $ALIGNKIT_SLURM_DIR (default /tmp/alignkit-slurm).
# Needs root (slurmd runs jobs as their user) and Debian's slurm packages (installed when missing).
# Idempotent: `start` on a running cluster with the same node count does nothing; with another node
# count it restarts the daemons it owns.
set -euo pipefail

DIR="${ALIGNKIT_SLURM_DIR:-/tmp/alignkit-slurm}"
CONF="$DIR/slurm.conf"
RUN="$DIR/run"
LOG="$DIR/log"
CTLD_PORT="${ALIGNKIT_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${ALIGNKIT_SLURM_SLURMD_PORT:-6818}"
NODE_PORT_BASE=17000 # node K listens on 17000+K when there are several nodes
FAKE_GPUS=2          # stand-in GPU GRES per node (see gres.conf below), so --gpus-per-node is accepted

die() { echo "local-slurm: error: $*" >&2; exit 1; }
say() { echo "local-slurm: $*"; }

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

# ---------------------------------------------------------------- process helpers
# A pid is alive when /proc has it, it is not a zombie (PID 1 here reaps slowly, so a dead daemon
# lingers as state Z and still answers `kill -0`), and its command name is the one we expect
# (guards against pid reuse).
alive() {
    local pid="$1" want="$2" stat state comm
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    state="${stat##*) }"
    state="${state%% *}"
    [[ "$state" != Z && "$state" != X ]] || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    [[ "$comm" == "$want"* ]]
}

pid_from() { [[ -f "$1" ]] && tr -dc '0-9' <"$1" || true; }

# stop_pid PIDFILE NAME: TERM, wait up to 10 s, then KILL; only if the pid is the daemon we expect.
stop_pid() {
    local file="$1" name="$2" pid i
    pid="$(pid_from "$file")"
    if [[ -n "$pid" ]] && alive "$pid" "$name"; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do
            alive "$pid" "$name" || break
            sleep 0.2
        done
        if alive "$pid" "$name"; then
            say "$name ($pid) ignored TERM; killing"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "stopped $name ($pid)"
    fi
    rm -f "$file"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- install
install_if_missing() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null && command -v munge >/dev/null; then
        return 0
    fi
    [[ $EUID -eq 0 ]] || die "Slurm is not installed and installing needs root (apt-get)"
    command -v apt-get >/dev/null || die "Slurm is not installed and this is not a Debian/Ubuntu system (no apt-get)"
    say "installing slurmctld slurmd slurm-client munge (apt-get)"
    local pkgs=(slurmctld slurmd slurm-client munge)
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >"$DIR/apt.log" 2>&1; then
        say "apt-get install failed; running apt-get update first"
        apt-get update -qq >>"$DIR/apt.log" 2>&1 || die "apt-get update failed (see $DIR/apt.log)"
        apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >>"$DIR/apt.log" 2>&1 \
            || die "apt-get install ${pkgs[*]} failed (see $DIR/apt.log)"
    fi
}

# ---------------------------------------------------------------- munge
munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_works; then
        if alive "$(pid_from "$RUN/munged.pid")" munged; then
            say "munged already running (ours)"
        else
            say "munged already running (not started by this script; left alone)"
        fi
        return 0
    fi
    rm -f "$RUN/munged.pid"
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        say "creating /etc/munge/munge.key"
        if command -v mungekey >/dev/null; then
            runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
            chown munge:munge /etc/munge/munge.key
        fi
        chmod 0400 /etc/munge/munge.key
    fi
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid --force
    local i
    for i in $(seq 1 50); do
        munge_works && break
        sleep 0.1
    done
    munge_works || die "munged did not start (see /var/log/munge/munged.log)"
    cp /run/munge/munged.pid "$RUN/munged.pid"
    say "started munged ($(pid_from "$RUN/munged.pid"))"
}

# ---------------------------------------------------------------- config
node_names() {
    local n="$1" k
    if [[ "$n" -eq 1 ]]; then echo localhost; else for k in $(seq 1 "$n"); do echo "node$k"; done; fi
}

write_conf() {
    local n="$1" dest="${2:-$CONF}" hw cpus mem first_id
    hw="$(slurmd -C 2>/dev/null | head -n1)"
    cpus="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")"
    mem="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")"
    [[ -n "$cpus" && -n "$mem" ]] || die "could not read CPUs/RealMemory from 'slurmd -C': $hw"
    # job ids continue across restarts (state is cleared on start), so an old jobcomp line never
    # carries the id of a new job
    first_id=1
    if [[ -f "$LOG/jobcomp.txt" ]]; then
        first_id=$(( $(sed -n 's/^JobId=\([0-9]*\) .*/\1/p' "$LOG/jobcomp.txt" | sort -n | tail -n1 || echo 0) + 1 ))
    fi
    if [[ -f "$DIR/last-job-id" ]]; then
        local last
        last="$(pid_from "$DIR/last-job-id")"
        [[ -n "$last" && "$last" -ge "$first_id" ]] && first_id=$((last + 1))
    fi
    local nodeline
    if [[ "$n" -eq 1 ]]; then
        nodeline="NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:$FAKE_GPUS State=UNKNOWN"
    else
        nodeline="NodeName=node[1-$n] NodeHostname=localhost NodeAddr=127.0.0.1 Port=[$((NODE_PORT_BASE + 1))-$((NODE_PORT_BASE + n))] CPUs=$cpus RealMemory=$mem Gres=gpu:$FAKE_GPUS State=UNKNOWN"
    fi
    # stand-in "GPUs" so jobs may ask for --gpus-per-node as on a GPU cluster: Slurm's gpu GRES needs
    # device files, /dev/null and /dev/zero serve (task/none binds nothing; the processes run on the CPU)
    printf '%s\n' "# written by scripts/local-slurm.sh (alignkit): $FAKE_GPUS stand-in GPUs per node" \
        "Name=gpu File=/dev/null,/dev/zero" >"$(dirname "$dest")/gres.conf"
    cat >"$dest.tmp" <<EOF
# written by scripts/local-slurm.sh (alignkit); $n node(s) on this host
ClusterName=alignkit
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
# a requeued job waits cred_expire+1 s before it may start again (default 120 s); short here so the
# preemption tests take seconds
AuthInfo=cred_expire=10
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
# no systemd and no cgroups here: cgroup plugins make every job fail and drain the node
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
GresTypes=gpu
EnforcePartLimits=ALL
# scheduling passes every few seconds (defaults 60 s and 30 s) so requeued jobs restart promptly
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2
SchedulerType=sched/backfill
MailProg=/bin/true
ReturnToService=2
SlurmctldTimeout=120
SlurmdTimeout=120
InactiveLimit=0
KillWait=15
MinJobAge=600
FirstJobId=$first_id
$nodeline
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    mv -f "$dest.tmp" "$dest"
}

# true when the running cluster's config is what this script writes now (an older script's config,
# or other hardware, means a restart)
conf_current() {
    local n="$1"
    write_conf "$n" "$DIR/slurm.conf.want"
    diff -q <(grep -v '^FirstJobId=' "$CONF" 2>/dev/null) <(grep -v '^FirstJobId=' "$DIR/slurm.conf.want") >/dev/null
    local rc=$?
    rm -f "$DIR/slurm.conf.want"
    return $rc
}

# ---------------------------------------------------------------- start / stop / status
ours_running() {
    # prints nothing; true when the controller and every node daemon we recorded are alive
    [[ -f "$DIR/nodes" ]] || return 1
    alive "$(pid_from "$RUN/slurmctld.pid")" slurmctld || return 1
    local name
    for name in $(node_names "$(cat "$DIR/nodes")"); do
        alive "$(pid_from "$RUN/slurmd-$name.pid")" slurmd || return 1
    done
}

# every node answers and takes jobs (idle, allocated or mixed; not down, drained or invalid)
nodes_usable() {
    local states
    states="$(SLURM_CONF="$CONF" sinfo -h -N -o '%T' 2>/dev/null)" || return 1
    [[ -n "$states" ]] || return 1
    ! grep -qvE '^(idle|allocated|mixed|completing)$' <<<"$states"
}

epoch_of() { date -d "$1" +%s 2>/dev/null || echo 0; }

wait_ready() {
    local n="$1" since="$2" deadline name info start_time state ok
    deadline=$((SECONDS + 60))
    while :; do
        ok=1
        for name in $(node_names "$n"); do
            info="$(SLURM_CONF="$CONF" scontrol -o show node "$name" 2>/dev/null)" || { ok=0; break; }
            state="$(sed -n 's/.* State=\([^ ]*\).*/\1/p' <<<"$info")"
            start_time="$(sed -n 's/.* SlurmdStartTime=\([^ ]*\).*/\1/p' <<<"$info")"
            # the controller may call a node idle before the slurmd we just started registered:
            # require that slurmd's start time to be the new one
            if [[ "$state" != IDLE* ]] || (( $(epoch_of "$start_time") < since )); then ok=0; break; fi
        done
        [[ $ok -eq 1 ]] && return 0
        if (( SECONDS > deadline )); then
            SLURM_CONF="$CONF" sinfo -N -l >&2 || true
            die "nodes not idle after 60 s (logs in $LOG)"
        fi
        sleep 0.3
    done
}

do_start() {
    local n="$1"
    [[ "$n" =~ ^[12]$ ]] || die "--nodes must be 1 or 2, got '$n'"
    mkdir -p "$DIR" "$RUN" "$LOG" "$DIR/state"
    chmod 0755 "$DIR" "$LOG"
    install_if_missing
    [[ $EUID -eq 0 ]] || die "starting Slurm daemons needs root"
    if ours_running; then
        if [[ "$(cat "$DIR/nodes")" != "$n" ]]; then
            say "running with $(cat "$DIR/nodes") node(s); restarting with $n"
        elif ! conf_current "$n"; then
            say "running with an older configuration; restarting"
        elif nodes_usable; then
            say "already running with $n node(s)"
            print_env
            return 0
        fi
    fi
    stop_daemons
    start_munge
    port_busy "$CTLD_PORT" && die "port $CTLD_PORT is in use by another program (another slurmctld?); set ALIGNKIT_SLURM_CTLD_PORT"
    write_conf "$n"
    echo "$n" >"$DIR/nodes"
    local since name k
    since=$(date +%s)
    # -c: start from a clean state (the previous cluster's jobs are gone with its daemons)
    SLURM_CONF="$CONF" slurmctld -c -f "$CONF" || die "slurmctld failed to start (see $LOG/slurmctld.log)"
    k=0
    for name in $(node_names "$n"); do
        k=$((k + 1))
        mkdir -p "$DIR/spool/$name"
        SLURM_CONF="$CONF" slurmd -f "$CONF" -N "$name" || die "slurmd -N $name failed to start (see $LOG/slurmd-$name.log)"
    done
    wait_ready "$n" "$since"
    alive "$(pid_from "$RUN/slurmctld.pid")" slurmctld || die "slurmctld died (see $LOG/slurmctld.log)"
    # a real job on every node proves the whole path (munge, controller, node daemons, job launch)
    if ! SLURM_CONF="$CONF" timeout 60 srun --quiet -N "$n" --ntasks-per-node=1 --time=1 true 2>"$DIR/smoke.err"; then
        cat "$DIR/smoke.err" >&2
        die "smoke job failed (logs in $LOG)"
    fi
    say "up: $n node(s) ($(node_names "$n" | paste -sd, -)), controller on localhost:$CTLD_PORT, state in $DIR"
    print_env
}

stop_daemons() {
    local name f
    # jobs first: their processes belong to our node daemons
    if alive "$(pid_from "$RUN/slurmctld.pid")" slurmctld; then
        local jobs
        jobs="$(SLURM_CONF="$CONF" squeue -h -o %i 2>/dev/null || true)"
        if [[ -n "$jobs" ]]; then
            say "cancelling jobs: $(echo $jobs)"
            SLURM_CONF="$CONF" scancel $jobs 2>/dev/null || true
            local i
            for i in $(seq 1 50); do
                [[ -z "$(SLURM_CONF="$CONF" squeue -h -o %i 2>/dev/null)" ]] && break
                sleep 0.2
            done
        fi
        # remember where job ids got to, so the next cluster does not reuse them
        SLURM_CONF="$CONF" scontrol show config 2>/dev/null | sed -n 's/^NEXT_JOB_ID *= *\([0-9]*\).*/\1/p' \
            | awk '{print $1 - 1}' >"$DIR/last-job-id.tmp" && mv -f "$DIR/last-job-id.tmp" "$DIR/last-job-id" || true
    fi
    for f in "$RUN"/slurmd-*.pid; do
        [[ -e "$f" ]] || continue
        stop_pid "$f" slurmd
    done
    stop_pid "$RUN/slurmctld.pid" slurmctld
}

do_stop() {
    [[ -d "$DIR" ]] || { say "nothing to stop ($DIR does not exist)"; return 0; }
    stop_daemons
    if [[ -f "$RUN/munged.pid" ]]; then
        stop_pid "$RUN/munged.pid" munged
    fi
    rm -f "$DIR/nodes"
    say "stopped"
}

do_status() {
    local up=0 name n
    if [[ -f "$DIR/nodes" ]]; then
        n="$(cat "$DIR/nodes")"
        local p
        p="$(pid_from "$RUN/slurmctld.pid")"
        if alive "$p" slurmctld; then echo "slurmctld: running ($p)"; else echo "slurmctld: not running"; up=3; fi
        for name in $(node_names "$n"); do
            p="$(pid_from "$RUN/slurmd-$name.pid")"
            if alive "$p" slurmd; then echo "slurmd $name: running ($p)"; else echo "slurmd $name: not running"; up=3; fi
        done
        if munge_works; then echo "munge: working"; else echo "munge: not working"; up=3; fi
        if [[ $up -eq 0 ]]; then
            SLURM_CONF="$CONF" sinfo -N || up=3
            print_env
        fi
    else
        echo "not started (no $DIR/nodes)"
        up=3
    fi
    return $up
}

print_env() { echo "export SLURM_CONF=$CONF"; }

# ---------------------------------------------------------------- main
[[ $# -ge 1 ]] || usage
cmd="$1"
shift
nodes=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --nodes) [[ $# -ge 2 ]] || die "--nodes needs a value"; nodes="$2"; shift 2 ;;
        --nodes=*) nodes="${1#--nodes=}"; shift ;;
        -h|--help) usage ;;
        *) die "unknown argument '$1'" ;;
    esac
done

case "$cmd" in
    start) do_start "$nodes" ;;
    stop) do_stop ;;
    status) do_status ;;
    env) print_env ;;
    -h|--help|help) usage ;;
    *) die "unknown command '$cmd' (start|stop|status|env)" ;;
esac
