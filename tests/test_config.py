"""Configuration: validation errors name the key and the allowed values; the paper matrix."""

from __future__ import annotations

import shutil

import pytest
import yaml

from conftest import ROOT
from odeflows.config import ConfigError, RunSpec, config_hash, resolve_run, run_matrix

ALL = ["anode_toy", "affjord_toy", "node_adjoint"]


def _copy_config(tmp_path):
    shutil.copytree(ROOT / "config", tmp_path / "config")
    return tmp_path / "config"


def _edit(path, fn):
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))


def test_paper_matrix_has_the_papers_repeat_counts():
    specs = run_matrix({"scale": "paper", "experiments": ALL, "config_dir": str(ROOT / "config")})
    count = {}
    for s in specs:
        key = (s.experiment, s.dataset, s.model)
        count[key] = count.get(key, 0) + 1
    assert {v for k, v in count.items() if k[0] == "anode_toy"} == {20}
    assert {v for k, v in count.items() if k[0] == "affjord_toy"} == {30}
    assert len([k for k in count if k[0] == "affjord_toy"]) == 2 * 11
    assert len([k for k in count if k[0] == "anode_toy"]) == 3 * 3


def test_paper_affjord_settings():
    cfg = resolve_run(RunSpec("paper", "affjord_toy", "hash", "affjord", 0), ROOT / "config")
    assert cfg["solver"] == {"method": "rk4", "steps": 40, "adjoint": False}
    assert cfg["train"]["batch_size"] == 512 and cfg["train"]["lr"] == 1e-3
    assert cfg["model_cfg"]["divergence"] == "exact"


@pytest.mark.parametrize("mutate,key,allowed", [
    (lambda d: d["models"].append("nodee"), "models", "anode"),
    (lambda d: d["defaults"]["solver"].update(method="rk5"), "solver.method", "dopri5"),
    (lambda d: d["scales"]["smoke"].update(seeds=-1), "scales.smoke.seeds", None),
    (lambda d: d["datasets"].append("mnist9"), "datasets", "spheres2d"),
    (lambda d: d["defaults"]["train"].update(batch_size=0), "train.batch_size", None),
])
def test_bad_experiment_values_are_named(tmp_path, mutate, key, allowed):
    cdir = _copy_config(tmp_path)
    _edit(cdir / "experiments" / "anode_toy.yaml", mutate)
    with pytest.raises(ConfigError) as err:
        for s in run_matrix({"scale": "smoke", "experiments": ["anode_toy"],
                             "config_dir": str(cdir)}):
            resolve_run(s, cdir)
    msg = str(err.value)
    assert key.split(".")[-1] in msg
    if allowed:
        assert allowed in msg


def test_unknown_scale_and_experiment():
    with pytest.raises(ConfigError, match="smoke, laptop, paper"):
        run_matrix({"scale": "huge", "experiments": ["anode_toy"],
                    "config_dir": str(ROOT / "config")})
    with pytest.raises(ConfigError, match="affjord_toy"):
        run_matrix({"scale": "smoke", "experiments": ["anode_tyo"],
                    "config_dir": str(ROOT / "config")})


def test_config_hash_changes_only_with_the_run_config(tmp_path):
    cdir = _copy_config(tmp_path)
    spec_a = RunSpec("smoke", "affjord_toy", "hash", "ffjord", 0)
    spec_b = RunSpec("smoke", "anode_toy", "g1d", "node", 0)
    before = [config_hash(resolve_run(s, cdir)) for s in (spec_a, spec_b)]
    _edit(cdir / "experiments" / "affjord_toy.yaml",
          lambda d: d["scales"]["smoke"]["overrides"]["train"].update(iterations=31))
    resolve_cache_clear()
    after = [config_hash(resolve_run(s, cdir)) for s in (spec_a, spec_b)]
    assert after[0] != before[0] and after[1] == before[1]
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})


def resolve_cache_clear():
    from odeflows import config

    config._load_experiment_cached.cache_clear()


IMAGES = ["anode_images", "affjord_images", "rnode_images", "rnode_ablation", "affjord_rnode"]


def _paper(exp, ds, model):
    return resolve_run(RunSpec("paper", exp, ds, model, 0), ROOT / "config")


