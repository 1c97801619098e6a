"""Raw files -> one HDF5 file (pipeline.datasets.prepare, .hdf5): every header,
size and label checked, and an error that names the file."""

import gzip
import hashlib
import tarfile

import h5py
import numpy as np
import pytest
from repo import VENDOR_DIR
from tinydata import cifar_spec, idx_bytes, make_cifar_archive, make_idx_files

from pipeline.common.errors import DataError
from pipeline.datasets import hdf5, prepare, registry
from pipeline.datasets.registry import IDX_FILES, Checksum, DatasetSpec, RemoteFile


def test_recompressed_idx_payload_is_accepted_by_payload_or_official_file_hash(tmp_path):
    # As Fashion-MNIST is registered: payload SHA-256 first, the official file MD5 also accepted.
    arrays, payloads, official = make_idx_files()
    files = tuple(
        RemoteFile(
            n,
            Checksum("sha256", hashlib.sha256(payloads[n]).hexdigest(), "payload"),
            also=(Checksum("md5", hashlib.md5(official[n]).hexdigest(), "file"),),
        )
        for n in IDX_FILES
    )
    spec = DatasetSpec("tiny_fashion", "idx", files, (), registry.FASHION_CLASSES, (28, 28, 1), "test data")
    for label, body in (
        ("official", official),
        ("recompressed", {n: gzip.compress(p, 9, mtime=12345) for n, p in payloads.items()}),
    ):
        raw = tmp_path / label
        raw.mkdir()
        for name, data_ in body.items():
            (raw / name).write_bytes(data_)
        assert label == "official" or (raw / IDX_FILES[0]).read_bytes() != official[IDX_FILES[0]]
        _, labels = hdf5.load(
            prepare.prepare(spec, raw, tmp_path / f"{label}.h5", log=lambda *a: None), "test"
        )
        np.testing.assert_array_equal(labels, arrays["t10k-labels-idx1-ubyte.gz"])
    # Another payload matches neither; the error names both checksums.
    changed = arrays["t10k-labels-idx1-ubyte.gz"].copy()
    changed[0] = (changed[0] + 1) % 10
    (tmp_path / "recompressed" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(changed)))
    with pytest.raises(DataError, match="sha256 of the decompressed payload is .*; md5 of the file is"):
        prepare.prepare(spec, tmp_path / "recompressed", tmp_path / "bad.h5", log=lambda *a: None)


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


def test_a_write_killed_midway_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    """prepare and archive write through atomic_path: a writer killed with
    SIGKILL leaves its hidden temporary; the next write to that file removes it,
    and keeps the temporary of a writer still at work."""
    import os
    import subprocess
    import sys

    target = tmp_path / "mnist.h5"
    killed = (
        "import os, signal; from pipeline.common.files import atomic_path; "
        f"tmp = atomic_path({str(target)!r}).__enter__(); open(tmp, 'wb').write(b'half'); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    subprocess.run([sys.executable, "-c", killed], timeout=60)
    (orphan,) = tmp_path.glob(".mnist.h5.*.tmp")
    working = tmp_path / f".mnist.h5.{os.getppid()}.tmp"  # a live process's
    working.write_bytes(b"busy")
    prepare.prepare("mnist", VENDOR_DIR / "mnist", target, log=lambda *a: None)
    assert (
        not orphan.exists() and working.exists() and hdf5.load(target, "test")[0].shape == (10000, 28, 28, 1)
    )
