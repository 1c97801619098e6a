"""The Snakemake pipeline end to end, through its CLI, on a tiny config: about
1,000 MNIST images, one epoch, two losses. Runs in a temporary directory."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from repo import REPO, TINY, VENDOR_DIR, args

from pipeline.common import machine
from pipeline.common.errors import DataError
from pipeline.report.archive import read, verify
from pipeline.runs.rundir import read_history


def _jobs(dry_run_output):
    """{rule: count} from the job-stats table of a dry run."""
    table = dry_run_output.split("Job stats:")[-1].split("Reasons:")[0]
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)
        if m.group(1) != "total"
    }


class _TableOne(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.images = {}, []
        self._row = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-loss" in attrs:
            self._row = (attrs["data-dataset"], attrs["data-model"])
        if tag == "td" and "measured" in attrs.get("class", "") and self._row:
            self.rows[(*self._row, attrs["data-loss"])] = attrs["data-mean"]
        if tag == "img":
            self.images.append(attrs["src"])


def test_tiny_pipeline_report_matches_results(finished):
    workdir = finished
    html = (workdir / "reports" / "summary.html").read_text()
    parsed = _TableOne()
    parsed.feed(html)
    for loss in ("ce", "nllr"):
        accuracies = [
            json.loads((workdir / f"results/test/mnist/mlp/{loss}/seed{s}/metrics.json").read_text())[
                "test_accuracy"
            ]
            for s in (1, 2)
        ]
        assert float(parsed.rows[("mnist", "mlp", loss)]) == pytest.approx(
            100 * sum(accuracies) / 2, rel=1e-10
        )
    assert len(parsed.images) == 3 and all(
        src.startswith("data:image/png;base64,") for src in parsed.images
    )  # curves, confusion, why
    assert not re.search(
        r'(src|href)="https?://(?!arxiv\.org/)', html
    )  # self-contained: viewing needs no network
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    assert commit and commit in html  # provenance: the code's commit, versions, data checksums
    trained_by = re.search(r'id="run-commits"><code>([^<]*)</code> \(4 runs\)</td>', html)
    assert trained_by and trained_by.group(1).startswith(
        commit[:12]
    )  # every run, by the code of this checkout
    for key in (
        "numpy",
        "autograd",
        "snakemake",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ):
        assert key in html
    # where each run trained: these CPU jobs with NumPy, on this CPU
    where = f'<td class="name">CPU ({machine.cpu_name()}); {machine.blas_kernel()}</td><td class="name"><code>{commit[:12]}'
    assert re.search(re.escape(where) + r"[^<]*</code></td><td>4</td>", html)  # one row for the four runs
    assert (
        json.loads((workdir / "results/test/mnist/mlp/ce/seed1/status.json").read_text())["backend"]
        == "numpy"
    )
    logs = sorted(p.relative_to(workdir / "logs").as_posix() for p in (workdir / "logs").rglob("*.log"))
    assert "test/train/mnist/mlp/ce/seed1.log" in logs and "test/report.log" in logs


@pytest.mark.parametrize(
    "config", [[], ["--configfile", str(REPO / ".test/config/config.yaml")]], ids=["default", ".test"]
)
def test_lint_is_clean(config):
    result = subprocess.run(
        [
            *args(
                "{python} -m snakemake --lint -s {snakefile} -d {repo}",
                python=sys.executable,
                snakefile=REPO / "Snakefile",
                repo=REPO,
            ),
            *config,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dry_run_lists_the_jobs(tmp_path, make_workdir, snakemake):
    workdir = make_workdir(tmp_path)
    result = snakemake(workdir, "-n", "reports/summary.html")
    assert result.returncode == 0, result.stderr
    assert _jobs(result.stdout) == {
        "fetch": 4,
        "prepare": 1,
        "train": 4,
        "aggregate": 1,
        "report": 1,
        "latest_report": 1,
    }


def test_the_longest_runs_start_first(tmp_path, make_workdir, snakemake):
    """Each train job's priority is its run's epochs: with fewer cores than
    runs, Snakemake starts the longest first, so none starts last."""
    workdir = make_workdir(tmp_path, TINY.replace("nllr: {lr: 0.05}", "nllr: {lr: 0.05, epochs: 3}"))
    result = snakemake(workdir, "-n", "reports/summary.html")
    assert result.returncode == 0, result.stderr
    trains = re.findall(
        r"rule train:.*?wildcards: run=\S+/(\w+)/seed\d\n\s+priority: (\d+)", result.stdout, re.S
    )
    assert sorted(trains) == [("ce", "1"), ("ce", "1"), ("nllr", "3"), ("nllr", "3")], result.stdout


def test_a_sweep_of_thousands_of_runs_plans(tmp_path, make_workdir, snakemake):
    """4,000 seeds, 4,000 training jobs, planned in one dry run (how long it
    takes as the sweep grows: benchmarks/planning.py)."""
    sweep = TINY.replace("seeds: [1, 2]", f"seeds: {list(range(4000))}").replace(", nllr: {lr: 0.05}", "")
    workdir = make_workdir(tmp_path, sweep)
    result = snakemake(workdir, "-n", "reports/summary.html")
    assert result.returncode == 0, result.stderr[-2000:]
    assert _jobs(result.stdout)["train"] == 4000


def test_snakemakes_own_report_holds_table_1_and_every_figure_of_ours(finished, snakemake):
    import html as html_lib
    import zipfile

    workdir = finished
    result = snakemake(workdir, "--report", "reports/snakemake-report.zip")
    assert result.returncode == 0, result.stderr[-2000:]
    ours = (workdir / "reports/test/summary.html").read_text()
    captions = [html_lib.unescape(alt) for alt in re.findall(r'<img alt="([^"]+)" src="data:image/png', ours)]
    with zipfile.ZipFile(workdir / "reports/snakemake-report.zip") as archive:
        names = {Path(name).name for name in archive.namelist()}
        page = archive.read("snakemake-report/report.html").decode()
    expected = {re.sub(r"[^a-z0-9]+", "_", caption.lower()).strip("_") + ".png" for caption in captions}
    assert len(expected) == len(captions) >= 3 and expected | {"table_1.csv", "summary.html"} <= names
    assert "arXiv:1804.10690" in page  # the workflow's description


def test_changing_one_loss_rate_reruns_only_its_jobs(finished, tmp_path, snakemake):
    workdir = finished
    (workdir / "changed.yaml").write_text(TINY.replace("nllr: {lr: 0.05}", "nllr: {lr: 0.02}"))
    result = snakemake(workdir, "-n", "reports/summary.html", config="changed.yaml")
    assert result.returncode == 0, result.stderr
    assert _jobs(result.stdout) == {"train": 2, "aggregate": 1, "report": 1, "latest_report": 1}
    trains = re.findall(r"rule train:.*?wildcards: ([^\n]+)", result.stdout, re.S)
    assert len(trains) == 2 and all("/nllr/" in w for w in trains)
    unchanged = snakemake(workdir, "-n", "reports/summary.html")
    assert "Nothing to be done" in unchanged.stdout + unchanged.stderr


def test_bad_config_value_fails_before_any_job_naming_it(tmp_path, make_workdir, snakemake):
    workdir = make_workdir(tmp_path, TINY.replace("batch_size: 50", "batch_size: 0"))
    result = snakemake(workdir, "--cores", "1", "reports/summary.html")
    assert result.returncode != 0
    assert "batch_size" in result.stdout + result.stderr
    assert not (workdir / "data" / "mnist.h5").exists()
    workdir2 = make_workdir(tmp_path / "two", TINY.replace("optimizer: sgd", "optimizer: lbfgs"))
    result = snakemake(workdir2, "-n", "reports/summary.html")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "config error: experiments/0/optimizer: 'lbfgs' is not one of" in output
    assert len(output.splitlines()) < 10  # one line per problem, not a dump of the schema


@pytest.mark.parametrize(
    "change,message",
    [
        (
            "hyperparameters: {lr: 0.1}|hyperparameters: {lr: 0.1, rhoo: 0.9}",
            "unexpected keyword argument 'rhoo'",
        ),
        ("model_options: {hidden: 32}|model_options: {hiden: 32}", "unexpected keyword argument 'hiden'"),
        ("hyperparameters: {lr: 0.1}|hyperparameters: {lr: -0.1}", "lr must be in (0.0, inf), got -0.1"),
    ],
    ids=["optimizer keyword", "model option", "negative rate"],
)
def test_config_checked_against_real_signatures_before_any_job(
    tmp_path, change, message, make_workdir, snakemake
):
    old, new = change.split("|")
    workdir = make_workdir(tmp_path, TINY.replace(old, new))
    result = snakemake(workdir, "-n", "reports/summary.html")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("config error:")]
    assert lines and message in lines[0] and "mnist/mlp/" in lines[0], result.stderr[-2000:]


def test_a_failing_job_shows_its_reason_on_the_console(tmp_path, make_workdir, snakemake):
    workdir = make_workdir(tmp_path)
    shutil.copytree(VENDOR_DIR / "mnist", workdir / "data" / "raw" / "mnist")
    (workdir / "data" / "mnist.h5").write_bytes(b"not HDF5")  # newer than the raw files: not rebuilt
    result = snakemake(workdir, "--cores", "1", "results/test/mnist/mlp/ce/seed1/status.json")
    assert result.returncode != 0
    assert "error: data/mnist.h5: cannot read it as a prepared HDF5 dataset" in result.stderr + result.stdout


def test_a_checkout_whose_path_has_spaces_runs_its_own_package(tmp_path, make_workdir, snakemake):
    """A job imports the package of the checkout its Snakefile is in, not the
    one installed: with an unquoted PYTHONPATH a space fell back to the latter."""
    checkout = tmp_path / "a checkout"
    for part in ("workflow", "pipeline", "config", "data/raw/vendored/mnist"):
        shutil.copytree(REPO / part, checkout / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "Snakefile", checkout)
    with open(checkout / "pipeline" / "__init__.py", "a") as init:  # says who imported it, from where
        init.write("\nimport os as _os, sys as _sys\n")
        init.write("open(_os.environ['IMPORTS'], 'a').write(f'{_sys.argv[0]} {__file__}\\n')\n")
    imports = tmp_path / "imports.txt"
    workdir = make_workdir(tmp_path / "work dir")
    file = "data/raw/mnist/t10k-labels-idx1-ubyte.gz"
    env = {**os.environ, "IMPORTS": str(imports)}
    result = snakemake(workdir, "--cores", "1", file, snakefile=checkout / "Snakefile", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (workdir / file).read_bytes() == (VENDOR_DIR / "mnist" / Path(file).name).read_bytes()
    assert f"-m {checkout / 'pipeline' / '__init__.py'}" in imports.read_text().splitlines()


def test_killed_train_job_resumes_under_snakemake(tmp_path, wait_for, make_workdir, snakemake):
    config = TINY.replace("epochs: 1", "epochs: 4").replace("train_size: 1000", "train_size: 20000")
    workdir = make_workdir(tmp_path, config)
    target = "results/test/mnist/mlp/ce/seed1/status.json"
    process = subprocess.Popen(
        snakemake.command(workdir, "--cores", "1", target),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    history = workdir / "results/test/mnist/mlp/ce/seed1/history.csv"
    wait_for(history, process)
    os.killpg(process.pid, signal.SIGKILL)  # Snakemake and its job, as a crash would
    process.wait()
    assert 1 <= len(read_history(history)) < 4
    # What a user does after a crash: release the stale lock, rerun the incomplete job.
    assert snakemake(workdir, "--unlock").returncode == 0
    result = snakemake(workdir, "--cores", "1", "--rerun-incomplete", target)
    assert result.returncode == 0, result.stderr[-2000:]
    log = (workdir / "logs/test/train/mnist/mlp/ce/seed1.log").read_text()
    assert "resuming after epoch" in log
    assert json.loads((workdir / target).read_text())["status"] == "completed"
    assert len(read_history(history)) == 4


@pytest.mark.skipif(
    not shutil.which("chromium"), reason="Debian's chromium is not installed (.ci/run installs it)"
)
def test_report_in_a_real_browser(finished, tmp_path):
    """Headless Chromium opens a copy of the report with a checking script
    appended: on the window's load event (every image fetched and decoded, or
    failed) it counts the images with pixels and the rows of Table I, and
    writes the verdict into the page, which Chromium then prints."""
    workdir = finished
    html = (workdir / "reports" / "summary.html").read_text()
    check = """<div id="verdict">pending</div><script>
