"""The prepared dataset file, written and read in one place:

    /train/images  uint8 (N, H, W, C)     /test/images  uint8 (N, H, W, C)
    /train/labels  (N,)                   /test/labels  (N,)

labels in the smallest unsigned type that holds the class count (`label_dtype`),

chunked and gzip-compressed, with attributes naming the dataset, its classes,
the source files and the SHA-256 of each payload, the SHA-256 of its content
(classes, images and labels: what a run trains on) and the softloss version.
`write` goes to a temporary file beside the target and renames it into place,
so an interrupted write never leaves a half-written dataset under its name;
`load` validates such a file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np

from .. import __version__
from ..common.errors import DataError
from ..common.files import atomic_path

FORMAT_VERSION = 1
SPLITS = ("train", "test")


def label_dtype(n_classes):
    """The smallest unsigned integer type that holds labels 0..n_classes-1."""
    return next(t for t in (np.uint8, np.uint16, np.uint32) if n_classes <= np.iinfo(t).max + 1)


def content_digest(splits, classes):
    """SHA-256 of what a run trains and is measured on: the class names, and
    each split's images and labels (their shapes and values, whatever the
    labels' integer type)."""
    hasher = hashlib.sha256(json.dumps([str(c) for c in classes]).encode())
    for split in SPLITS:
        images, labels = splits[split]
        hasher.update(f"{split} {list(images.shape)}".encode())
        hasher.update(np.ascontiguousarray(images, np.uint8).tobytes())
        hasher.update(np.ascontiguousarray(labels, "<i8").tobytes())
    return hasher.hexdigest()


def write(out_path, spec, splits, sources):
    """`splits` ({split: (images, labels)}) of the dataset `spec` into `out_path`,
    with `sources` ({source file: SHA-256}) as provenance."""
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs.update(
            {
                "dataset": spec.name,
                "classes": list(spec.classes),
                "source": spec.source,
                "note": spec.note or "",
                "variant_of": spec.variant_of or "",
                "source_files": list(sources),
                "source_sha256": [sources[name] for name in sources],
                "content_sha256": content_digest(splits, spec.classes),
                "softloss_version": __version__,
                "format_version": FORMAT_VERSION,
            }
        )
        for split, (images, labels) in splits.items():
            group = h5.create_group(split)
            chunk = (max(1, min(len(images), (1 << 20) // images[0].size)), *images.shape[1:])
            group.create_dataset("images", data=images, chunks=chunk, compression="gzip", compression_opts=1)
            group.create_dataset("labels", data=labels, compression="gzip", compression_opts=1)
            group.attrs["class_counts"] = np.bincount(labels, minlength=len(spec.classes))
    return Path(out_path)


def classes(path):
    """The class names a prepared file records, in label order."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such dataset file; run `python -m pipeline prepare` first")
    try:
        with h5py.File(path, "r") as h5:
            return [str(name) for name in h5.attrs["classes"]]
    except (OSError, KeyError) as error:
        raise DataError(
            f"{path}: cannot read it as a prepared HDF5 dataset (its classes; truncated or corrupt?): {error}"
        ) from None


def recorded_digest(path):
    """The content SHA-256 a prepared file records (`content_digest`), computed
    from its contents for a file written before it was recorded."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such dataset file; run `python -m pipeline prepare` first")
    try:
        with h5py.File(path, "r") as h5:
            if "content_sha256" in h5.attrs:
                return str(h5.attrs["content_sha256"])
    except OSError as error:
        raise DataError(
            f"{path}: cannot read it as a prepared HDF5 dataset (truncated or corrupt?): {error}"
        ) from None
    return content_digest({split: load(path, split) for split in SPLITS}, classes(path))


def load(path, split):
    """(images uint8 (N, H, W, C), labels (N,)) of `split` in a prepared file.

    A file that is missing, truncated, not HDF5 or not made by `prepare` gets a
    DataError naming the file and the problem."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such dataset file; run `python -m pipeline prepare` first")
    try:
        with h5py.File(path, "r") as h5:
            if "dataset" not in h5.attrs or split not in h5:
                raise DataError(f"{path}: not a softloss dataset (no {split!r} group or dataset attribute)")
            group = h5[split]
            if "images" not in group or "labels" not in group:
                raise DataError(f"{path}: {split} lacks images or labels")
            images, labels = group["images"], group["labels"]
            if images.dtype != np.uint8 or labels.dtype.kind != "u" or images.ndim != 4 or labels.ndim != 1:
                raise DataError(f"{path}: {split} images/labels have the wrong type or rank")
            if images.shape[0] != labels.shape[0]:
                raise DataError(f"{path}: {split} has {images.shape[0]} images but {labels.shape[0]} labels")
            n_classes = len(h5.attrs.get("classes", ()))
            labels = labels[...]
            if len(labels) and labels.max() >= n_classes:
                raise DataError(f"{path}: {split} has label {int(labels.max())}, but {n_classes} classes")
            return images[...], labels
    except DataError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as error:
        raise DataError(
            f"{path}: cannot read it as a prepared HDF5 dataset (truncated or corrupt?): {error}"
        ) from None
