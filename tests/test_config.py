"""Configuration: names from their single sources, strict keys, every problem reported at once
with the key path, the layer that set it and the closest known key; scales as configuration."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from odeflows.config import ConfigError, complete_config, plan, resolve_run, run_matrix
from odeflows.provenance import config_hash
from odeflows.rundir import RunSpec

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


def test_whole_paper_scale_job_matrix():
    """The papers' job matrix (the dry run of `snakemake --config scale=paper` schedules one train
    and one evaluate job per run): toy 20 x 3 models x 3 sets + 30 x 2 x 11 + 3 x 2 node_adjoint;
    images ANODE 5 x 2 x 4, AFFJORD 5 x 4 x 4, RNODE 3 x 2 x 4, ablation 3 x 4, affjord_rnode
    5 x 4 x (hash + MNIST); plus the per-pixel histogram baseline beside every image-density
    model (AFFJORD 5 x 4, RNODE 3 x 4, ablation 3, affjord_rnode 5 x MNIST). RNODE runs 3 seeds
    where the paper ran one, so that its claims can be decided."""
    specs = run_matrix({"scale": "paper", "config_dir": str(ROOT / "config")})
    by_exp = {}
    for s in specs:
        by_exp[s.experiment] = by_exp.get(s.experiment, 0) + 1
    assert by_exp == {"anode_toy": 180, "affjord_toy": 660, "node_adjoint": 6,
                      "anode_images": 40, "affjord_images": 80 + 20, "rnode_images": 24 + 12,
                      "rnode_ablation": 12 + 3, "affjord_rnode": 40 + 5} | {
        k: v for k, v in by_exp.items() if k not in (
            "anode_toy", "affjord_toy", "node_adjoint", "anode_images", "affjord_images",
            "rnode_images", "rnode_ablation", "affjord_rnode")}


def test_resolved_config_is_complete_and_explicit():
    cfg = resolve_run(RunSpec("paper", "affjord_toy", "hash", "affjord", 0), ROOT / "config")
    assert cfg["solver"]["method"] == "rk4" and cfg["solver"]["steps"] == 40
    assert cfg["solver"]["adjoint"] is False
    assert cfg["train"]["batch_size"] == 512 and cfg["train"]["lr"] == 1e-3
    assert cfg["model_options"]["divergence"] == "exact"
    # every option the model entry declares is written out, defaults included
    assert cfg["model_options"]["fused"] is True and cfg["model_options"]["aug_dim"] == 2
    assert cfg["task"] == "density" and cfg["data"] == {"generator": "hash", "kind": "vectors"}
    # RNODE's settings come from its entry's declared defaults, not from name checks
    rnode = resolve_run(RunSpec("paper", "affjord_rnode", "hash", "rnode", 0), ROOT / "config")
    assert (rnode["model_options"]["kinetic"], rnode["model_options"]["jacobian"]) == (0.01, 0.01)


def _anode(d):
    return d


# (file under config/, mutation, fragments the message must contain)
MALFORMED = [
    ("experiments/anode_toy.yaml", lambda d: d["models"].append("nodee"),
     ["models", "'nodee'", "did you mean 'node'"]),
    ("experiments/anode_toy.yaml", lambda d: d["settings"]["solver"].update(method="rk5"),
     ["solver.method", "'rk5'", "dopri5"]),
    ("experiments/anode_toy.yaml", lambda d: d["scales"]["smoke"].update(seeds=-1),
     ["scales.smoke.seeds", "-1"]),
    ("experiments/anode_toy.yaml", lambda d: d["datasets"].append("mnist9"),
     ["datasets", "'mnist9'", "did you mean 'mnist'"]),
    ("experiments/anode_toy.yaml", lambda d: d["settings"]["train"].update(batch_size=0),
     ["train.batch_size", "(set in settings)"]),
    ("experiments/anode_toy.yaml", lambda d: d["settings"]["model_options"].update(hiden=64),
     ["model_options.hiden", "unknown key", "did you mean 'hidden'", "(set in settings)"]),
    ("experiments/anode_toy.yaml", lambda d: d["settings"]["train"].update(epoch=5),
     ["train.epoch", "did you mean 'epochs'"]),
    ("experiments/anode_toy.yaml", lambda d: d["settings"]["solver"].update(stepz=3),
     ["solver.stepz", "did you mean 'steps'"]),
    ("experiments/anode_toy.yaml", lambda d: d.update(setings=d.pop("settings")),
     ["setings", "unknown key", "did you mean 'settings'"]),
    ("experiments/anode_toy.yaml", lambda d: d["scales"].update(smok=d["scales"].pop("smoke")),
     ["scales.smok", "did you mean 'smoke'", "no settings for scale 'smoke'"]),
    ("experiments/anode_toy.yaml", lambda d: d["settings"]["train"].update(lr="fast"),
     ["train.lr", "'fast'"]),
    ("experiments/anode_toy.yaml", lambda d: d["settings"]["model_options"].update(hidden=-3),
     ["model_options.hidden", "-3"]),
    ("experiments/anode_toy.yaml",
     lambda d: d["settings"]["model_options"].update(nonlinearity="sigmoid"),
     ["model_options.nonlinearity", "'sigmoid'", "relu"]),
    ("experiments/anode_toy.yaml", lambda d: d["settings"]["eval"].update(grid_point=3),
     ["eval.grid_point", "unknown key", "task 'regression'"]),
    ("experiments/anode_toy.yaml",
     lambda d: d["scales"]["smoke"]["overrides"]["train"].update(epochs=0),
     ["train.epochs", "overrides)", "minimum of 1"]),
    ("experiments/anode_toy.yaml",
     lambda d: d["model_settings"].update(nod={"model_options": {"hidden": 8}}),
     ["model_settings.nod", "did you mean 'node'"]),
    ("experiments/anode_toy.yaml",
     lambda d: d["dataset_settings"].update(g1dd={"model_options": {"hidden": 8}}),
     ["dataset_settings.g1dd", "did you mean 'g1d'"]),
    ("experiments/anode_toy.yaml",
     lambda d: d["scales"]["smoke"].update(datasets=["g1d", "spheres3d"]),
     ["scales.smoke.datasets", "'spheres3d'", "did you mean 'spheres2d'"]),
    ("experiments/anode_toy.yaml",
     lambda d: d["scales"]["smoke"].update(models=["node", "anodee"]),
     ["scales.smoke.models", "'anodee'", "did you mean 'anode'"]),
    ("experiments/anode_toy.yaml",
     lambda d: d["scales"]["paper"]["resources"].update(gpus=2),
     ["scales.paper.resources.gpus", "did you mean 'gpu'"]),
    ("experiments/anode_toy.yaml", lambda d: d["settings"]["solver"].update(rtol=-1e-3),
     ["solver.rtol", "-0.001"]),
    ("experiments/anode_toy.yaml", lambda d: d.update(task="regresion"),
     ["task", "'regresion'", "did you mean 'regression'"]),
    ("experiments/anode_toy.yaml", lambda d: d.update(variants={"big_node": "nodes"}),
     ["variants.big_node", "'nodes'", "did you mean 'node'"]),
    ("experiments/anode_toy.yaml", lambda d: d.update(id="anode_toys"),
     ["id", "'anode_toys'", "file name"]),
    ("experiments/anode_toy.yaml",
     lambda d: d["scales"]["smoke"]["overrides"]["train"].update(epochs=None),
     ["train: give epochs or iterations"]),
    ("experiments/anode_toy.yaml",
     lambda d: d["settings"]["model_options"].update(field="hyper_t"),
     ["model_options.field", "unknown key", "model 'node'"]),
    ("experiments/anode_toy.yaml", lambda d: d["settings"].update(trian={"lr": 1}),
     ["settings.trian", "did you mean 'train'"]),
    # every layer is checked, also where the selected scale overrides the value
    ("experiments/anode_toy.yaml", lambda d: d["settings"]["train"].update(epochs="fifty"),
     ["settings.train.epochs", "'fifty' is not of type 'integer'"]),
    ("experiments/anode_toy.yaml", lambda d: d["settings"]["train"].update(lr=float("nan")),
     ["train.lr", "nan is not a finite number"]),
    ("experiments/anode_toy.yaml", lambda d: d["settings"]["solver"].update(rtol=float("inf")),
     ["settings.solver.rtol", "inf is not a finite number"]),
    ("experiments/anode_toy.yaml",
     lambda d: d["scales"]["paper"].update(overrides={"train": {"epocs": 3}}),
     ["scales.paper.overrides.train.epocs", "did you mean 'epochs'"]),
    ("experiments/anode_toy.yaml",
     lambda d: d["scales"]["laptop"]["dataset_overrides"]["g1d"]["train"].update(
         batch_size=-float("inf")),
     ["scales.laptop.dataset_overrides.g1d.train.batch_size", "-inf is not a finite number"]),
    ("experiments/anode_toy.yaml",
     lambda d: d["dataset_settings"].update(spheres1d={"model_options": {"hidden": "wide"}}),
     ["dataset_settings.spheres1d.model_options.hidden", "'wide'"]),
    ("experiments/anode_toy.yaml",
     lambda d: d["scales"]["paper"].update(model_overrides={"resnet": {"model_options": {
         "augment_dim": 5}}}),
     ["scales.paper.model_overrides.resnet.model_options.augment_dim", "unknown key"]),
    # a dataset no run of the selected scale uses
    ("datasets.yaml", lambda d: d["spheres1d"]["params"].update(r2=float("nan")),
     ["spheres1d.params.r2", "nan is not a finite number"]),
    ("experiments/anode_images.yaml", lambda d: d["models"].append("resnet"),
     ["resnet", "has no images version"]),
    ("datasets.yaml", lambda d: d["g1d"].update(params={"noise_scal": 0.1}),
     ["g1d.params.noise_scal", "did you mean 'noise_scale'"]),
    ("datasets.yaml", lambda d: d["g1d"]["sizes"]["smoke"].update(train=-5),
     ["g1d", "train", "-5"]),
    ("datasets.yaml", lambda d: d["g1d"].update(generator="g2d"),
     ["g1d.generator", "'g2d'", "did you mean 'g1d'"]),
    ("datasets.yaml", lambda d: d["g1d"]["sizes"].pop("smoke"),
     ["g1d.sizes has no 'smoke'"]),
    ("datasets.yaml", lambda d: d["g1d"].update(bits=5),
     ["g1d.bits", "only image datasets"]),
    ("scales.yaml", lambda d: d["smoke"].update(extends="laptopp"),
     ["smoke.extends", "'laptopp'", "did you mean 'laptop'"]),
    ("scales.yaml", lambda d: d["smoke"].update(descripton="x"),
     ["smoke.descripton", "did you mean 'description'"]),
    # an experiment's entry is `based_on` another of its entries; `extends` is a scale's, in
    # scales.yaml, and the section of a model's options is `model_options` in every layer
    ("experiments/anode_toy.yaml", lambda d: d["scales"]["smoke"].update(based_on="laptopp"),
     ["anode_toy.yaml", "scales.smoke.based_on", "'laptopp' is not another scale"]),
    ("experiments/anode_toy.yaml", lambda d: d["scales"]["smoke"].update(extends="laptop"),
     ["anode_toy.yaml", "scales.smoke.extends", "unknown key (renamed 'based_on'"]),
    ("experiments/anode_toy.yaml", lambda d: d["settings"].update(model_cfg={"hidden": 8}),
     ["anode_toy.yaml", "settings.model_cfg", "unknown key (renamed 'model_options'"]),
    ("experiments/anode_toy.yaml", lambda d: d.update(defaults=d.pop("settings")),
     ["anode_toy.yaml", "defaults", "unknown key (renamed 'settings'"]),
]


@pytest.mark.parametrize("where,mutate,fragments", MALFORMED,
                         ids=[f"{i}-{m[0].split('/')[-1]}" for i, m in enumerate(MALFORMED)])
def test_malformed_configuration_names_the_key(tmp_path, where, mutate, fragments):
    cdir = _copy_config(tmp_path)
    _edit(cdir / where, mutate)
    exp = "anode_images" if "anode_images" in where else "anode_toy"
    with pytest.raises(ConfigError) as err:
        plan({"scale": "smoke", "experiments": [exp], "config_dir": str(cdir)})
    msg = str(err.value)
    for fragment in fragments:
        assert fragment in msg, msg


@pytest.mark.parametrize("scale", ["laptop", "paper"])
@pytest.mark.parametrize("value,fragments", [
    ("fifty", ["train.epochs", "'fifty' is not of type 'integer'"]),
    (".nan", ["train.lr", "nan is not a finite number"])])
def test_a_bad_value_is_reported_at_every_scale(tmp_path, capsys, scale, value, fragments):
    """The issue's examples: `validate` at the default scale (whose overrides hide the
    default's epochs) rejects them as the paper scale does, once, with the key path."""
    from odeflows.cli import main

    cdir = _copy_config(tmp_path)
    path = cdir / "experiments" / "anode_toy.yaml"
    key = "epochs: 50" if "epochs" in fragments[0] else "lr: 1.0e-3"
    text = path.read_text()
    assert f"    {key}\n" in text
    path.write_text(text.replace(f"    {key}\n", f"    {key.split(':')[0]}: {value}\n", 1))
    assert main(["validate", "--scale", scale, "--config-dir", str(cdir)]) == 2
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, err
    assert "Traceback" not in err
    # one line per run cell that holds it, or one for the layer: never both
    lines = [ln for ln in err.splitlines() if fragments[0] in ln]
    assert len({"(set in settings)" in ln for ln in lines}) == 1, err


