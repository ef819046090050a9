"""The flow primer's experiment (``primer_flows``): its Gaussian dataset, the evidence evaluation
records for flows (cost of each direction, round trips, the single-Gaussian reference), its
size ladders (read from the experiment file, the one place they live), its configuration at
every scale, its figures, and resume after kill -9 for a discrete flow."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT
from odeflows.config import load_scales, plan
from odeflows.evidence.flows import direction_costs, flow_evidence, round_trip, structure
from odeflows.models import build_model
from odeflows.models.discrete_flows import build_discrete_flow

EXP = "primer_flows"
EXPERIMENT = yaml.safe_load((ROOT / "config" / "experiments" / f"{EXP}.yaml").read_text())
NETWORK_FAMILIES = ("nice", "realnvp", "maf", "iaf", "nsf", "ffjord", "affjord")


def _plan(scale: str):
    return plan({"scale": scale, "experiments": [EXP], "config_dir": str(ROOT / "config")})


def _perturbed(model: torch.nn.Module, scale: float = 0.3, seed: int = 1) -> torch.nn.Module:
    """Random weights, so that no flow is (nearly) the identity."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.eval()


# -- the Gaussian dataset --------------------------------------------------------------------------
def test_gaussian_entropy_formula_matches_monte_carlo():
    from odeflows.data.gaussian import entropy, gaussian

    mean, cov = [0.5, -0.3, 2.0], [[1.0, 0.6, 0.1], [0.6, 0.8, -0.2], [0.1, -0.2, 0.5]]
    x = gaussian(400_000, np.random.default_rng(0), mean, cov).astype(np.float64)
    # sample moments: the draws are N(mean, cov)
    np.testing.assert_allclose(x.mean(0), mean, atol=0.01)
    np.testing.assert_allclose(np.cov(x, rowvar=False), cov, atol=0.01)
    # −E log p(x) by Monte Carlo with torch's density, against ½ log det(2πeΣ)
    dist = torch.distributions.MultivariateNormal(torch.tensor(mean, dtype=torch.float64),
                                                  torch.tensor(cov, dtype=torch.float64))
    nll = -dist.log_prob(torch.from_numpy(x)).numpy()
    se = nll.std() / math.sqrt(len(nll))
    assert abs(nll.mean() - entropy(mean, cov)) < 4 * se
    # the formula is not trivially close: a 10% wider Gaussian is far off
    assert abs(entropy(mean, np.multiply(cov, 1.1).tolist()) - nll.mean()) > 50 * se
    with pytest.raises(ValueError, match="positive definite"):
        entropy([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]])


def test_gaussian_dataset_entry():
    from odeflows.config import dataset_config
    from odeflows.data.prepared import generate

    cfg = dataset_config("gaussian2d", "laptop", ROOT / "config")
    arrays = generate(cfg)
    assert arrays["x_train"].shape == (50_000, 2) and arrays["x_train"].dtype == np.float32
    np.testing.assert_allclose(np.cov(arrays["x_train"], rowvar=False), cfg["params"]["cov"],
                               atol=0.03)
    again = generate(cfg)
    assert all(np.array_equal(arrays[k], again[k]) for k in arrays)


# -- the closed-form single-Gaussian reference and the test NLL's standard error -------------------
def test_gaussian_fit_is_the_maximum_likelihood_gaussian():
    from odeflows.tasks.density import gaussian_fit

    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(3000, 2)) @ np.array([[1.0, 0.5], [0.0, 0.7]]) + [1.0, -2.0]
    x_test = rng.normal(size=(500, 2)) * 2.0
    got = gaussian_fit(x_train.astype(np.float32), x_test.astype(np.float32))
    xt = torch.from_numpy(x_train.astype(np.float32)).double()
    mle = torch.distributions.MultivariateNormal(xt.mean(0), torch.cov(xt.T, correction=0))
    nll = -mle.log_prob(torch.from_numpy(x_test.astype(np.float32)).double()).numpy()
    assert got["gaussian_fit_test_nll"] == pytest.approx(nll.mean(), rel=1e-9)
    assert got["gaussian_fit_test_se"] == pytest.approx(nll.std(ddof=1) / math.sqrt(500),
                                                        rel=1e-9)


