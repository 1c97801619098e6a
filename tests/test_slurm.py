"""The tiny pipeline through `snakemake --profile profiles/slurm` on a real
single-node SLURM that the test boots (Debian's slurm-wlm and munge; .ci/run
installs them). Checks that the jobs ran under SLURM and match a local run."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from repo import REPO, args

NEEDS = ["slurmctld", "slurmd", "munged", "sbatch", "squeue", "scontrol"]


def _why_not():
    search = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"  # the daemons live in sbin
    missing = [tool for tool in NEEDS if not shutil.which(tool, path=search)]
    if missing:
        return f"SLURM is not installed here (no {', '.join(missing)}; apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "booting a SLURM cluster needs root"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[test]')"
    if (
        Path("/etc/slurm/slurm.conf").exists()
        and "softloss tests" not in Path("/etc/slurm/slurm.conf").read_text()
    ):
        return "a real SLURM configuration is present; not booting a test cluster over it"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    boot = subprocess.run(
        ["bash", str(REPO / "tests/slurm/boot.sh"), str(state)], capture_output=True, text=True
    )
    assert boot.returncode == 0, boot.stderr
    yield state
    subprocess.run(["bash", str(REPO / "tests/slurm/boot.sh"), "--stop", str(state)], capture_output=True)


def test_tiny_pipeline_on_slurm_matches_local(cluster, tmp_path, make_workdir, snakemake, finished):
    workdir = make_workdir(tmp_path / "slurm")
    env = {**os.environ, "SOFTLOSS_SLURM_PARTITION": "main", "SOFTLOSS_SLURM_ACCOUNT": "unused"}
    env.pop("SLURM_CONF", None)
    result = snakemake(
        workdir,
        *args(
            "--profile {profile} --slurm-status-command squeue --slurm-no-account "
            "--slurm-init-seconds-before-status-checks 2 reports/summary.html",
            profile=REPO / "profiles/slurm",
        ),
        timeout=600,
        env=env,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    job_ids = re.findall(r"SLURM jobid (\d+)", log)
    # prepare, 4 train (each evaluating its run), aggregate, report: each a SLURM job
    assert len(job_ids) == 7
    for job_id in job_ids:
        info = subprocess.run(
            [
                shutil.which("scontrol", path=os.environ.get("PATH", "") + ":/usr/bin:/usr/sbin"),
                "show",
                "job",
                job_id,
            ],
            capture_output=True,
            text=True,
        ).stdout
        assert "JobState=COMPLETED" in info and f"WorkDir={workdir}" in info

    local = finished  # the same study, run by Snakemake's local executor
    for path in sorted(local.glob("results/test/mnist/mlp/*/seed*/metrics.json")):
        ours = json.loads((workdir / path.relative_to(local)).read_text())
        theirs = json.loads(path.read_text())
        for key in ("test_accuracy", "test_loss", "confusion_matrix", "ece"):
            assert ours[key] == theirs[key], (path, key)
