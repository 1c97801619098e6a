"""Fetch, prepare and load against small files in the real formats, served by a
real HTTP server on 127.0.0.1 that can 404, cut connections, stall or corrupt."""

import gzip
import hashlib
import socket
from pathlib import Path

import h5py
import numpy as np
import pytest
from tinydata import Server, idx_spec, make_idx_files

from pipeline import cli
from pipeline.common.errors import FetchError
from pipeline.datasets import hdf5, prepare, registry
from pipeline.datasets.fetch import fetch
from pipeline.datasets.registry import IDX_FILES


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def _quiet(**kw):
    return dict(timeout=2.0, retries=2, backoff=0.01, quiet=True, log=lambda *a: None, **kw)


def _leftovers(directory):
    return sorted(p.name for p in Path(directory).iterdir() if p.name.startswith("."))


# ------------------------------------------------------------ fetch
def test_happy_path_fetch_prepare_load(server, tmp_path):
    arrays, payloads, files = make_idx_files()
    server.serve("/official", files)
    spec = idx_spec(payloads, [server.url + "/official/"])
    paths = fetch(spec, tmp_path / "raw", **_quiet())
    assert [p.read_bytes() for p in paths] == [files[n] for n in IDX_FILES]
    out = prepare.prepare(spec, tmp_path / "raw", tmp_path / "tiny.h5", log=lambda *a: None)
    images, labels = hdf5.load(out, "train")
    assert images.shape == (30, 28, 28, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[..., 0], arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(labels, arrays["train-labels-idx1-ubyte.gz"])
    with h5py.File(out) as h5:
        assert h5.attrs["dataset"] == "tiny_mnist"
        assert list(h5.attrs["source_sha256"]) == [hashlib.sha256(payloads[n]).hexdigest() for n in IDX_FILES]
        assert h5["train/images"].compression == "gzip" and h5["train/images"].chunks is not None
    # A second fetch finds everything verified and asks the network nothing.
    before = len(server.requests)
    fetch(spec, tmp_path / "raw", **_quiet())
    assert len(server.requests) == before


def test_404_then_a_working_mirror(server, tmp_path):
    _, payloads, files = make_idx_files()
    server.serve("/mirror", files)
    spec = idx_spec(payloads, [server.url + "/gone/", server.url + "/mirror/"])
    fetch(spec, tmp_path, **_quiet())
    gone = [path for path, _ in server.requests if path.startswith("/gone/")]
    assert len(gone) == 4  # a 404 is not retried
    assert _leftovers(tmp_path) == []


def test_checksum_mismatch_is_an_error_and_leaves_nothing(server, tmp_path):
    _, payloads, files = make_idx_files()
    server.serve("/bad", {n: gzip.compress(payloads[n][:-1] + bytes([payloads[n][-1] ^ 1])) for n in files})
    spec = idx_spec(payloads, [server.url + "/bad/"])
    with pytest.raises(FetchError, match="checksum mismatch") as error:
        fetch(spec, tmp_path, **_quiet())
    assert server.url + "/bad/train-images-idx3-ubyte.gz" in str(error.value)
    assert "data by hand" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_cut_connection_is_retried_and_resumed(server, tmp_path):
    _, payloads, files = make_idx_files()
    server.serve("/flaky", files)
    name = "train-images-idx3-ubyte.gz"
    body = files[name]
    server.routes[f"/flaky/{name}"] = [("cut", body, len(body) // 2), ("ok", body)]
    spec = idx_spec(payloads, [server.url + "/flaky/"])
    fetch(spec, tmp_path, **_quiet())
    attempts = [rng for path, rng in server.requests if path == f"/flaky/{name}"]
    assert attempts == [None, f"bytes={len(body) // 2}-"]  # the retry resumed where the cut left off
    assert (tmp_path / name).read_bytes() == body


def test_connection_always_cut_gives_up_cleanly(server, tmp_path):
    _, payloads, files = make_idx_files()
    body = files["train-images-idx3-ubyte.gz"]
    server.routes["/cut/train-images-idx3-ubyte.gz"] = [("cut", body, 100)]
    spec = idx_spec(payloads, [server.url + "/cut/"])
    with pytest.raises(FetchError, match=r"gave up after 3 attempts"):
        fetch(spec, tmp_path, **_quiet())
    assert list(tmp_path.iterdir()) == []


def test_stalling_server_times_out(server, tmp_path):
    _, payloads, files = make_idx_files()
    server.routes["/slow/train-images-idx3-ubyte.gz"] = [("stall", 3.0, files["train-images-idx3-ubyte.gz"])]
    spec = idx_spec(payloads, [server.url + "/slow/"])
    with pytest.raises(FetchError, match="no answer within 0.3 s"):
        fetch(spec, tmp_path, timeout=0.3, retries=1, backoff=0.01, quiet=True, log=lambda *a: None)
    assert [path for path, _ in server.requests] == [
        "/slow/train-images-idx3-ubyte.gz"
    ]  # asked once, not retried
    assert list(tmp_path.iterdir()) == []


def test_directory_mirror_env_and_refetch_of_corrupt_file(server, tmp_path, monkeypatch):
    _, payloads, files = make_idx_files()
    mirror = tmp_path / "mirror" / "tiny_mnist"
    mirror.mkdir(parents=True)
    for name, body in files.items():
        (mirror / name).write_bytes(body)
    out = tmp_path / "raw"
    out.mkdir()
    (out / "train-labels-idx1-ubyte.gz").write_bytes(b"corrupt")
    monkeypatch.setenv("SOFTLOSS_MIRROR", str(tmp_path / "mirror"))
    spec = idx_spec(payloads, [server.url + "/never/"])
    fetch(spec, out, **_quiet())
    assert (out / "train-labels-idx1-ubyte.gz").read_bytes() == files["train-labels-idx1-ubyte.gz"]
    assert server.requests == []


def test_cli_fetch_failure_is_a_message_not_a_traceback(server, tmp_path, monkeypatch, capsys):
    _, payloads, _ = make_idx_files()
    monkeypatch.setitem(registry.REGISTRY, "mnist", idx_spec(payloads, [server.url + "/none/"]))
    code = cli.main(["fetch", "mnist", "--out", str(tmp_path), "--retries", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: could not fetch train-images-idx3-ubyte.gz") and "Traceback" not in err
    assert "HTTP 404" in err


def _closed_port():

    with socket.socket() as probe:  # bound, never listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_refused_connection_is_not_retried_and_leaves_no_folder(tmp_path, monkeypatch):
    _, payloads, _ = make_idx_files()
    spec = idx_spec(payloads, [f"http://127.0.0.1:{_closed_port()}/"])
    waits = []
    monkeypatch.setattr("pipeline.datasets.fetch.time.sleep", waits.append)
    with pytest.raises(FetchError, match="ConnectionRefusedError") as caught:
        fetch(spec, tmp_path / "raw", timeout=2.0, retries=3, backoff=1.0, quiet=True, log=lambda *a: None)
    assert waits == []  # no backoff, so no retry, on an error that cannot recover
    assert "gave up" not in str(caught.value)
    assert not (tmp_path / "raw").exists()


def test_a_mirror_that_accepts_and_never_answers_is_given_up_at_once(server, tmp_path):
    """No retries on a source that cannot answer: one timeout, not one per attempt."""
    _, payloads, files = make_idx_files()
    for name, body in files.items():
        server.routes[f"/silent/{name}"] = [("stall", 60.0, body)]  # until the server closes
        server.routes[f"/good/{name}"] = [("ok", body)]
    spec = idx_spec(payloads, [server.url + "/silent/", server.url + "/good/"])
    said = []
    # a timeout that leaves a loaded machine time for the good source to answer
    fetch(spec, tmp_path, timeout=1.0, retries=5, backoff=0.2, quiet=True, log=said.append)
    asked = [path for path, _ in server.requests]
    assert sorted(p for p in asked if p.startswith("/silent/")) == sorted(
        f"/silent/{name}" for name in files
    )  # once each
    assert any("no answer within 1 s" in line and "/silent/" in line for line in said)


def test_a_stall_mid_body_names_the_bytes_that_came(server, tmp_path):
    """The server answers at once, sends 1000 bytes and falls silent (until it
    closes); the timeout leaves a loaded machine time to answer before that."""
    _, payloads, files = make_idx_files()
    body = files["train-images-idx3-ubyte.gz"]
    server.routes["/slow/train-images-idx3-ubyte.gz"] = [("stall_after", body, 1000, 60.0)]
    spec = idx_spec(payloads, [server.url + "/slow/"])
    with pytest.raises(FetchError, match="connection failed after 1000 bytes"):
        fetch(
            spec,
            tmp_path,
            timeout=2.0,
            retries=0,
            quiet=True,
            log=lambda *a: None,
            only="train-images-idx3-ubyte.gz",
        )


def test_a_corrupt_mirror_that_a_later_source_makes_good_is_named_in_a_warning(server, tmp_path):
    _, payloads, files = make_idx_files()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, body in files.items():
        (mirror / name).write_bytes(body[:-1] + bytes([body[-1] ^ 1]))  # one bit off
        server.routes[f"/good/{name}"] = [("ok", body)]
    said = []
    fetch(
        idx_spec(payloads, [server.url + "/good/"]),
        tmp_path / "raw",
        [str(mirror)],
        quiet=True,
        log=said.append,
    )
    warnings = [line for line in said if "warning" in line]
    assert len(warnings) == 4 and all(str(mirror) in line for line in warnings)


def test_the_test_server_ends_its_stalled_requests_on_close_and_prints_nothing(capfd):
    """A stalled request whose client gave up must not outlive its test: its
    thread, writing to the closed socket later, printed a traceback beside
    the next tests (and Python 3.11's traceback printer parses source, which
    raced test_layout's own parse into a SystemError)."""
    import threading
    import urllib.error
    import urllib.request

    server = Server()
    server.routes["/slow"] = [("stall", 30.0, b"x" * 100_000)]
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        urllib.request.urlopen(server.url + "/slow", timeout=0.2)
    server.close()  # returns once every request's thread has ended
    assert not [t for t in threading.enumerate() if "process_request" in t.name]
    assert "Traceback" not in capfd.readouterr().err