window.addEventListener("load", function () {
  const images = Array.from(document.images);
  const decoded = images.filter(img => img.complete && img.naturalWidth > 0).length;
  const table = document.getElementById("table1");
  const rows = table ? table.querySelectorAll("tbody tr").length : 0;
  const visible = !!table && table.getBoundingClientRect().height > 0;
  document.getElementById("verdict").textContent =
    "images=" + images.length + " decoded=" + decoded + " rows=" + rows + " visible=" + visible;
});
</script>"""
    page = tmp_path / "report.html"
    page.write_text(html.replace("</body>", check + "</body>"))
    command = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    verdict = re.search(r'<div id="verdict">([^<]*)</div>', result.stdout)
    assert verdict, result.stderr[-2000:]
    assert verdict.group(1) == "images=3 decoded=3 rows=2 visible=true"


def _rewrite_archive(source, target, change):
    """Copy a tar.gz archive, passing each member's bytes through change(name, data),
    the name relative to the archive's folder."""
    import io
    import tarfile

    with tarfile.open(source) as tar_in, tarfile.open(target, "w:gz") as tar_out:
        for member in tar_in.getmembers():
            data = change(member.name.split("/", 1)[1], tar_in.extractfile(member).read())
            member.size = len(data)
            tar_out.addfile(member, io.BytesIO(data))


