"""Inputs are checked before use: a prepared file against its sidecar (size, SHA-256, shapes,
dtypes, split sizes) before training or evaluation, raw image files against their dataset's
layout. Each problem is one paragraph naming the file and the command that regenerates it, with
a non-zero exit, no traceback and nothing left under results/."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from odeflows.cli import main
from odeflows.data.images import CorruptRawData, load_image_arrays
from odeflows.data.prepared import PreparedDataError, load, verify

RUN = ["--scale", "smoke", "--experiment", "anode_toy", "--dataset", "g1d", "--model", "node",
       "--seed", "0", "--config-dir", str(ROOT / "config")]


@pytest.fixture
def g1d(tmp_path, monkeypatch) -> Path:
    """data/prepared/smoke/g1d.npz of a project directory (the cwd), made by `odeflows prepare`."""
    monkeypatch.chdir(tmp_path)
    out = Path("data/prepared/smoke/g1d.npz")
    assert main(["prepare", "--dataset", "g1d", "--scale", "smoke", "--out", str(out),
                 "--config-dir", str(ROOT / "config")]) == 0
    return out


def _flip(path: Path, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + n] = bytes(b ^ 0xFF for b in data[mid:mid + n])
    path.write_bytes(bytes(data))


def _train(data: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["train", *RUN, "--data", str(data), "--out", "results/smoke/runs/r/seed0",
               "--quiet"])
    return rc, capsys.readouterr().err


def test_sidecar_records_size_shapes_dtypes_and_split_sizes(g1d):
    meta = json.loads(g1d.with_suffix(".json").read_text())
    assert meta["bytes"] == g1d.stat().st_size
    arrays = load(g1d, strict=True)
    assert meta["arrays"] == {k: {"shape": list(v.shape), "dtype": str(v.dtype)}
                              for k, v in arrays.items()}
    assert meta["sizes"] == {s: len(arrays[f"x_{s}"]) for s in ("train", "val", "test")}


def test_corrupt_prepared_file_stops_training_before_the_run_directory(g1d, capsys):
    _flip(g1d)
    rc, err = _train(g1d, capsys)
    assert rc == 2 and "Traceback" not in err
    assert str(g1d) in err and "sha256" in err and "corrupt" in err
    assert ("`odeflows prepare --dataset g1d --scale smoke --out data/prepared/smoke/g1d.npz`"
            in err)
    assert len(err.strip().splitlines()) == 1  # one paragraph
    assert not Path("results").exists()


@pytest.mark.parametrize("damage, says", [
    (lambda p: p.write_bytes(p.read_bytes() + b"appended"), "bytes where its sidecar records"),
    (lambda p: p.write_bytes(p.read_bytes()[:-100]), "bytes where its sidecar records"),
    (lambda p: p.with_suffix(".json").unlink(), "has no sidecar"),
    (lambda p: p.unlink(), "is missing"),
])
def test_each_kind_of_bad_prepared_file_is_named(g1d, capsys, damage, says):
    damage(g1d)
    rc, err = _train(g1d, capsys)
    assert rc == 2 and says in err and str(g1d) in err and "Traceback" not in err
    assert not Path("results").exists()


def test_evaluation_checks_its_data_too(g1d, capsys):
    run = Path("results/smoke/runs/r/seed0")
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"task": "regression"}))
    _flip(g1d)
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--data", str(g1d)]) == 2
    err = capsys.readouterr().err
    assert str(g1d) in err and "sha256" in err
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]


def test_sidecar_shapes_and_sizes_are_checked_on_load(g1d):
    side = g1d.with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["arrays"]["x_val"]["shape"][0] += 1
    meta["sizes"]["test"] += 3
    side.write_text(json.dumps(meta))
    with pytest.raises(PreparedDataError) as err:
        load(g1d)
    assert "x_val is (" in str(err.value) and "the test split has" in str(err.value)


def test_unhashed_corrupt_file_is_a_clear_error_not_a_zip_traceback(g1d):
    # a sidecar without hash or size (hand-made data): the zip reader's error, named
    side = g1d.with_suffix(".json")
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({k: v for k, v in meta.items() if k not in ("sha256", "bytes")}))
    _flip(g1d, 4096)
    with pytest.raises(PreparedDataError, match="cannot be read as .npz"):
        load(g1d)
    with pytest.raises(PreparedDataError, match="without the file's sha256"):
        verify(g1d)


def test_files_without_a_sidecar_still_load_outside_the_cli(tmp_path):
    path = tmp_path / "hand.npz"
    np.savez(path, x_train=np.zeros((3, 2)), x_val=np.zeros((1, 2)), x_test=np.zeros((1, 2)))
    assert load(path)["x_train"].shape == (3, 2)


def test_a_file_changed_after_a_check_is_hashed_again(g1d):
    # hashes are cached per (path, size, mtime): a rewrite in place must not hit the cache
    verify(g1d)
    _flip(g1d)
    with pytest.raises(PreparedDataError, match="sha256"):
        verify(g1d)


def _png(path: Path, width: int, height: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 7, dtype=np.uint8)).save(path)


def test_raw_image_of_the_wrong_size_is_named_with_the_layout(tmp_path):
    _png(tmp_path / "celebahq256/train/00000.png", 256, 256)
    _png(tmp_path / "celebahq256/train/00001.png", 128, 256)
    _png(tmp_path / "celebahq256/validation/00000.png", 256, 256)
    with pytest.raises(CorruptRawData) as err:
        load_image_arrays("celebahq256", tmp_path)
    msg = str(err.value)
    assert "00001.png is 128x256 where 256x256 is expected" in msg
    assert str(tmp_path / "celebahq256/validation") in msg  # the expected layout


def test_raw_file_that_is_no_image_is_named(tmp_path):
    _png(tmp_path / "celebahq256/train/00000.png", 256, 256)
    bad = tmp_path / "celebahq256/validation/00000.png"
    bad.parent.mkdir(parents=True)
    bad.write_text("not a png")
    with pytest.raises(CorruptRawData, match=f"raw image {bad} cannot be decoded"):
        load_image_arrays("celebahq256", tmp_path)


def test_imagenet64_batch_of_the_wrong_shape_is_named(tmp_path):
    from odeflows.data.images import DATASETS

    for f in DATASETS["imagenet64"].files:
        path = tmp_path / f
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, data=np.zeros((2, 32 * 32 * 3), np.uint8), labels=np.array([1, 2]))
    with pytest.raises(CorruptRawData, match="holds 'data' \\(2, 3072\\) uint8.*expected an npz"):
        load_image_arrays("imagenet64", tmp_path)


def test_cli_prints_raw_data_errors_without_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _png(tmp_path / "data/raw/celebahq256/train/0.png", 64, 64)
    _png(tmp_path / "data/raw/celebahq256/validation/0.png", 256, 256)
    rc = main(["prepare", "--dataset", "celebahq256", "--scale", "smoke", "--out",
               "data/prepared/smoke/celebahq256.npz", "--config-dir", str(ROOT / "config")])
    err = capsys.readouterr().err
    assert rc == 2 and "is 64x64 where 256x256 is expected" in err and "Traceback" not in err
    assert not Path("data/prepared/smoke/celebahq256.npz").exists()