def test_paper_image_settings_follow_the_references():
    rnode = _paper("rnode_images", "mnist", "rnode")
    assert rnode["solver"]["method"] == "rk4" and rnode["solver"]["step_size"] == 0.25
    assert rnode["eval_solver"] == {"method": "dopri5", "rtol": 1e-5, "atol": 1e-5,
                                    "adjoint": False}
    m = rnode["model_cfg"]
    assert (m["kinetic"], m["jacobian"], m["probe"], m["zero_last"], m["num_blocks"]) == (
        0.01, 0.01, "gaussian", True, 2)
    assert rnode["train"]["batch_size"] == 200 and rnode["train"]["epochs"] == 100
    assert rnode["eval"]["dequantization"] == "midpoint"
    assert _paper("rnode_images", "cifar10", "rnode")["model_cfg"]["alpha"] == 0.05
    vanilla = _paper("rnode_images", "mnist", "ffjord")
    assert vanilla["solver"]["method"] == "dopri5" and vanilla["model_cfg"]["kinetic"] == 0.0
    aff = _paper("affjord_images", "cifar10", "affjord")
    assert aff["model"] == "affjord" and aff["model_cfg"]["layer"] == "hyper"
    assert aff["train"]["lr"] == 6e-4 and aff["model_cfg"]["num_blocks"] == 1
    concat = _paper("affjord_images", "mnist", "affjord_concat")
    assert concat["model"] == "affjord" and concat["variant"] == "affjord_concat"
    assert concat["model_cfg"]["layer"] == "concat"
    node = _paper("anode_images", "cifar10", "node")
    anode = _paper("anode_images", "cifar10", "anode")
    assert node["model_cfg"]["filters"] == 125
    assert (anode["model_cfg"]["filters"], anode["model_cfg"]["augment_channels"]) == (64, 10)
    assert anode["solver"] == {"method": "dopri5", "rtol": 1e-3, "atol": 1e-3, "adjoint": True,
                               "max_num_steps": 1000}
    assert _paper("affjord_rnode", "hash", "affjord_rnode")["task"] == "density"
    assert _paper("affjord_rnode", "mnist", "affjord_rnode")["task"] == "image_density"


def test_paper_image_matrix_and_multi_gpu_launch():
    from odeflows.config import launcher, run_resources

    specs = run_matrix({"scale": "paper", "experiments": IMAGES,
                        "config_dir": str(ROOT / "config")})
    per_cell = {}
    for s in specs:
        per_cell[(s.experiment, s.dataset, s.model)] = per_cell.get(
            (s.experiment, s.dataset, s.model), 0) + 1
    assert per_cell[("anode_images", "svhn", "anode")] == 5
    assert per_cell[("affjord_images", "celeba64", "affjord")] == 5
    assert per_cell[("rnode_images", "imagenet64", "rnode")] == 1
    res = run_resources("paper", "rnode_images", "imagenet64", ROOT / "config")
    assert res["gpu"] == 4 and launcher(res).startswith("torchrun --standalone "
                                                        "--nproc_per_node=4 --no-python")
    assert launcher(run_resources("paper", "rnode_images", "mnist", ROOT / "config")) == ""
    imnet = _paper("rnode_images", "imagenet64", "rnode")
    assert imnet["train"]["batch_size"] == 50 and imnet["train"]["epochs"] == 4
    assert _paper("rnode_images", "celebahq256", "rnode")["data"]["bits"] == 5


def test_default_scale_uses_only_offline_image_data():
    specs = run_matrix({"scale": "laptop", "experiments": IMAGES,
                        "config_dir": str(ROOT / "config")})
    assert {s.dataset for s in specs} <= {"digits8x8", "mnist5k", "hash"}


def test_unknown_model_variant_is_named(tmp_path):
    cfg_dir = _copy_config(tmp_path)
    _edit(cfg_dir / "experiments" / "affjord_images.yaml",
          lambda d: d["models"].append("affjord_hyperr"))
    with pytest.raises(ConfigError, match="affjord_hyperr.*variants"):
        run_matrix({"scale": "smoke", "experiments": ["affjord_images"],
                    "config_dir": str(cfg_dir)})
