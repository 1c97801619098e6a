"""Raw dataset files -> one HDF5 file -> float32 minibatches.

`prepare` parses IDX (MNIST, Fashion-MNIST), CIFAR-10 binary records and
class folders of PNG or JPEG images (`split/class/image`, as files or inside
tar.gz archives), checking every header, size, image and label, and writes

    /train/images  uint8 (N, H, W, C)     /test/images  uint8 (N, H, W, C)
    /train/labels  uint8 (N,)             /test/labels  uint8 (N,)

chunked and gzip-compressed, with attributes naming the dataset, its classes,
the source files and the SHA-256 of each payload, and the softloss version.
It writes a temporary file beside the target and renames it into place, so an
interrupted `prepare` never leaves a half-written dataset under its name.
`load` validates such a file; `batches` iterates over it, seeded.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import tarfile
import zlib
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from . import __version__
from .backend import array_module
from .datasets import IDX_FILES, Checksum, DatasetSpec
from .datasets import get as get_dataset
from .errors import DataError
from .fetch import check, digest
from .files import atomic_path

FORMAT_VERSION = 1
SPLITS = ("train", "test")


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
        raise DataError(f"{name}: IDX dims {dims} need {expected} bytes, the file has {len(payload)} (truncated?)")
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
            raise DataError(f"{path}: missing; run `python -m pipeline fetch {spec.name} --out {raw_dir}` first")
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


def safe_members(archive: tarfile.TarFile, destination="."):
    """Every member of `archive`, after tarfile's `data` filter has passed it.

    The filter rejects paths escaping the destination ('..'), links pointing
    outside it and device files; it would merely strip a leading '/', so
    absolute paths are refused here, as is anything but a regular file or a
    directory. A hostile archive is refused whole."""
    members = []
    for member in archive.getmembers():
        if member.name.startswith(("/", "\\")) or os.path.isabs(member.name):
            raise DataError(f"{archive.name}: unsafe member {member.name!r} (absolute path); refusing the archive")
        try:
            tarfile.data_filter(member, destination)
        except tarfile.FilterError as error:
            raise DataError(f"{archive.name}: unsafe member {member.name!r} ({error}); refusing the archive") from None
        if not (member.isfile() or member.isdir()):
            raise DataError(f"{archive.name}: member {member.name!r} is not a regular file; refusing the archive")
        members.append(member)
    return members


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


# ------------------------------------------------------------ class folders
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MODES = {3: "RGB", 1: "L"}  # channels -> Pillow mode


def _folder_files(root):
    """(path inside the dataset, where it is, bytes) of every file under `root`'s splits."""
    for split in SPLITS:
        base = root / split
        if not base.is_dir():
            raise DataError(f"{base}: missing; a class-folder dataset holds {split}/<class>/<image> files")
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            yield path.relative_to(root).as_posix(), str(path), path.read_bytes()


def _archive_files(archives):
    for archive_path in archives:
        try:
            with tarfile.open(archive_path, "r:gz") as archive:
                for member in safe_members(archive):
                    if member.isfile():
                        name = member.name[2:] if member.name.startswith("./") else member.name
                        yield name, f"{archive_path}:{member.name}", archive.extractfile(member).read()
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise DataError(f"{archive_path}: not a readable tar.gz archive ({error})") from None