def test_archive_verifies_and_catches_tampering(finished, tmp_path, snakemake):
    import hashlib

    workdir = finished
    result = snakemake(workdir, "--cores", "1", "archive")
    assert result.returncode == 0, result.stderr[-2000:]
    (archive,) = workdir.glob("reports/test/softloss-archive-*.tar.gz")
    commit = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    assert re.fullmatch(rf"softloss-archive-\d{{8}}-{commit}\.tar\.gz", archive.name)
    checked = subprocess.run(
        [sys.executable, "-m", "pipeline", "verify-archive", str(archive)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    # Every run's record (not its weights or checkpoints), the summary, the report and the provenance.
    records = {
        p.relative_to(workdir).as_posix()
        for p in (workdir / "results/test").rglob("*")
        if p.name in ("history.csv", "metrics.json", "status.json", "diagnostics.csv")
    }
    members = set(read(archive)) - {"MANIFEST"}
    assert members == records | {
        "results/test/summary.json",
        "reports/test/summary.html",
        "config.json",
        "environment.json",
        "data_checksums.json",
    }
    assert verify(archive) == len(members)

    metrics = "results/test/mnist/mlp/ce/seed1/metrics.json"
    tampered = tmp_path / "tampered.tar.gz"
    _rewrite_archive(
        archive,
        tampered,
        lambda n, d: d.replace(b'"test_accuracy": 0.', b'"test_accuracy": 1.') if n == metrics else d,
    )
    with pytest.raises(DataError, match="does not match its MANIFEST"):
        verify(tampered)

    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "verify-archive", str(truncated)], capture_output=True, text=True
    )
    assert (
        result.returncode == 2
        and "truncated or corrupt" in result.stderr
        and "Traceback" not in result.stderr
    )
    both = subprocess.run(
        [sys.executable, "-m", "pipeline", "verify-archive", str(archive), str(truncated)],
        capture_output=True,
        text=True,
    )  # as a glob gives them: each checked, each said
    assert both.returncode == 2 and f"{archive}: {len(members)} members match" in both.stdout
    assert f"{truncated}: not a readable archive" in both.stderr

    # A report whose Table I was edited, with a MANIFEST made to match: caught by the recomputation.
    import tarfile

    with tarfile.open(archive) as tar:
        report = tar.extractfile(f"{archive.name.removesuffix('.tar.gz')}/reports/test/summary.html").read()
    report = re.sub(rb'"mean": [0-9.]+', b'"mean": 99.9', report, count=1)  # the Table I that verify reads
    entry = f"{hashlib.sha256(report).hexdigest()}  {len(report)}  reports/test/summary.html"

    def edit_report(name, data):
        if name == "reports/test/summary.html":
            return report
        if name == "MANIFEST":
            lines = [
                line if not line.endswith("  reports/test/summary.html") else entry
                for line in data.decode().splitlines()
            ]
            return ("\n".join(lines) + "\n").encode()
        return data

    edited = tmp_path / "edited.tar.gz"
    _rewrite_archive(archive, edited, edit_report)
    with pytest.raises(DataError, match="Table I's data shows 99.9"):
        verify(edited)


