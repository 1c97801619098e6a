#!/usr/bin/env bash
# Boot a single-node SLURM cluster on this machine for the tests (root only):
# munged as user munge, then slurmctld and slurmd with a minimal slurm.conf.
# The config goes to /etc/slurm/slurm.conf because jobs' own srun calls find it
# only there (Snakemake's job step clears SLURM_* variables, SLURM_CONF too).
# Usage: boot.sh STATE_DIR    (stop with: boot.sh --stop STATE_DIR)
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
conf=/etc/slurm/slurm.conf
marker="# written by softloss tests/slurm/boot.sh"
if [ "$1" = "--stop" ]; then
    dir=$2
    for pid in "$dir"/slurmd.pid "$dir"/slurmctld.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true; done
    grep -qF "$marker" "$conf" 2>/dev/null && rm -f "$conf"
    exit 0
fi
dir=$1
host=$(hostname -s)
if [ -f "$conf" ] && ! grep -qF "$marker" "$conf"; then
    echo "refusing: $conf exists and is not ours (a real SLURM installation?)" >&2
    exit 3
fi
if [ -f "$conf" ]; then  # ours, left by a run that did not stop its daemons: stop them
    pkill -x slurmd || true
    pkill -x slurmctld || true
    sleep 1
fi
mkdir -p "$dir"/{state,spool,log} /run/munge /etc/slurm
chown munge:munge /etc/munge/munge.key /run/munge
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
cat > "$conf" <<CONF
$marker
ClusterName=softloss
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=$host CPUs=$(nproc) RealMemory=8000 State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld
slurmd
for _ in $(seq 100); do
    sinfo -h -o %T 2>/dev/null | grep -q idle && exit 0
    sleep 0.2
done
echo "slurm did not come up; see $dir/log" >&2
exit 4
