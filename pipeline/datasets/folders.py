"""Class-folder datasets: `split/class/image` PNG or JPEG files, as files or
inside tar.gz archives, every image decoded and checked."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..common.errors import DataError
from ..common.files import safe_members
from .fetch import check, digest
from .hdf5 import SPLITS, label_dtype
from .registry import Checksum, DatasetSpec

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


def _archive_names(archive_path):
    """(name, member, the open archive) of each file in a tar.gz archive."""
    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            for member in safe_members(archive):
                if member.isfile():
                    yield (member.name[2:] if member.name.startswith("./") else member.name), member, archive
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataError(f"{archive_path}: not a readable tar.gz archive ({error})") from None


def _archive_files(archives):
    for archive_path in archives:
        for name, member, archive in _archive_names(archive_path):
            yield name, f"{archive_path}:{member.name}", archive.extractfile(member).read()


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
        raise DataError(
            f"{where}: image of {pixels.shape[1]}x{pixels.shape[0]} pixels, expected {size[1]}x{size[0]}"
        )
    return pixels.reshape(*pixels.shape[:2], -1)


def folder_splits(spec, raw_dir):
    """Class folders, from the registry's archives (checked), or for a folder of
    one's own (`spec.files` empty) from `raw_dir/{train,test}/<class>/`, any
    tar.gz archives in `raw_dir` holding that layout, or `raw_dir` a list of
    such archives."""
    if isinstance(raw_dir, (list, tuple)):
        archives = [Path(a) for a in raw_dir]
        missing = [str(a) for a in archives if not a.is_file()]
        if missing:
            raise DataError(f"{missing[0]}: no such archive")
        raw_dir = archives[0].parent
        files, sources = (
            _archive_files(archives),
            {a.name: digest(a, Checksum("sha256", "", "file")) for a in archives},
        )
        return _decoded(spec, raw_dir, files, sources)
    raw_dir = Path(raw_dir)
    if spec.files:
        archives = [raw_dir / f.name for f in spec.files]
        for path, remote in zip(archives, spec.files):
            if not path.is_file():
                raise DataError(
                    f"{path}: missing; run `python -m pipeline fetch {spec.name} --out {raw_dir}` first"
                )
            check(path, remote)
        files, sources = _archive_files(archives), {f.name: f.checksum.hexdigest for f in spec.files}
    elif raw_dir.is_dir() and any((raw_dir / split).is_dir() for split in SPLITS):
        files, sources = _folder_files(raw_dir), None
    else:
        archives = sorted(raw_dir.glob("*.tar.gz")) if raw_dir.is_dir() else [raw_dir]
        if not archives or not all(a.is_file() for a in archives):
            raise DataError(f"{raw_dir}: neither train/ and test/ class folders nor tar.gz archives of them")
        files, sources = (
            _archive_files(archives),
            {a.name: digest(a, Checksum("sha256", "", "file")) for a in archives},
        )
    return _decoded(spec, raw_dir, files, sources)


def _place(name, where):
    """(split, class) of the file `name` (split/class/image) of a class-folder
    dataset, None for a hidden file; DataError naming `where` if it is misplaced."""
    parts = name.split("/")
    if parts[-1].startswith("."):
        return None  # hidden files (.DS_Store and the like)
    if len(parts) != 3 or parts[0] not in SPLITS:
        raise DataError(f"{where}: not at <split>/<class>/<image> with split train or test")
    if not parts[2].lower().endswith(IMAGE_SUFFIXES):
        raise DataError(f"{where}: not an image file (expected {', '.join(IMAGE_SUFFIXES)})")
    return parts[0], parts[1]


def _classes(counts, where, dataset, declared=()):
    """The classes of a dataset whose splits hold {split: {class: images}}: the
    `declared` ones, else every class folder's name in sorted order; DataError
    naming `where` for a class missing from a split, or fewer than two."""
    classes = tuple(declared) or tuple(sorted(set().union(*counts.values())))
    for split in SPLITS:
        for name in sorted(set(counts[split]) - set(classes)):
            raise DataError(f"{where}: {split}/{name}/ is not a class of {dataset} ({', '.join(classes)})")
        for name in classes:
            if not counts[split].get(name):
                raise DataError(f"{where}: class {name!r} has no images in {split}/")
    if len(classes) < 2:
        raise DataError(
            f"{where}: one class ({', '.join(classes) or 'none'}): a classifier needs two or more"
        )
    return classes


def class_names(name, paths):
    """The classes of the class-folder dataset `name` in `paths` (a folder, or
    archives), from its file names alone, checked as `prepare` checks them:
    what the config's checks know of it before anything is prepared."""
    counts = {split: {} for split in SPLITS}
    for path in map(Path, paths):
        if path.is_dir():
            for split in SPLITS:
                if not (path / split).is_dir():
                    raise DataError(
                        f"{path / split}: missing; a class-folder dataset holds {split}/<class>/<image> files"
                    )
            found = [
                (p.relative_to(path).as_posix(), str(p))
                for split in SPLITS
                for p in (path / split).rglob("*")
                if p.is_file()
            ]
        else:
            found = [(n, f"{path}:{n}") for n, _, _ in _archive_names(path)]
        for file, where in found:
            if placed := _place(file, where):
                counts[placed[0]][placed[1]] = counts[placed[0]].get(placed[1], 0) + 1
    return _classes(counts, ", ".join(map(str, paths)), name)


def _decoded(spec, raw_dir, files, sources):
    """(splits, sources, classes) of the (name, where, bytes) `files` of a class-folder dataset."""
    found = {split: {} for split in SPLITS}  # split -> class -> [(where, bytes)]
    digests = {split: hashlib.sha256() for split in SPLITS}
    for name, where, data in files:
        if (placed := _place(name, where)) is None:
            continue
        found[placed[0]].setdefault(placed[1], []).append((where, data))
        digests[placed[0]].update(f"{name}\0{len(data)}\0".encode() + data)
    counts = {split: {name: len(images) for name, images in found[split].items()} for split in SPLITS}
    classes = _classes(counts, raw_dir, spec.name, spec.classes)
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
            splits[split] = (np.stack(images), np.array(labels, label_dtype(len(classes))))
    if sources is None:
        sources = {f"{split}/ (every file's path and bytes)": digests[split].hexdigest() for split in SPLITS}
    return splits, sources, classes


def listing_digest(paths):
    """A digest of the name, size and modification time of every file under
    `paths` (folders or archives): it changes when a file inside a folder is
    added, removed or edited, which the folder's own time does not show."""
    hasher = hashlib.sha256()
    for path in map(Path, paths):
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in found:
            stat = file.stat()
            hasher.update(
                f"{file.relative_to(path) if path.is_dir() else file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
            )
    return hasher.hexdigest()[:16]


def folder_spec(name, raw_dir):
    """A DatasetSpec for a class-folder dataset of one's own (a folder, or a
    list of archives): classes in sorted folder order, image size and mode from
    its first image, nothing to fetch."""
    where = ", ".join(
        str(Path(p).resolve()) for p in (raw_dir if isinstance(raw_dir, (list, tuple)) else [raw_dir])
    )
    return DatasetSpec(
        name=name,
        format="image-folder",
        files=(),
        urls=(),
        classes=(),
        image_shape=None,
        source=f"class folders from {where}",
    )