def test_density_score_reports_the_standard_error():
    from odeflows.tasks.density import DensityTask

    model = _perturbed(build_discrete_flow("realnvp", (2,), transforms=2, hidden_dims=[8]))
    x = np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32)
    score = DensityTask().score(model, x, None, 64, torch.Generator().manual_seed(0))
    with torch.no_grad():
        nll = -model.log_prob(torch.from_numpy(x)).double().numpy()
    assert score["loss"] == pytest.approx(nll.mean(), rel=1e-6)
    assert score["loss_se"] == pytest.approx(nll.std(ddof=1) / math.sqrt(300), rel=1e-6)


# -- evidence: cost of each direction --------------------------------------------------------------
@pytest.mark.parametrize("d", [2, 8])
@pytest.mark.parametrize("family,passes", [
    ("maf", lambda d: (1, d)), ("iaf", lambda d: (d, 1)), ("realnvp", lambda d: (1, 1)),
    ("nsf", lambda d: (1, d)),
])
def test_direction_costs_count_the_passes(family, passes, d):
    model = _perturbed(build_discrete_flow(family, (d,), transforms=3, hidden_dims=[16]))
    x = torch.randn(32, d)
    costs = direction_costs(model, x, torch.Generator().manual_seed(0), repeats=2)
    density, sampling = (3 * k for k in passes(d))
    assert (costs["density_passes"], costs["sample_passes"]) == (density, sampling)
    assert costs["cost_points"] == 32
    assert costs["density_seconds"] > 0 and costs["sample_seconds"] > 0


def _toy_cnf(hidden: list[int] | None = None, model: str = "ffjord") -> torch.nn.Module:
    cfg = plan({"scale": "smoke", "experiments": [EXP], "config_dir": str(ROOT / "config")}
               ).configs
    spec = next(s for s in cfg if s.dataset == "8gaussians" and s.model == f"{model}_xs")
    run = dict(cfg[spec])
    if hidden is not None:
        run["model_options"] = {**run["model_options"], "hidden_dims": hidden}
    return _perturbed(build_model(run, 2))


def test_structures_of_the_primer_families():
    kinds = {f: structure(build_discrete_flow(f, (4,), **({} if f == "linear" else
                                                           {"hidden_dims": [8]})))
             for f in ("linear", "nice", "realnvp", "maf", "iaf", "nsf")}
    assert kinds == {"linear": "linear", "nice": "coupling", "realnvp": "coupling",
                     "maf": "autoregressive", "iaf": "inverse_autoregressive",
                     "nsf": "autoregressive"}
    assert structure(build_discrete_flow("nsf", (4,), conditioner="coupling")) == "coupling"
    assert structure(_toy_cnf()) == "continuous"
    assert structure(torch.nn.Linear(2, 2)) is None


# -- evidence: round trips -------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["nice", "realnvp", "maf", "iaf", "nsf", "linear"])
def test_discrete_round_trip_is_at_rounding_level(family):
    opts = {"transforms": 3} if family == "linear" else {"transforms": 3, "hidden_dims": [16]}
    # small perturbations: random large ones make flows ill-conditioned, and float32 round
    # trips then lose digits in proportion (float64 ones stay at rounding level)
    model = _perturbed(build_discrete_flow(family, (5,), **opts), scale=0.1)
    x = 2.0 * torch.randn(64, 5)
    out, arrays = round_trip(model, x, torch.Generator().manual_seed(0), [1e-3, 1e-7])
    assert out["roundtrip_max"] <= 1e-5 and out["roundtrip_max_f64"] <= 1e-12
    # rounding error: it falls with the precision
    assert out["roundtrip_max_f64"] <= 1e-6 * out["roundtrip_max"] + 1e-15
    assert out["roundtrip_mean"] <= out["roundtrip_max"]
    assert arrays == {}  # no solver, no tolerance series
    # the measure can fail: a map that is not undone by its inverse is caught
    model.transform_to_data = lambda z: z  # noqa: E731 (a broken inverse)
    broken, _ = round_trip(model, x, torch.Generator().manual_seed(0))
    assert broken["roundtrip_max"] > 1e-2