def test_shipped_configuration_is_valid_at_every_scale(capsys):
    from odeflows.cli import main

    for scale in ("smoke", "laptop", "workstation", "paper"):
        assert main(["validate", "--scale", scale, "--config-dir", str(ROOT / "config")]) == 0
        assert f"at scale {scale}" in capsys.readouterr().out


def test_every_problem_is_reported_at_once(tmp_path):
    cdir = _copy_config(tmp_path)

    def several(d):
        d["settings"]["model_options"]["hiden"] = 64
        d["settings"]["train"]["epoch"] = 5
        d["models"].append("nodee")
    _edit(cdir / "experiments" / "anode_toy.yaml", several)
    _edit(cdir / "experiments" / "affjord_toy.yaml",
          lambda d: d["settings"]["solver"].update(stepz=3))
    with pytest.raises(ConfigError) as err:
        plan({"scale": "smoke", "experiments": ["anode_toy", "affjord_toy"],
              "config_dir": str(cdir)})
    msg = str(err.value)
    for fragment in ("model_options.hiden", "train.epoch", "'nodee'", "solver.stepz"):
        assert fragment in msg
    assert "problems" in msg.splitlines()[0]
    # one line per problem and model, not one per run and seed
    assert msg.count("model_options.hiden") <= 3


def test_a_file_failing_its_schema_still_reports_its_layers(tmp_path):
    cdir = _copy_config(tmp_path)

    def several(d):
        d["settings"]["solver"]["rtol"] = float("inf")  # the file's schema
        d["settings"]["train"]["lr"] = float("nan")  # the layer's declared options
        d["model_settings"]["node"]["model_options"]["hiden"] = 3
    _edit(cdir / "experiments" / "anode_toy.yaml", several)
    with pytest.raises(ConfigError) as err:
        plan({"scale": "smoke", "experiments": ["anode_toy"], "config_dir": str(cdir)})
    assert len(err.value.problems) == 3, err.value
    for fragment in ("settings.solver.rtol: inf", "settings.train.lr: nan",
                     "model_settings.node.model_options.hiden: unknown key (did you mean 'hidden'"):
        assert fragment in str(err.value)


