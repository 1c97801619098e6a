"""Fetch, prepare and load against small files in the real formats, served by a
real HTTP server on 127.0.0.1 that can 404, cut connections, stall or corrupt."""
import gzip
import hashlib
import io
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import numpy as np
import pytest
from repo import VENDOR_DIR

from pipeline import cli
from pipeline.common.errors import DataError, FetchError
from pipeline.datasets import batches, hdf5, prepare, registry
from pipeline.datasets.fetch import fetch
from pipeline.datasets.registry import IDX_FILES, Checksum, DatasetSpec, RemoteFile


# ------------------------------------------------------------ tiny datasets
def idx_bytes(array):
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def make_idx_files(n_train=30, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test),
    }
    payloads = {name: idx_bytes(a) for name, a in arrays.items()}
    return arrays, payloads, {name: gzip.compress(p, mtime=0) for name, p in payloads.items()}


def idx_spec(payloads, urls):
    files = tuple(RemoteFile(n, Checksum("sha256", hashlib.sha256(payloads[n]).hexdigest(), "payload")) for n in IDX_FILES)
    return DatasetSpec("tiny_mnist", "idx", files, tuple(urls), registry.MNIST_CLASSES, (28, 28, 1), "test data")


def cifar_records(labels, images):
    planes = images.transpose(0, 3, 1, 2).reshape(len(labels), -1)  # R, G, B planes
    return np.concatenate([labels[:, None], planes], axis=1).astype(np.uint8).tobytes()


def make_cifar_archive(per_batch=4, seed=0, extra=()):
    rng = np.random.default_rng(seed)
    buffer, arrays = io.BytesIO(), {}
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        names = [*prepare.CIFAR_MEMBERS["train"], *prepare.CIFAR_MEMBERS["test"]]
        for name in names:
            labels = rng.integers(0, 10, per_batch)
            images = rng.integers(0, 256, (per_batch, 32, 32, 3))
            arrays[name] = (images, labels)
            payload = cifar_records(labels, images)
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
        for info, payload in extra:
            archive.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return buffer.getvalue(), arrays


def cifar_spec(archive, urls=("http://127.0.0.1:9/",)):
    checksum = Checksum("md5", hashlib.md5(archive).hexdigest(), "file")
    files = (RemoteFile("cifar-10-binary.tar.gz", checksum),)
    return DatasetSpec("tiny_cifar", "cifar-binary", files, urls, registry.CIFAR10_CLASSES, (32, 32, 3), "test")


# ------------------------------------------------------------ the server
class Server:
    """Routes: path -> list of behaviours, one consumed per request (the last repeats).
    ("ok", body) | ("404",) | ("500",) | ("cut", body, n_bytes) | ("stall", seconds, body)"""

    def __init__(self):
        self.routes, self.requests = {}, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                plan = server.routes.get(self.path, [("404",)])
                action = plan.pop(0) if len(plan) > 1 else plan[0]
                kind = action[0]
                if kind in ("404", "500"):
                    self.send_error(int(kind))
                    return
                if kind == "stall":
                    time.sleep(action[1])
                    action = ("ok", action[2])
                body = action[1]
                start = 0
                if self.headers.get("Range") and kind == "ok":
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if kind == "cut":
                    self.wfile.write(body[: action[2]])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, prefix, files, kind="ok"):
        for name, body in files.items():
            self.routes[f"{prefix}/{name}"] = [(kind, body)]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


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
    start = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        fetch(spec, tmp_path, timeout=0.3, retries=1, backoff=0.01, quiet=True, log=lambda *a: None)
    assert time.monotonic() - start < 2.5
    assert list(tmp_path.iterdir()) == []