def test_the_reproduce_target_retrains_every_run_of_an_archive_identically(finished, snakemake):
    workdir = finished
    assert snakemake(workdir, "--cores", "1", "archive").returncode == 0
    (archive,) = workdir.glob("reports/test/softloss-archive-*.tar.gz")
    result = snakemake(workdir, "--cores", "1", "--config", f"reproduce={archive}", "--", "reproduce")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = (
        (workdir / "reports/test/reproduced" / archive.name.replace(".tar.gz", ".txt"))
        .read_text()
        .splitlines()
    )
    assert lines == [
        f"results/test/mnist/mlp/{loss}/seed{seed}: identical through epoch 1"
        for loss in ("ce", "nllr")
        for seed in (1, 2)
    ]


GPU_CONFIG = (
    TINY.replace("studies: null\n", "studies: null\nbackend: BACKEND\n")
    + """
  - dataset: cifar10
    model: cifar_cnn
    optimizer: rmsprop
    losses: {nllr: {}}
    epochs: 1
    batch_size: 32
    seeds: [1]
    gpu: true
"""
)


def _train_jobs(dry_run_output):
    """{run: (gpu resource, --backend argument)} of the train jobs in a dry run with -p."""
    jobs = {}
    for block in dry_run_output.split("rule train:")[1:]:
        run = re.search(r"wildcards: run=(\S+)", block).group(1)
        jobs[run] = (
            int(re.search(r"gpu=(\d+)", block).group(1)),
            re.search(r"--backend (\w+)", block).group(1),
        )
    return jobs


