"""Class-folder datasets (split/class/image, PNG or JPEG; as files or tar.gz
archives), on small folders made here. The real CIFAR-10 JPEG copy is not an input."""

import dataclasses
import hashlib
import io
import subprocess
import sys
import tarfile

import h5py
import numpy as np
import pytest
from PIL import Image
from tinydata import Server

from pipeline.common.errors import DataError
from pipeline.datasets import folders, hdf5, prepare, registry
from pipeline.datasets.fetch import fetch
from pipeline.datasets.registry import Checksum, RemoteFile

CLASSES = ("cat", "dog", "emu")


def _encode(pixels, fmt):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _images(n_per_class=(3, 2), size=(8, 6), fmt="PNG", seed=0, mode="RGB"):
    """{'train/cat/000.png': bytes, ...} and the pixels of each."""
    rng = np.random.default_rng(seed)
    files, pixels = {}, {}
    channels = 3 if mode == "RGB" else 1
    for split, n in zip(("train", "test"), n_per_class):
        for c, name in enumerate(CLASSES):
            for i in range(n + c):  # classes of different sizes
                array = rng.integers(0, 256, (*size, channels), dtype=np.uint8)
                array = array if channels == 3 else array[..., 0]
                path = f"{split}/{name}/{i:03d}.{'png' if fmt == 'PNG' else 'jpg'}"
                files[path], pixels[path] = _encode(array, fmt), array
    return files, pixels


def _write_folder(root, files):
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)
    return root


def _tar_gz(files, top=""):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, body in sorted(files.items()):
            info = tarfile.TarInfo(top + name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def _quiet():
    return {"log": lambda *a: None}


def test_own_png_folder_prepares_with_sorted_classes(tmp_path):
    files, pixels = _images()
    root = _write_folder(tmp_path / "pets", files)
    out = prepare.prepare(folders.folder_spec("pets", root), root, tmp_path / "pets.h5", **_quiet())
    images, labels = hdf5.load(out, "train")
    assert images.shape == (3 + 4 + 5, 8, 6, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0] * 3 + [1] * 4 + [2] * 5
    np.testing.assert_array_equal(images[3], pixels["train/dog/000.png"])  # PNG is lossless
    with h5py.File(out) as h5:
        assert list(h5.attrs["classes"]) == list(CLASSES)
        assert h5.attrs["dataset"] == "pets" and len(h5.attrs["source_sha256"]) == 2  # one digest per split


def test_own_folder_digest_changes_with_any_file(tmp_path):
    files, _ = _images()
    root = _write_folder(tmp_path / "a", files)
    first = prepare.prepare(folders.folder_spec("a", root), root, tmp_path / "a.h5", **_quiet())
    (root / "test/emu/000.png").write_bytes(_encode(np.zeros((8, 6, 3), np.uint8), "PNG"))
    second = prepare.prepare(folders.folder_spec("a", root), root, tmp_path / "b.h5", **_quiet())
    with h5py.File(first) as h1, h5py.File(second) as h2:
        assert h1.attrs["source_sha256"][0] == h2.attrs["source_sha256"][0]  # train/ unchanged
        assert h1.attrs["source_sha256"][1] != h2.attrs["source_sha256"][1]


def test_grayscale_jpeg_archive_of_ones_own(tmp_path):
    files, pixels = _images(fmt="JPEG", mode="L", size=(16, 16))
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "all.tar.gz").write_bytes(_tar_gz(files, top="./"))
    out = prepare.prepare(
        folders.folder_spec("gray", tmp_path / "raw"), tmp_path / "raw", tmp_path / "g.h5", **_quiet()
    )
    images, _labels = hdf5.load(out, "test")
    assert images.shape == (2 + 3 + 4, 16, 16, 1)
    # JPEG is lossy: close to the pixels it was made from, not equal.
    error = np.abs(images[0, ..., 0].astype(int) - pixels["test/cat/000.jpg"].astype(int)).mean()
    assert 0 < error < 40