def test_continuous_round_trip_shrinks_with_the_tolerance():
    model = _toy_cnf([32, 32])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(64, 2)
    tolerances = [1e-3, 1e-5, 1e-7, 1e-9]
    out, arrays = round_trip(model, x, torch.Generator().manual_seed(0), tolerances)
    errs = [out[f"roundtrip_max_tol{t:.0e}"] for t in tolerances]
    np.testing.assert_array_equal(arrays["tolerance"], tolerances)
    np.testing.assert_array_equal(arrays["max"], errs)
    assert errs[0] > 1e-6  # the solver's error, far above float64 rounding
    assert errs[-1] < errs[0] / 100
    passes = [out[f"roundtrip_passes_tol{t:.0e}"] for t in tolerances]
    assert passes[-1] > passes[0]  # tighter tolerances cost more steps
    # the measured model is left as it was (float32, its own solver)
    assert next(model.parameters()).dtype == torch.float32
    assert model.eval_solver.rtol == 1e-5
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_flow_evidence_follows_the_eval_options(tmp_path):
    from odeflows.rundir import RunDir

    model = _toy_cnf()
    x = torch.randn(40, 2)
    ecfg = {"cost_batch": 0, "cost_repeats": 1, "roundtrip_batch": 0,
            "roundtrip_tolerances": [1e-3, 1e-6], "roundtrip_method": "dopri5"}
    off = flow_evidence(model, x, ecfg, torch.Generator().manual_seed(0), RunDir(tmp_path))
    assert off == {"data_dim": 2, "effective_parameters": sum(p.numel() for p in
                                                              model.parameters()),
                   "flow_structure": "continuous"}
    on = flow_evidence(model, x, {**ecfg, "cost_batch": 8, "roundtrip_batch": 16},
                       torch.Generator().manual_seed(0), RunDir(tmp_path))
    assert on["cost_points"] == 8 and on["roundtrip_points"] == 16
    assert set(np.load(tmp_path / "roundtrip.npz").files) == {"tolerance", "max", "mean",
                                                              "passes"}
    again = flow_evidence(model, x, {**ecfg, "cost_batch": 8, "roundtrip_batch": 16},
                          torch.Generator().manual_seed(0), RunDir(tmp_path))
    deterministic = [k for k in on if "seconds" not in k]
    assert {k: on[k] for k in deterministic} == {k: again[k] for k in deterministic}
    maf = build_discrete_flow("maf", (6,), hidden_dims=[8])
    ev = flow_evidence(maf, torch.randn(4, 6), ecfg, torch.Generator(), RunDir(tmp_path))
    assert ev["effective_parameters"] < sum(p.numel() for p in maf.parameters())


# -- the experiment: configuration at every scale, ladders -----------------------------------------
@pytest.mark.parametrize("scale", list(load_scales(ROOT / "config")))
def test_the_experiment_validates_at_every_scale(scale):
    from odeflows.cli import main

    assert main(["validate", "--scale", scale, "--experiments", EXP, "--config-dir",
                 str(ROOT / "config")]) == 0


def test_paper_scale_runs_the_full_ladder():
    p = _plan("paper")
    cells = {(s.dataset, s.model) for s in p.runs}
    assert cells == {(d, m) for d in EXPERIMENT["datasets"] for m in EXPERIMENT["models"]}
    assert {s.seed for s in p.runs} == set(range(5))
    assert {"mnist", "mnist5k", "digits8x8", "hash", "ty", "gaussian2d"} <= {d for d, _ in cells}
    tasks = {s.dataset: p.configs[s]["task"] for s in p.runs}
    assert tasks["mnist"] == "image_density" and tasks["8gaussians"] == "density"