def test_recompressed_idx_payload_is_accepted_by_payload_or_official_file_hash(tmp_path):
    # As Fashion-MNIST is registered: payload SHA-256 first, the official file MD5 also accepted.
    arrays, payloads, official = make_idx_files()
    files = tuple(RemoteFile(n, Checksum("sha256", hashlib.sha256(payloads[n]).hexdigest(), "payload"),
                             also=(Checksum("md5", hashlib.md5(official[n]).hexdigest(), "file"),)) for n in IDX_FILES)  # fmt: skip
    spec = DatasetSpec("tiny_fashion", "idx", files, (), registry.FASHION_CLASSES, (28, 28, 1), "test data")
    for label, body in (("official", official), ("recompressed", {n: gzip.compress(p, 9, mtime=12345) for n, p in payloads.items()})):
        raw = tmp_path / label
        raw.mkdir()
        for name, data_ in body.items():
            (raw / name).write_bytes(data_)
        assert label == "official" or (raw / IDX_FILES[0]).read_bytes() != official[IDX_FILES[0]]
        _, labels = hdf5.load(prepare.prepare(spec, raw, tmp_path / f"{label}.h5", log=lambda *a: None), "test")
        np.testing.assert_array_equal(labels, arrays["t10k-labels-idx1-ubyte.gz"])
    # Another payload matches neither; the error names both checksums.
    changed = arrays["t10k-labels-idx1-ubyte.gz"].copy()
    changed[0] = (changed[0] + 1) % 10
    (tmp_path / "recompressed" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(changed)))
    with pytest.raises(DataError, match="sha256 of the decompressed payload is .*; md5 of the file is"):
        prepare.prepare(spec, tmp_path / "recompressed", tmp_path / "bad.h5", log=lambda *a: None)


def test_fashion_mnist_accepts_payload_hashes_and_official_md5s():
    spec = registry.get("fashion_mnist")
    for remote in spec.files:
        assert remote.checksum.algorithm == "sha256" and remote.checksum.over == "payload"
        assert [c.algorithm for c in remote.also] == ["md5"] and remote.also[0].over == "file"


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


# ------------------------------------------------------------ prepare / load
def test_cifar_binary_records_become_hwc_images(tmp_path):
    archive, arrays = make_cifar_archive()
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(archive)
    out = prepare.prepare(cifar_spec(archive), tmp_path, tmp_path / "c.h5", log=lambda *a: None)
    images, labels = hdf5.load(out, "train")
    assert images.shape == (20, 32, 32, 3)
    first_images, first_labels = arrays["cifar-10-batches-bin/data_batch_1.bin"]
    np.testing.assert_array_equal(images[:4], first_images)
    np.testing.assert_array_equal(labels[:4], first_labels)
    test_images, _ = hdf5.load(out, "test")
    np.testing.assert_array_equal(test_images, arrays["cifar-10-batches-bin/test_batch.bin"][0])


@pytest.mark.parametrize(
    "member",
    [
        ("../evil.bin", tarfile.REGTYPE),
        ("/etc/evil.bin", tarfile.REGTYPE),
        ("cifar-10-batches-bin/link", tarfile.SYMTYPE),
        ("cifar-10-batches-bin/dev", tarfile.CHRTYPE),
    ],
    ids=["dotdot", "absolute", "symlink-outside", "device"],
)
def test_hostile_tar_members_are_refused(tmp_path, member):
    name, kind = member
    info = tarfile.TarInfo(name)
    info.type = kind
    payload = None
    if kind == tarfile.REGTYPE:
        payload = b"x" * 10
        info.size = 10
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
    archive, _ = make_cifar_archive(extra=[(info, payload)])
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(archive)
    with pytest.raises(DataError, match="refusing the archive"):
        prepare.prepare(cifar_spec(archive), tmp_path, tmp_path / "c.h5", log=lambda *a: None)
    assert not (tmp_path / "c.h5").exists()


def test_bad_cifar_records_and_labels():
    with pytest.raises(DataError, match="whole number"):
        prepare.parse_cifar_records(b"\x00" * 3000, "x.bin")
    record = bytes([10]) + bytes(3072)
    with pytest.raises(DataError, match="label 10 out of range"):
        prepare.parse_cifar_records(record, "x.bin")


@pytest.mark.parametrize(
    "payload,message",
    [
        (b"\x00\x01\x08\x01" + b"\x00" * 8, "bad magic"),
        (b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00", "element type"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x01\x05", "truncated"),
    ],
)
def test_bad_idx_files(payload, message):
    with pytest.raises(DataError, match=message):
        prepare.parse_idx(payload, "x", 3 if payload[3] == 3 else 1)