def test_unknown_scale_experiment_and_workflow_key():
    with pytest.raises(ConfigError, match="smoke, laptop, workstation, paper"):
        run_matrix({"scale": "huge", "config_dir": str(ROOT / "config")})
    with pytest.raises(ConfigError, match="did you mean 'anode_toy'"):
        run_matrix({"scale": "smoke", "experiments": ["anode_tyo"],
                    "config_dir": str(ROOT / "config")})
    with pytest.raises(ConfigError, match="scael.*did you mean 'scale'"):
        run_matrix({"scale": "smoke", "scael": "paper", "config_dir": str(ROOT / "config")})
    with pytest.raises(ConfigError, match="'no_such_module'.*cannot be imported"):
        run_matrix({"scale": "smoke", "modules": ["no_such_module"],
                    "config_dir": str(ROOT / "config")})


def test_a_new_scale_is_configuration_only(tmp_path):
    cdir = _copy_config(tmp_path)
    _edit(cdir / "scales.yaml", lambda d: d.update(
        desktop={"description": "between", "extends": "laptop"}))
    _edit(cdir / "experiments" / "anode_toy.yaml", lambda d: d["scales"].update(
        desktop={"based_on": "laptop", "seeds": 7}))
    p = plan({"scale": "desktop", "experiments": ["anode_toy", "node_adjoint"],
              "config_dir": str(cdir)})
    seeds = {(s.experiment, s.dataset, s.model): s.seed for s in p.runs}
    assert max(v for k, v in seeds.items() if k[0] == "anode_toy") == 6
    laptop = plan({"scale": "laptop", "experiments": ["node_adjoint"], "config_dir": str(cdir)})
    # node_adjoint declares no desktop settings: it runs as at the scale desktop extends
    assert len(p.runs_of("node_adjoint")) == len(laptop.runs)
    cfg = p.configs[RunSpec("desktop", "anode_toy", "g1d", "node", 6)]
    assert cfg["scale"] == "desktop" and cfg["train"]["epochs"] == 50  # laptop's override