def _jpeg_spec(archives, urls=()):
    spec = registry.get("cifar10_jpeg")
    files = tuple(
        RemoteFile(name, Checksum("sha256", hashlib.sha256(body).hexdigest(), "file"))
        for name, body in archives.items()
    )
    return dataclasses.replace(
        spec,
        name="tiny_jpeg",
        files=files,
        urls=tuple(urls),
        classes=CLASSES,
        image_shape=(8, 6, 3),
        split_sizes=None,
    )


def test_registered_archives_fetched_over_http_and_checked(tmp_path):
    files, _ = _images(fmt="JPEG")
    archives = {
        "tiny-train.tar.gz": _tar_gz({k: v for k, v in files.items() if k.startswith("train/")}),
        "tiny-test.tar.gz": _tar_gz({k: v for k, v in files.items() if k.startswith("test/")}),
    }
    server = Server()
    try:
        server.serve("/mirror", archives)
        spec = _jpeg_spec(archives, [server.url + "/mirror/"])
        fetch(spec, tmp_path / "raw", timeout=2.0, retries=1, backoff=0.01, quiet=True, log=lambda *a: None)
    finally:
        server.close()
    out = prepare.prepare(spec, tmp_path / "raw", tmp_path / "t.h5", **_quiet())
    with h5py.File(out) as h5:
        assert list(h5.attrs["source_files"]) == list(archives)
        assert "JPEG" in h5.attrs["note"] and h5.attrs["variant_of"] == "cifar10"
    # A damaged archive fails its checksum before anything is decoded.
    (tmp_path / "raw" / "tiny-test.tar.gz").write_bytes(archives["tiny-test.tar.gz"][:-10])
    with pytest.raises(DataError, match="tiny-test.tar.gz: checksum mismatch"):
        prepare.prepare(spec, tmp_path / "raw", tmp_path / "u.h5", **_quiet())
    assert not (tmp_path / "u.h5").exists()


def test_fetch_without_any_source_says_to_use_a_mirror(tmp_path, monkeypatch):
    monkeypatch.delenv("SOFTLOSS_MIRROR", raising=False)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "fetch", "cifar10_jpeg", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--mirror" in result.stderr and "Traceback" not in result.stderr


def _bad(files, change):
    files = dict(files)
    change(files)
    return files


BAD = {
    "wrong size": (
        lambda f: f.__setitem__("train/dog/001.png", _encode(np.zeros((7, 6, 3), np.uint8), "PNG")),
        r"train/dog/001.png: image of 6x7 pixels, expected 6x8",
    ),
    "wrong mode": (
        lambda f: f.__setitem__("test/emu/000.png", _encode(np.zeros((8, 6), np.uint8), "PNG")),
        r"test/emu/000.png: image mode L, expected RGB",
    ),
    "undecodable": (
        lambda f: f.__setitem__("train/cat/002.png", b"\x89PNG\r\n\x1a\n broken"),
        r"train/cat/002.png: not a decodable PNG or JPEG image",
    ),
    "class in test alone": (
        lambda f: f.__setitem__("test/yak/000.png", f["test/cat/000.png"]),
        r"class 'yak' has no images in train/",
    ),
    "empty class": (
        lambda f: [f.pop(k) for k in [k for k in f if k.startswith("test/dog/")]],
        r"class 'dog' has no images in test/",
    ),
    "emptied training class": (
        lambda f: [f.pop(k) for k in [k for k in f if k.startswith("train/dog/")]],
        r"class 'dog' has no images in train/",
    ),
    "one class": (
        lambda f: [f.pop(k) for k in [k for k in f if "/cat/" not in k]],
        r"one class \(cat\): a classifier needs two or more",
    ),
    "not an image": (
        lambda f: f.__setitem__("train/cat/notes.txt", b"hello"),
        r"train/cat/notes.txt: not an image file",
    ),
    "too deep": (
        lambda f: f.__setitem__("train/cat/x/000.png", f["train/cat/000.png"]),
        r"not at <split>/<class>/<image>",
    ),
}