def decode_image(data, where, channels=None, size=None):
    """PNG/JPEG bytes -> uint8 (H, W, C). `channels` and `size` (H, W), when
    given, are required; an image of another mode or size is an error naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode, pixels = image.mode, np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{where}: not a decodable PNG or JPEG image ({error})") from None
    wanted = MODES.get(channels) if channels else None
    if (wanted and mode != wanted) or mode not in MODES.values():
        raise DataError(f"{where}: image mode {mode}, expected {wanted or 'RGB or L (grayscale)'}")
    if size is not None and pixels.shape[:2] != tuple(size):
        raise DataError(f"{where}: image of {pixels.shape[1]}x{pixels.shape[0]} pixels, expected {size[1]}x{size[0]}")
    return pixels.reshape(*pixels.shape[:2], -1)


def _folder_splits(spec, raw_dir):
    """Class folders, from the registry's archives (checked), or for a folder of
    one's own (`spec.files` empty) from `raw_dir/{train,test}/<class>/` or any
    tar.gz archives in `raw_dir` holding that layout."""
    raw_dir = Path(raw_dir)
    if spec.files:
        archives = [raw_dir / f.name for f in spec.files]
        for path, remote in zip(archives, spec.files):
            if not path.is_file():
                raise DataError(f"{path}: missing; run `python -m pipeline fetch {spec.name} --out {raw_dir}` first")
            check(path, remote)
        files, sources = _archive_files(archives), {f.name: f.checksum.hexdigest for f in spec.files}
    elif raw_dir.is_dir() and any((raw_dir / split).is_dir() for split in SPLITS):
        files, sources = _folder_files(raw_dir), None
    else:
        archives = sorted(raw_dir.glob("*.tar.gz")) if raw_dir.is_dir() else [raw_dir]
        if not archives or not all(a.is_file() for a in archives):
            raise DataError(f"{raw_dir}: neither train/ and test/ class folders nor tar.gz archives of them")
        files, sources = _archive_files(archives), {a.name: digest(a, Checksum("sha256", "", "file")) for a in archives}
    found = {split: {} for split in SPLITS}  # split -> class -> [(where, bytes)]
    digests = {split: hashlib.sha256() for split in SPLITS}
    for name, where, data in files:
        parts = name.split("/")
        if parts[-1].startswith("."):
            continue  # hidden files (.DS_Store and the like)
        if len(parts) != 3 or parts[0] not in SPLITS:
            raise DataError(f"{where}: not at <split>/<class>/<image> with split train or test")
        if not parts[2].lower().endswith(IMAGE_SUFFIXES):
            raise DataError(f"{where}: not an image file (expected {', '.join(IMAGE_SUFFIXES)})")
        found[parts[0]].setdefault(parts[1], []).append((where, data))
        digests[parts[0]].update(f"{name}\0{len(data)}\0".encode() + data)
    classes = spec.classes or tuple(sorted(found["train"]))
    for split in SPLITS:
        for name in sorted(set(found[split]) - set(classes)):
            raise DataError(f"{raw_dir}: {split}/{name}/ is not a class of {spec.name} ({', '.join(classes)})")
        for name in classes:
            if not found[split].get(name):
                raise DataError(f"{raw_dir}: class {name!r} has no images in {split}/")
    first_where, first = found["train"][classes[0]][0]
    shape = spec.image_shape or decode_image(first, first_where).shape
    total = sum(len(images) for split in found.values() for images in split.values())
    splits = {}
    with tqdm(total=total, desc=f"decoding {spec.name}", unit="img", disable=None) as bar:
        for split in SPLITS:
            images, labels = [], []
            for label, name in enumerate(classes):
                for where, data in sorted(found[split][name]):
                    images.append(decode_image(data, where, shape[2], shape[:2]))
                    labels.append(label)
                bar.update(len(found[split][name]))
            splits[split] = (np.stack(images), np.array(labels, np.uint8))
    if sources is None:
        sources = {f"{split}/ (every file's path and bytes)": digests[split].hexdigest() for split in SPLITS}
    return splits, sources, classes


def folder_spec(name, raw_dir):
    """A DatasetSpec for a class-folder dataset of one's own: classes in sorted
    folder order, image size and mode from its first image, nothing to fetch."""
    return DatasetSpec(name=name, format="image-folder", files=(), urls=(), classes=(), image_shape=None,
                       source=f"class folders from {Path(raw_dir).resolve()}")  # fmt: skip


# ------------------------------------------------------------------ prepare
def prepare(dataset, raw_dir, out_path, log=print):
    """Parse the raw files of `dataset` (a registry name or a DatasetSpec, e.g.
    `folder_spec`) in `raw_dir` into the HDF5 file `out_path`."""
    spec: DatasetSpec = get_dataset(dataset) if isinstance(dataset, str) else dataset
    if spec.format == "image-folder":
        splits, sources, classes = _folder_splits(spec, raw_dir)
        spec = dataclasses.replace(spec, classes=classes)
    else:
        parse = {"idx": _idx_splits, "cifar-binary": _cifar_splits}[spec.format]
        splits, sources = parse(spec, raw_dir)
    for split, (images, _) in splits.items():
        expected = (spec.split_sizes or {}).get(split)
        if expected is not None and len(images) != expected:
            raise DataError(f"{raw_dir}: {spec.name} {split} has {len(images)} examples, expected {expected}")
    with atomic_path(out_path) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.attrs.update({
                "dataset": spec.name,
                "classes": list(spec.classes),
                "source": spec.source,
                "note": spec.note or "",
                "variant_of": spec.variant_of or "",
                "source_files": list(sources),
                "source_sha256": [sources[name] for name in sources],
                "softloss_version": __version__,
                "format_version": FORMAT_VERSION,
            })  # fmt: skip
            for split, (images, labels) in splits.items():
                group = h5.create_group(split)
                chunk = (max(1, min(len(images), (1 << 20) // images[0].size)), *images.shape[1:])
                group.create_dataset("images", data=images, chunks=chunk, compression="gzip", compression_opts=1)
                group.create_dataset("labels", data=labels, compression="gzip", compression_opts=1)
                group.attrs["class_counts"] = np.bincount(labels, minlength=len(spec.classes))
    for split, (images, labels) in splits.items():
        log(f"{out_path}: {split} {images.shape} images, labels {np.bincount(labels).tolist()}")
    return Path(out_path)


# --------------------------------------------------------------------- load
def load(path, split):
    """(images uint8 (N, H, W, C), labels uint8 (N,)) of `split` in a prepared file.

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
            if images.dtype != np.uint8 or labels.dtype != np.uint8 or images.ndim != 4 or labels.ndim != 1:
                raise DataError(f"{path}: {split} images/labels have the wrong type or rank")
            if images.shape[0] != labels.shape[0]:
                raise DataError(f"{path}: {split} has {images.shape[0]} images but {labels.shape[0]} labels")
            return images[...], labels[...]
    except DataError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as error:
        raise DataError(f"{path}: cannot read it as a prepared HDF5 dataset (truncated or corrupt?): {error}") from None