@pytest.mark.parametrize("backend", ["auto", "cupy", "numpy"])
def test_gpu_jobs_hold_a_gpu_and_use_the_configured_backend(tmp_path, backend, make_workdir, snakemake):
    workdir = make_workdir(tmp_path, GPU_CONFIG.replace("BACKEND", backend))
    result = snakemake(workdir, "-n", "-p", "reports/summary.html")
    assert result.returncode == 0, result.stderr
    jobs = _train_jobs(result.stdout)
    on_gpu = backend != "numpy"
    assert jobs["cifar10/cifar_cnn/nllr/seed1"] == (1 if on_gpu else 0, backend)
    assert jobs["mnist/mlp/ce/seed1"] == (0, "numpy")  # CPU jobs never touch the GPU


def test_bad_backend_fails_before_any_job(tmp_path, make_workdir, snakemake):
    workdir = make_workdir(tmp_path, GPU_CONFIG.replace("BACKEND", "tpu"))
    result = snakemake(workdir, "-n", "reports/summary.html")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "backend" in output and "tpu" in output


def test_check_config_names_file_and_line_of_a_yaml_error(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("studies: null\nexperiments:\n  - dataset: mnist\n    model: [mlp\n    epochs: 1\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("studies: null\nbogus_key: 1\n")
    for path, message in ((broken, f"{broken}:5:"), (unknown, "'bogus_key' was unexpected")):
        result = subprocess.run(
            [sys.executable, "-m", "pipeline", "check-config", str(path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.splitlines()) == 1
    for config in (
        "config/paper.yaml",
        "config/reference.yaml",
        "config/studies.yaml",
        "config/cifar10_jpeg.yaml",
    ):
        ok = subprocess.run(
            [sys.executable, "-m", "pipeline", "check-config", config],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize(
    "change, message",
    [
        (
            ("hyperparameters: {lr: 0.1}", "hyperparameters: {lr: 0.1, momentum: 0.9}"),
            "unexpected keyword argument 'momentum'",
        ),
        (("hyperparameters: {lr: 0.1}", "hyperparameters: {lr: -0.05}"), "lr must be"),
        (
            ("model_options: {hidden: 32}", "model_options: {hiden: 32}"),
            "unexpected keyword argument 'hiden'",
        ),
        (
            ("train_size: 1000", "train_size: 100000"),
            "train_size 100000 is more than the 60,000 train examples of mnist",
        ),
        (("dataset: mnist", "dataset: flowers"), "dataset 'flowers' is neither registered"),
    ],
)
def test_check_config_and_the_dry_run_refuse_the_same_values(
    tmp_path, change, message, make_workdir, snakemake
):
    """One validation, run by both, before any job starts."""
    workdir = make_workdir(tmp_path, TINY.replace(*change))
    checked = subprocess.run(
        [sys.executable, "-m", "pipeline", "check-config", str(workdir / "tiny.yaml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    planned = snakemake(workdir, "-n", "reports/summary.html")
    assert checked.returncode == 2 and message in checked.stderr, checked.stderr
    assert planned.returncode != 0 and message in planned.stderr, planned.stderr[-2000:]
    assert [
        line for line in planned.stderr.splitlines() if line.startswith("config error:")
    ] == checked.stderr.splitlines()


def test_fetch_jobs_side_by_side_each_fetch_their_own_file(tmp_path, snakemake):
    from tinydata import Server

    raw = VENDOR_DIR / "mnist"
    files = {p.name: p.read_bytes() for p in raw.glob("*.gz")}
    server = Server()
    try:
        server.serve("/mirror", files)
        workdir = tmp_path / "w"
        workdir.mkdir()
        (workdir / "tiny.yaml").write_text(TINY + f"mirrors: ['{server.url}/mirror/']\n")
        result = snakemake(workdir, "--cores", "4", "data/mnist.h5")
        assert result.returncode == 0, result.stderr[-2000:]
        fetched = sorted(path for path, _ in server.requests)
        assert fetched == sorted(f"/mirror/{name}" for name in files)  # each file once, by its own job
    finally:
        server.close()
    assert {p.name: p.read_bytes() for p in (workdir / "data/raw/mnist").glob("*.gz")} == files


def test_forceall_fetches_mnist_again_from_the_vendored_copy_offline(tmp_path, make_workdir, snakemake):
    """Snakemake deletes a job's outputs before it reruns it: the vendored files are never outputs."""
    vendored = VENDOR_DIR / "mnist"
    name = "t10k-labels-idx1-ubyte.gz"
    before = {p.name: p.read_bytes() for p in vendored.iterdir()}
    workdir = make_workdir(tmp_path / "w")
    for force in ([], ["--forceall"]):
        result = snakemake(workdir, "--cores", "1", *force, f"data/raw/mnist/{name}")
        assert result.returncode == 0, result.stderr[-2000:]
        assert (workdir / "data/raw/mnist" / name).read_bytes() == before[name]
        assert f"fetched from {vendored}" in (workdir / "logs/fetch/mnist" / f"{name}.log").read_text()
    assert {p.name: p.read_bytes() for p in vendored.iterdir()} == before


def test_a_plain_rerun_trains_again_a_run_whose_directory_was_deleted(finished, tmp_path, snakemake):
    """Deleting a run's directory (as the README says, to train it again) and
    rerunning: the run is trained again and the report cites its files; the
    rerun after that trains nothing, and the one after that does nothing."""
    source = finished
    workdir = tmp_path / "copy"
    shutil.copytree(source, workdir, symlinks=True)
    run = workdir / "results" / "test" / "mnist" / "mlp" / "ce" / "seed1"
    shutil.rmtree(run)
    first = snakemake(workdir, "--cores", "2", "reports/summary.html")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "rule train:" in first.stdout + first.stderr
    assert all((run / name).exists() for name in ("history.csv", "status.json", "model.npz", "metrics.json"))
    second = snakemake(workdir, "--cores", "2", "reports/summary.html")
    assert second.returncode == 0 and "rule train:" not in second.stdout + second.stderr
    third = snakemake(workdir, "--cores", "2", "reports/summary.html")
    assert "Nothing to be done" in third.stdout + third.stderr


def test_a_study_still_training_is_archived_as_it_stands_by_the_snapshot_rule(finished, tmp_path, snakemake):
    """`snakemake --nolock snapshot` beside a study's own snakemake: the runs as
    they stand, one still training, nothing trained and none of the study's files touched."""
    from pipeline.report.archive import read

    source = finished
    workdir = tmp_path / "copy"
    shutil.copytree(source, workdir, symlinks=True)
    run = workdir / "results" / "test" / "mnist" / "mlp" / "ce" / "seed1"
    (run / "metrics.json").unlink()
    (run / "status.json").write_text(
        json.dumps({**json.loads((run / "status.json").read_text()), "status": "running"})
    )
    summary = (workdir / "results" / "test" / "summary.json").read_bytes()
    result = snakemake(workdir, "--cores", "1", "--nolock", "snapshot")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rule train:" not in result.stdout + result.stderr
    (snapshot,) = (workdir / "reports" / "test" / "snapshots").glob("softloss-snapshot-*.tar.gz")
    assert verify(snapshot) > 0 and (workdir / "results" / "test" / "summary.json").read_bytes() == summary
    runs = json.loads(read(snapshot)["results/summary.json"])["runs"]
    assert sorted(r["status"] for r in runs) == ["completed"] * (len(runs) - 1) + ["running"]


def test_a_snapshot_before_any_run_has_started_says_so_and_fetches_nothing(tmp_path, make_workdir, snakemake):
    workdir = make_workdir(tmp_path)
    result = snakemake(workdir, "--cores", "1", "--nolock", "snapshot")
    assert (
        result.returncode != 0 and "none of the 4 runs has started: nothing to snapshot yet" in result.stderr
    )
    assert not (workdir / "data").exists() and "Traceback" not in result.stderr


def test_a_class_folder_dataset_of_ones_own_runs_through_the_pipeline(
    tmp_path, make_workdir, snakemake, classes_folder
):
    """Declared under `datasets:` (the README's three lines), a folder of 12
    classes is prepared, trained with a 12-way model, and reported."""
    folder = classes_folder(tmp_path / "shapes", 12, per_class=3)
    config = f"""
studies: null
datasets:
  shapes: {{folder: {folder}}}
experiments:
  - {{dataset: shapes, model: mlp, model_options: {{hidden: 8}}, optimizer: sgd, hyperparameters: {{lr: 0.1}},
      losses: {{ce: {{}}}}, epochs: 1, batch_size: 8, seeds: [1]}}
"""
    workdir = make_workdir(tmp_path / "work", config)
    result = snakemake(workdir, "--cores", "2", "reports/summary.html")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = json.loads((workdir / "results" / "tiny" / "summary.json").read_text())[
        "runs"
    ]  # named by its file
    assert run["dataset"] == "shapes" and len(run["confusion_matrix"]) == 12
    assert "shapes" in (workdir / "reports" / "summary.html").read_text()


def test_every_command_line_option_says_what_it_is():
    import argparse

    from pipeline.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    silent = [
        (name, action.dest)
        for name, sub in commands.choices.items()
        for action in sub._actions
        if not action.help
    ]
    assert silent == []


def test_the_slurm_profile_without_its_partition_stops_before_any_job(tmp_path, make_workdir, snakemake):
    workdir = make_workdir(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOFTLOSS_SLURM_")}
    profile = str(REPO / "profiles/slurm")
    result = snakemake(workdir, "--profile", profile, "-n", "reports/summary.html", timeout=120, env=env)
    assert result.returncode != 0
    assert "the environment variable SOFTLOSS_SLURM_PARTITION is not set" in result.stderr


USER_LOSS = '''"""A loss of one's own: Poly-2."""
import autograd.numpy as np


def poly2(logits, labels, eps=1.0):
    z = logits - np.max(logits, axis=1, keepdims=True)
    log_p = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    log_p_c = log_p[np.arange(len(labels)), labels]
    return np.mean(-log_p_c + eps * (1 - np.exp(log_p_c)) ** 2)
'''


def _user_loss_workdir(make_workdir, path, loss_text):
    config = TINY.replace(
        "losses: {ce: {}, nllr: {lr: 0.05}}", "losses: {ce: {}, poly2: {loss_options: {eps: 2.0}}}"
    )
    workdir = make_workdir(path, config + "user_losses:\n  poly2: {file: poly2.py}\n")
    (workdir / "poly2.py").write_text(loss_text)
    return workdir


def test_a_loss_of_ones_own_runs_beside_the_built_in_ones(tmp_path, make_workdir, snakemake):
    """No change to the package: a file and two config lines. Editing what the
    function does reruns its runs alone; a comment reruns nothing."""
    workdir = _user_loss_workdir(make_workdir, tmp_path, USER_LOSS)
    result = snakemake(workdir, "--cores", "2", "reports/summary.html")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads((workdir / "results" / "test" / "summary.json").read_text())["runs"]
    assert (
        sorted((r["loss"], r["status"]) for r in runs)
        == [("ce", "completed")] * 2 + [("poly2", "completed")] * 2
    )
    assert all(r["config"]["loss_options"] == {"eps": 2.0} for r in runs if r["loss"] == "poly2")
    assert 'data-loss="poly2"' in (workdir / "reports" / "summary.html").read_text()
    (workdir / "poly2.py").write_text(USER_LOSS + "# a note\n")
    assert "Nothing to be done" in snakemake(workdir, "-n", "reports/summary.html").stdout
    (workdir / "poly2.py").write_text(USER_LOSS.replace("** 2", "** 3"))
    changed = snakemake(workdir, "-n", "reports/summary.html")
    assert _jobs(changed.stdout) == {"train": 2, "aggregate": 1, "report": 1, "latest_report": 1}
    assert all("/poly2/" in w for w in re.findall(r"rule train:.*?wildcards: ([^\n]+)", changed.stdout, re.S))


@pytest.mark.parametrize(
    "broken, message",
    [
        (
            USER_LOSS.replace("return np.mean(", "return ("),
            "returns shape (50,), not a scalar",
        ),  # the batch size
        (USER_LOSS.replace("np.mean(", "np.log(-1.0) + np.mean("), "returns nan on a probe batch"),
        (
            USER_LOSS.replace("def poly2(", "def poly(2"),
            "poly2.py: not Python (invalid decimal literal, line 5)",
        ),
        (
            USER_LOSS.replace(
                "import autograd.numpy as np", "import autograd.numpy as np\nimport no_such_module"
            ),
            "poly2.py: cannot import it (ModuleNotFoundError",
        ),
        (USER_LOSS.replace("def poly2(", "def poly3("), "poly2.py: defines no function 'poly2'"),
    ],
)
def test_a_broken_loss_of_ones_own_is_one_line_before_any_job(
    tmp_path, broken, message, make_workdir, snakemake
):
    workdir = _user_loss_workdir(make_workdir, tmp_path, broken)
    result = snakemake(workdir, "-n", "reports/summary.html")
    errors = [line for line in result.stderr.splitlines() if line.startswith("config error:")]
    assert result.returncode != 0 and len(errors) == 1 and message in errors[0] and "poly2.py" in errors[0], (
        errors
    )
    assert "Traceback" not in result.stderr