@pytest.mark.parametrize("as_archive", [False, True], ids=["folder", "archive"])
@pytest.mark.parametrize("case", BAD)
def test_bad_folders_name_the_file_and_write_nothing(tmp_path, case, as_archive):
    change, message = BAD[case]
    files = _bad(_images()[0], change)
    raw = tmp_path / "raw"
    if as_archive:
        raw.mkdir()
        (raw / "pets.tar.gz").write_bytes(_tar_gz(files))
    else:
        _write_folder(raw, files)
    with pytest.raises(DataError, match=message):
        prepare.prepare(folders.folder_spec("pets", raw), raw, tmp_path / "pets.h5", **_quiet())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


# What is wrong in the files' names alone, which the config's checks find before any job.
BY_NAME = (
    "class in test alone",
    "empty class",
    "emptied training class",
    "one class",
    "not an image",
    "too deep",
)


@pytest.mark.parametrize("as_archive", [False, True], ids=["folder", "archive"])
@pytest.mark.parametrize("case", BY_NAME)
def test_the_config_check_finds_what_the_names_show(tmp_path, case, as_archive):
    change, message = BAD[case]
    files = _bad(_images()[0], change)
    raw = tmp_path / "raw"
    if as_archive:
        raw.mkdir()
        path = raw / "pets.tar.gz"
        path.write_bytes(_tar_gz(files))
    else:
        path = _write_folder(raw, files)
    with pytest.raises(DataError, match=message):
        folders.class_names("pets", [path])
    assert folders.class_names("pets", [_write_folder(tmp_path / "good", _images()[0])]) == CLASSES


def test_registered_class_order_and_unknown_class(tmp_path):
    # The registry's class order decides the labels, not the folder names' order.
    files, _ = _images()
    archives = {"t.tar.gz": _tar_gz(files)}
    spec = dataclasses.replace(_jpeg_spec(archives), classes=("emu", "cat", "dog"))
    (tmp_path / "t.tar.gz").write_bytes(archives["t.tar.gz"])
    _, labels = hdf5.load(prepare.prepare(spec, tmp_path, tmp_path / "o.h5", **_quiet()), "train")
    assert labels.tolist() == [0] * 5 + [1] * 3 + [2] * 4
    with pytest.raises(DataError, match=r"train/emu/ is not a class of tiny_jpeg"):
        prepare.prepare(
            dataclasses.replace(spec, classes=("cat", "dog")), tmp_path, tmp_path / "p.h5", **_quiet()
        )


def test_cli_image_folder(tmp_path):
    root = _write_folder(tmp_path / "pets", _images()[0])
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "prepare",
            "pets",
            "--image-folder",
            "--raw",
            str(root),
            "--out",
            str(tmp_path / "pets.h5"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "prepare",
            "mnist",
            "--image-folder",
            "--raw",
            str(root),
            "--out",
            str(tmp_path / "m.h5"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "registered dataset" in refused.stderr


@pytest.mark.parametrize("n_classes, dtype", [(3, np.uint8), (12, np.uint8), (257, np.uint16)])
def test_any_number_of_classes_trains_a_model_of_that_many_outputs(
    tmp_path, n_classes, dtype, classes_folder
):
    from pipeline.runs.config import RunConfig
    from pipeline.runs.evaluate import evaluate
    from pipeline.runs.inference import load_model, predict
    from pipeline.runs.train import run

    root = classes_folder(tmp_path / "many", n_classes)
    out = prepare.prepare(folders.folder_spec("many", root), root, tmp_path / "many.h5", **_quiet())
    images, labels = hdf5.load(out, "test")
    assert labels.dtype == dtype and labels.max() == n_classes - 1
    config = RunConfig(
        data=str(out),
        model="mlp",
        loss="nllr_keras",
        optimizer="sgd",
        epochs=1,
        batch_size=6,
        seed=1,
        model_options={"hidden": 8},
    )
    run(config, tmp_path / "run", quiet=True, log=lambda *a: None)
    apply, params, _, _ = load_model(tmp_path / "run")
    assert predict(apply, params, images).shape == (len(images), n_classes)
    metrics = evaluate(tmp_path / "run", out, tmp_path / "metrics.json")
    assert np.array(metrics["confusion_matrix"]).shape == (n_classes, n_classes)
    assert np.array(metrics["confusion_matrix"]).sum() == len(images)