def test_zero_seeds_leave_an_experiment_out_of_a_scale(tmp_path):
    cdir = _copy_config(tmp_path)
    _edit(cdir / "experiments" / "node_adjoint.yaml",
          lambda d: d["scales"]["smoke"].update(seeds=0))
    p = plan({"scale": "smoke", "experiments": ["anode_toy", "node_adjoint"],
              "config_dir": str(cdir)})
    assert p.experiments == ["anode_toy"] and not p.runs_of("node_adjoint")
    assert p.runs_of("anode_toy")


def test_config_hash_changes_only_with_the_run_config(tmp_path):
    cdir = _copy_config(tmp_path)
    spec_a = RunSpec("smoke", "affjord_toy", "hash", "ffjord", 0)
    spec_b = RunSpec("smoke", "anode_toy", "g1d", "node", 0)
    before = [config_hash(resolve_run(s, cdir)) for s in (spec_a, spec_b)]
    _edit(cdir / "experiments" / "affjord_toy.yaml",
          lambda d: d["scales"]["smoke"]["overrides"]["train"].update(iterations=31))
    after = [config_hash(resolve_run(s, cdir)) for s in (spec_a, spec_b)]
    assert after[0] != before[0] and after[1] == before[1]
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})


def test_complete_config_checks_a_hand_written_run():
    cfg = complete_config({"experiment": "x", "dataset": "hash", "model": "ffjord", "seed": 0,
                           "scale": "smoke", "solver": {"method": "rk4", "steps": 2},
                           "train": {"lr": 1e-3, "batch_size": 8, "iterations": 2}},
                          ROOT / "config")
    assert cfg["task"] == "density" and cfg["eval"]["batch_size"] == 1000
    with pytest.raises(ConfigError, match="model_options.widht.*did you mean 'width'"):
        complete_config({**cfg, "model_options": {"widht": 3}}, ROOT / "config")