def test_truncated_and_foreign_hdf5_get_clear_errors(tmp_path):
    archive, _ = make_cifar_archive()
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(archive)
    good = prepare.prepare(cifar_spec(archive), tmp_path, tmp_path / "c.h5", log=lambda *a: None)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated.h5"):
        hdf5.load(truncated, "train")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h5:
        h5["x"] = np.zeros(3)
    with pytest.raises(DataError, match="not a softloss dataset"):
        hdf5.load(foreign, "train")
    with pytest.raises(DataError, match="no such dataset file"):
        hdf5.load(tmp_path / "missing.h5", "train")


def test_prepare_checks_raw_files_and_writes_atomically(tmp_path, monkeypatch):
    archive, _ = make_cifar_archive()
    spec = cifar_spec(archive)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(archive[:-10])
    with pytest.raises(DataError, match="checksum mismatch"):
        prepare.prepare(spec, tmp_path, tmp_path / "c.h5", log=lambda *a: None)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(archive)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(h5py.Group, "create_dataset", broken)
    with pytest.raises(OSError, match="disk full"):
        prepare.prepare(spec, tmp_path, tmp_path / "c.h5", log=lambda *a: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-binary.tar.gz"]


def test_real_mnist_prepares_with_published_counts(tmp_path):
    out = prepare.prepare("mnist", VENDOR_DIR / "mnist", tmp_path / "mnist.h5", log=lambda *a: None)
    train_images, train_labels = hdf5.load(out, "train")
    test_images, test_labels = hdf5.load(out, "test")
    assert train_images.shape == (60000, 28, 28, 1) and test_images.shape == (10000, 28, 28, 1)
    assert np.bincount(train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# ------------------------------------------------------------ batches
def test_batches_seeded_complete_and_scaled():
    images = np.arange(10 * 4 * 4 * 1, dtype=np.uint8).reshape(10, 4, 4, 1)
    labels = np.arange(10, dtype=np.uint8)
    first = list(batches.batches(images, labels, 3, np.random.default_rng(0)))
    again = list(batches.batches(images, labels, 3, np.random.default_rng(0)))
    other = list(batches.batches(images, labels, 3, np.random.default_rng(1)))
    assert [len(y) for _, y in first] == [3, 3, 3, 1]
    assert sorted(np.concatenate([y for _, y in first]).tolist()) == list(range(10))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, other))
    x, y = first[0]
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(x * 255, images[y].astype(np.float32))
    assert [len(y) for _, y in batches.batches(images, labels, 3, np.random.default_rng(0), drop_last=True)] == [3, 3, 3]


def test_augmentation_shifts_flips_and_is_seeded():
    rng = np.random.default_rng(0)
    images = rng.random((64, 8, 10, 3), dtype=np.float32)
    np.testing.assert_array_equal(batches.shift_and_flip(images, rng, shift=0.0, flip=False), images)
    a = batches.shift_and_flip(images, np.random.default_rng(5))
    b = batches.shift_and_flip(images, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert a.shape == images.shape and a.dtype == np.float32
    assert a.min() >= images.min() and a.max() <= images.max()  # interpolation and nearest fill
    flipped = batches.shift_and_flip(images, np.random.default_rng(5), shift=0.0, flip=True)
    is_flipped = [np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images)]
    assert 10 < sum(is_flipped) < 54 and all(f or np.array_equal(o, i) for f, o, i in zip(is_flipped, flipped, images))
    # A whole-pixel shift moves content by that pixel and repeats the edge.
    one = np.arange(10, dtype=np.float32)[None, None, :, None].repeat(8, 1)
    shifted = batches.shift_and_flip(one, np.random.default_rng(0), shift=0.1, flip=False)
    assert not np.array_equal(shifted, one)


def _closed_port():
    import socket

    with socket.socket() as probe:  # bound, never listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_refused_connection_is_not_retried_and_leaves_no_folder(tmp_path):
    _, payloads, _ = make_idx_files()
    spec = idx_spec(payloads, [f"http://127.0.0.1:{_closed_port()}/"])
    start = time.monotonic()
    with pytest.raises(FetchError, match="ConnectionRefusedError") as caught:
        fetch(spec, tmp_path / "raw", timeout=2.0, retries=3, backoff=1.0, quiet=True, log=lambda *a: None)
    assert time.monotonic() - start < 3  # no backoff on an error that cannot recover
    assert "gave up" not in str(caught.value)
    assert not (tmp_path / "raw").exists()