def _ladder_2d() -> dict[str, dict[str, int]]:
    """Effective parameters of every rung on 2-D data, built from the resolved paper-scale
    configurations."""
    from odeflows.evidence.flows import parameters

    p = _plan("paper")
    out: dict[str, dict[str, int]] = {}
    for spec in p.runs:
        if spec.dataset == "8gaussians" and spec.seed == 0:
            cfg = p.configs[spec]
            out.setdefault(cfg["model"], {})[spec.model] = parameters(build_model(cfg, 2))[1]
    return out


def test_ladder_parameter_counts():
    ladder = _ladder_2d()
    assert set(ladder) == {"linear", *NETWORK_FAMILIES}
    for family in NETWORK_FAMILIES:
        rungs = [ladder[family][f"{family}_{r}"] for r in ("xs", "s", "m", "l")]
        assert rungs == sorted(rungs) and len(set(rungs)) == 4, (family, rungs)
        assert 700 <= rungs[0] <= 2_000 and 60_000 <= rungs[-1] <= 150_000, (family, rungs)
    # rungs of a size are within claim 11's matching factor of each other
    from odeflows.claims.primer import SAME_SIZE

    for rung in ("xs", "s", "m", "l"):
        sizes = [ladder[f][f"{f}_{rung}"] for f in NETWORK_FAMILIES]
        assert max(sizes) <= SAME_SIZE * min(sizes), (rung, sizes)
    # the linear flow: D² + D = 6 parameters per affine layer, whatever its options
    assert ladder["linear"] == {"linear_1": 6, "linear_2": 12, "linear_4": 24}
    # hand count of one rung: RealNVP at D = 2, 4 couplings 1 → 16 → 16 → 2 (shift, scale)
    assert ladder["realnvp"]["realnvp_xs"] == 4 * ((1 * 16 + 16) + (16 * 16 + 16) + (16 * 2 + 2))


def test_laptop_scale_decides_from_a_small_matrix():
    p = _plan("laptop")
    cells = {(s.dataset, s.model) for s in p.runs}
    assert {m for d, m in cells if d == "gaussian2d"} == {"linear_1"}
    assert {m for d, m in cells if d == "8gaussians"} >= {"linear_1", "nsf_xs", "ffjord_xs",
                                                          "affjord_xs"}
    assert {s.seed for s in p.runs} == {0}  # claims 12-14 need no repeats; 11 stays inconclusive
    # every density of a continuous flow is evaluated with an adaptive solver
    for spec in p.runs:
        cfg = p.configs[spec]
        if cfg["model"] in ("ffjord", "affjord"):
            assert cfg["eval_solver"]["method"] == "dopri5", spec