IMAGES = ["anode_images", "affjord_images", "rnode_images", "rnode_ablation", "affjord_rnode"]


def _paper(exp, ds, model):
    return resolve_run(RunSpec("paper", exp, ds, model, 0), ROOT / "config")


def test_paper_image_settings_follow_the_references():
    rnode = _paper("rnode_images", "mnist", "rnode")
    assert rnode["solver"]["method"] == "rk4" and rnode["solver"]["step_size"] == 0.25
    ev = rnode["eval_solver"]
    assert (ev["method"], ev["rtol"], ev["atol"], ev["adjoint"]) == ("dopri5", 1e-5, 1e-5, False)
    m = rnode["model_options"]
    assert (m["kinetic"], m["jacobian"], m["probe"], m["zero_last"], m["num_blocks"]) == (
        0.01, 0.01, "gaussian", True, 2)
    assert rnode["train"]["batch_size"] == 200 and rnode["train"]["epochs"] == 100
    assert rnode["eval"]["dequantization"] == "midpoint"
    assert _paper("rnode_images", "cifar10", "rnode")["model_options"]["alpha"] == 0.05
    vanilla = _paper("rnode_images", "mnist", "ffjord")
    assert vanilla["solver"]["method"] == "dopri5" and vanilla["model_options"]["kinetic"] == 0.0
    aff = _paper("affjord_images", "cifar10", "affjord")
    assert aff["model"] == "affjord" and aff["model_options"]["layer"] == "hyper"
    assert aff["train"]["lr"] == 6e-4 and aff["model_options"]["num_blocks"] == 1
    concat = _paper("affjord_images", "mnist", "affjord_concat")
    assert concat["model"] == "affjord" and concat["variant"] == "affjord_concat"
    assert concat["model_options"]["layer"] == "concat"
    node = _paper("anode_images", "cifar10", "node")
    anode = _paper("anode_images", "cifar10", "anode")
    assert node["model_options"]["filters"] == 125
    options = anode["model_options"]
    assert (options["filters"], options["augment_channels"]) == (64, 10)
    s = anode["solver"]
    assert (s["method"], s["rtol"], s["atol"], s["adjoint"], s["max_num_steps"]) == (
        "dopri5", 1e-3, 1e-3, True, 1000)
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
    assert per_cell[("rnode_images", "imagenet64", "rnode")] == 3
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