# ------------------------------------------------------------------ batches
def shift_and_flip(images, rng, shift=0.1, flip=True):
    """Keras ImageDataGenerator(width_shift_range=shift, height_shift_range=shift,
    horizontal_flip=flip, fill_mode='nearest') on float images (N, H, W, C):
    per image a random sub-pixel shift of up to `shift` of each side, bilinear,
    edges repeated, then a left-right flip with probability 1/2."""
    n, h, w, _ = images.shape
    dy = rng.uniform(-shift, shift, n) * h
    dx = rng.uniform(-shift, shift, n) * w
    ys = np.clip(np.arange(h)[None, :] - dy[:, None], 0, h - 1)  # source rows (N, H)
    xs = np.clip(np.arange(w)[None, :] - dx[:, None], 0, w - 1)  # source cols (N, W)
    y0, x0 = np.floor(ys).astype(np.intp), np.floor(xs).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy = (ys - y0).astype(images.dtype)[:, :, None, None]
    wx = (xs - x0).astype(images.dtype)[:, None, :, None]
    flipped = rng.random(n) < 0.5 if flip else np.zeros(n, bool)
    # The draws and the per-image indices and weights are small: made on the
    # host from `rng`, then used wherever the images are (host or GPU).
    xp = array_module(images)
    y0, y1, x0, x1, wy, wx, flipped = (xp.asarray(a) for a in (y0, y1, x0, x1, wy, wx, flipped))
    idx = xp.arange(n)[:, None, None]
    top = images[idx, y0[:, :, None], x0[:, None, :]] * (1 - wx) + images[idx, y0[:, :, None], x1[:, None, :]] * wx
    bottom = images[idx, y1[:, :, None], x0[:, None, :]] * (1 - wx) + images[idx, y1[:, :, None], x1[:, None, :]] * wx
    out = top * (1 - wy) + bottom * wy
    return xp.where(flipped[:, None, None, None], out[:, :, ::-1], out) if flip else out


def batches(images, targets, batch_size, rng, *, shuffle=True, augment=False, drop_last=False):
    """Minibatches (float32 images in [0, 1], targets) for one epoch.

    `targets` is the labels array, or a dict of per-example arrays such as
    {"labels": ..., "negative": ...}; each batch holds the same structure, with
    labels as int64. `rng` (a numpy Generator) decides the order and the
    augmentation, so one seed fixes the whole stream, on the host or on a GPU
    (the arrays may live there). `augment` applies `shift_and_flip`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    xp = array_module(images)
    n = len(images)
    order = rng.permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        index = xp.asarray(order[start : start + batch_size])
        x = images[index].astype(np.float32)
        x /= 255.0
        if augment:
            x = shift_and_flip(x, rng)
        if isinstance(targets, dict):
            yield x, {name: a[index].astype(np.int64) if name == "labels" else a[index] for name, a in targets.items()}
        else:
            yield x, targets[index].astype(np.int64)
