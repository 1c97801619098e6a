"""Raw dataset files -> one HDF5 file (pipeline.datasets.hdf5).

`prepare` parses IDX (MNIST, Fashion-MNIST), CIFAR-10 binary records and
class folders of PNG or JPEG images (pipeline.datasets.folders), checking
every header, size, image and label.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import tarfile
import zlib
from pathlib import Path

import numpy as np

from ..common.errors import DataError
from ..common.files import safe_members
from . import hdf5
from .fetch import check
from .folders import folder_splits
from .registry import IDX_FILES, DatasetSpec
from .registry import get as get_dataset


# ---------------------------------------------------------------------- IDX
def parse_idx(payload, name, ndim):
    """An IDX byte string -> uint8 array, checking magic, rank and length."""
    if len(payload) < 4 or payload[:2] != b"\x00\x00":
        raise DataError(f"{name}: not an IDX file (bad magic number {payload[:4].hex()})")
    if payload[2] != 0x08:
        raise DataError(f"{name}: IDX element type 0x{payload[2]:02x}, expected 0x08 (unsigned byte)")
    if payload[3] != ndim:
        raise DataError(f"{name}: IDX file of rank {payload[3]}, expected {ndim}")
    header = 4 + 4 * ndim
    if len(payload) < header:
        raise DataError(f"{name}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(payload, ">u4", ndim, 4))
    expected = header + int(np.prod(dims))
    if len(payload) != expected:
        raise DataError(
            f"{name}: IDX dims {dims} need {expected} bytes, the file has {len(payload)} (truncated?)"
        )
    return np.frombuffer(payload, np.uint8, offset=header).reshape(dims)


def _read_gzip(path):
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: not a readable gzip file ({error})") from None


def _idx_splits(spec, raw_dir):
    raw = {}
    for name in IDX_FILES:
        path = Path(raw_dir) / name
        if not path.is_file():
            raise DataError(
                f"{path}: missing; run `python -m pipeline fetch {spec.name} --out {raw_dir}` first"
            )
        raw[name] = _read_gzip(path)
        check(path, spec.file(name), payload=raw[name])
    sources = {name: hashlib.sha256(payload).hexdigest() for name, payload in raw.items()}
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = parse_idx(raw[f"{prefix}-images-idx3-ubyte.gz"], f"{prefix}-images-idx3-ubyte.gz", 3)
        labels = parse_idx(raw[f"{prefix}-labels-idx1-ubyte.gz"], f"{prefix}-labels-idx1-ubyte.gz", 1)
        if images.shape[1:] != spec.image_shape[:2]:
            raise DataError(f"{prefix}-images: images of {images.shape[1:]}, expected {spec.image_shape[:2]}")
        if len(images) != len(labels):
            raise DataError(f"{prefix}: {len(images)} images but {len(labels)} labels")
        splits[split] = (images[..., None], labels)
    return splits, sources


# -------------------------------------------------------------- CIFAR binary
CIFAR_MEMBERS = {
    "train": [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)],
    "test": ["cifar-10-batches-bin/test_batch.bin"],
}
CIFAR_RECORD = 1 + 32 * 32 * 3


def parse_cifar_records(payload, name, n_classes=10):
    """CIFAR-10 binary records (1 label byte + 3072 pixel bytes as R, G, B
    planes) -> (uint8 images (N, 32, 32, 3), uint8 labels (N,))."""
    if len(payload) == 0 or len(payload) % CIFAR_RECORD:
        raise DataError(f"{name}: {len(payload)} bytes is not a whole number of {CIFAR_RECORD}-byte records")
    records = np.frombuffer(payload, np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].copy()
    if labels.max() >= n_classes:
        raise DataError(f"{name}: label {int(labels.max())} out of range [0, {n_classes})")
    images = np.ascontiguousarray(records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels


def _cifar_splits(spec, raw_dir):
    path = Path(raw_dir) / spec.files[0].name
    if not path.is_file():
        raise DataError(f"{path}: missing; run `python -m pipeline fetch {spec.name} --out {raw_dir}` first")
    check(path, spec.files[0])
    splits, sources = {}, {}
    try:
        with tarfile.open(path, "r:gz") as archive:
            members = {m.name: m for m in safe_members(archive)}
            for split, names in CIFAR_MEMBERS.items():
                parts = []
                for name in names:
                    if name not in members or not members[name].isfile():
                        raise DataError(f"{path}: no member {name}; not the CIFAR-10 binary version?")
                    payload = archive.extractfile(members[name]).read()
                    sources[name] = hashlib.sha256(payload).hexdigest()
                    parts.append(parse_cifar_records(payload, name, len(spec.classes)))
                splits[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataError(f"{path}: not a readable tar.gz archive ({error})") from None
    return splits, sources


# ------------------------------------------------------------------ prepare
def prepare(dataset, raw_dir, out_path, log=print):
    """Parse the raw files of `dataset` (a registry name or a DatasetSpec, e.g.
    `folder_spec`) in `raw_dir` into the HDF5 file `out_path`."""
    spec: DatasetSpec = get_dataset(dataset) if isinstance(dataset, str) else dataset
    if spec.format == "image-folder":
        splits, sources, classes = folder_splits(spec, raw_dir)
        spec = dataclasses.replace(spec, classes=classes)
    else:
        parse = {"idx": _idx_splits, "cifar-binary": _cifar_splits}[spec.format]
        splits, sources = parse(spec, raw_dir)
    for split, (images, _) in splits.items():
        expected = (spec.split_sizes or {}).get(split)
        if expected is not None and len(images) != expected:
            raise DataError(f"{raw_dir}: {spec.name} {split} has {len(images)} examples, expected {expected}")
    hdf5.write(out_path, spec, splits, sources)
    for split, (images, labels) in splits.items():
        log(f"{out_path}: {split} {images.shape} images, labels {np.bincount(labels).tolist()}")
    return Path(out_path)