def test_shared_settings_apply_to_the_models_that_take_them(tmp_path):
    # affjord_images' settings hold flow options; its per-pixel baseline takes none of them
    p = plan({"scale": "smoke", "experiments": ["affjord_images"],
              "config_dir": str(ROOT / "config")})
    base = p.configs[RunSpec("smoke", "affjord_images", "digits8x8", "pixel_histogram", 0)]
    flow = p.configs[RunSpec("smoke", "affjord_images", "digits8x8", "ffjord", 0)]
    assert base["model_options"] == {"smoothing": 1.0}
    assert flow["model_options"]["hidden_dims"] == [8, 8]
    cdir = _copy_config(tmp_path)
    path = cdir / "experiments" / "affjord_images.yaml"
    original = path.read_text()
    # a shared key no model of the experiment takes is a typo ...
    _edit(path, lambda d: d["settings"]["model_options"].update(hiden_dims=[3]))
    with pytest.raises(ConfigError, match="model_options.hiden_dims.*did you mean 'hidden_dims'"):
        plan({"scale": "smoke", "experiments": ["affjord_images"], "config_dir": str(cdir)})
    # ... and a model-specific layer must hold only that model's options
    path.write_text(original)
    _edit(path, lambda d: d.setdefault("model_settings", {}).update(
        pixel_histogram={"model_options": {"hidden_dims": [3]}}))
    with pytest.raises(ConfigError, match="model_options.hidden_dims.*model 'pixel_histogram'"):
        plan({"scale": "smoke", "experiments": ["affjord_images"], "config_dir": str(cdir)})


def test_a_model_runs_on_the_datasets_it_takes():
    # affjord_rnode mixes a toy set and images: the image baseline runs on the images only
    p = plan({"scale": "paper", "experiments": ["affjord_rnode"],
              "config_dir": str(ROOT / "config")})
    cells = {(s.dataset, s.model) for s in p.runs}
    assert ("mnist", "pixel_histogram") in cells and ("hash", "pixel_histogram") not in cells
    assert ("hash", "affjord") in cells and ("mnist", "affjord") in cells


def test_matrix_piped_into_a_reader_that_stops_early():
    """`odeflows matrix --scale paper | head -2`: the reader closing the pipe is no error."""
    cmd = [sys.executable, "-m", "odeflows", "matrix", "--scale", "paper"]
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        first = proc.stdout.readline()
        proc.stdout.close()  # as `head` does once it has its lines
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 0, stderr
    assert first.startswith(b"scale\texperiment") and "Traceback" not in stderr