# -- figures ---------------------------------------------------------------------------------------
def test_figures_say_why_when_nothing_ran(tmp_path, monkeypatch):
    import shutil

    from odeflows.figures import get_figure
    from odeflows.figures.view import Experiment

    shutil.copytree(ROOT / "config", tmp_path / "config")
    monkeypatch.chdir(tmp_path)
    exp = Experiment("smoke", EXP, "config")
    for name in EXPERIMENT["figures"]:
        paths = get_figure(name)(exp, tmp_path)
        assert paths == [tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"]
        assert all(p.stat().st_size > 0 for p in paths)


# -- the real loop: evaluation evidence and resume after kill -9 -----------------------------------
def _smoke_run_config(dataset: str, model: str) -> dict:
    p = _plan("smoke")
    spec = next(s for s in p.runs if s.dataset == dataset and s.model == model)
    return json.loads(json.dumps(p.configs[spec]))


@pytest.mark.slow
def test_evaluation_records_the_flow_evidence(tmp_path, toy_data):
    from odeflows.evaluate import evaluate
    from odeflows.train import train

    data = toy_data("8gaussians", n=512)
    for model in ("iaf_xs", "ffjord_xs"):
        cfg = _smoke_run_config("8gaussians", model)
        train(cfg, data, tmp_path / model, progress=False)
        ev = evaluate(tmp_path / model, data)
        assert ev["status"] == "completed"
        assert ev["data_dim"] == 2 and ev["cost_points"] == cfg["eval"]["cost_batch"]
        assert ev["density_passes"] > 0 and ev["sample_passes"] > 0
        assert np.isfinite(ev["gaussian_fit_test_nll"]) and ev["test_loss_se"] > 0
        if model == "iaf_xs":
            assert ev["flow_structure"] == "inverse_autoregressive"
            assert ev["density_passes"] == 2 * ev["sample_passes"]
            assert ev["roundtrip_max_f64"] < 1e-12
        else:
            assert ev["flow_structure"] == "continuous"
            assert (tmp_path / model / "roundtrip.npz").exists()


@pytest.mark.slow
def test_discrete_flow_resumes_after_kill_with_identical_numbers(tmp_path, toy_data):
    from test_train import _metrics, _train_cli, _train_here

    cfg = _smoke_run_config("8gaussians", "maf_xs")
    cfg["train"].update(iterations=10, checkpoint_every=3, val_every=4)
    data = toy_data("8gaussians")
    assert _train_here(cfg, data, tmp_path / "full")["status"] == "completed"
    killed = _train_cli(cfg, data, tmp_path / "resumed", {"ODEFLOWS_FAULT_AT_ITER": "7"})
    assert killed.returncode == -9
    assert (tmp_path / "resumed" / "checkpoint.pt").exists()
    assert len(_metrics(tmp_path / "resumed")) == 7
    summary = _train_here(cfg, data, tmp_path / "resumed")
    assert summary["resumed_from_iteration"] == 6
    assert _metrics(tmp_path / "resumed") == _metrics(tmp_path / "full")
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=False)
    for key in ("final_state", "best_state"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])


@pytest.mark.slow
def test_parameter_table_lists_only_models_with_a_reference():
    from odeflows.parameter_counts import paper_config_counts

    table = paper_config_counts(ROOT / "config", [EXP])
    # FFJORD's and AFFJORD's reference code build the CNF rungs; nothing builds the discrete
    # flows' (they get no row)
    assert set(table["model"].str.rsplit("_", n=1).str[0]) == {"ffjord", "affjord"}
    assert table["reference_code"].notna().all()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["linear_1", "nice_xs", "realnvp_xs", "maf_xs", "iaf_xs",
                                   "nsf_xs", "ffjord_xs", "affjord_xs"])
def test_paper_mnist_rung_builds_trains_and_evaluates(tmp_path, model):
    """The smallest rung of every family at paper scale on full-size MNIST (784-D), through the
    real loop and evaluation (quick solver, two steps, tiny batches)."""
    from test_paper_configs import QUICK_SOLVER, _tiny_prepared

    from odeflows.evaluate import evaluate
    from odeflows.train import train

    p = _plan("paper")
    cfg = json.loads(json.dumps(next(p.configs[s] for s in p.runs if s.dataset == "mnist"
                                     and s.model == model and s.seed == 0)))
    cfg["solver"] = {**cfg["solver"], **QUICK_SOLVER}
    cfg["eval_solver"] = {**cfg["eval_solver"], **QUICK_SOLVER}
    cfg["train"].update(iterations=2, epochs=None, batch_size=1, val_every=2, device="cpu")
    cfg["eval"].update(batch_size=2, samples=0, cost_batch=2, cost_repeats=1,
                       roundtrip_batch=2, roundtrip_tolerances=[1e-3])
    data = _tiny_prepared(tmp_path / "mnist.npz", "mnist")
    assert train(cfg, data, tmp_path / "run", progress=False)["status"] == "completed"
    ev = evaluate(tmp_path / "run", data)
    assert ev["status"] == "completed" and np.isfinite(ev["test_bpd"])
    assert ev["data_dim"] == 784 and ev["cost_points"] == 2
