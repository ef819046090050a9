"""Discrete flows (primer §3.3–3.5, zuko-backed): densities, inverses, log-determinants, costs."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from zuko.lazy import LazyInverse

from odeflows.models.discrete_flows import (
    FAMILIES,
    OPTION_SCHEMAS,
    InverseAutoregressive,
    build_discrete_flow,
    num_effective_parameters,
    num_parameters,
    option_defaults,
)
from odeflows.ode import count_nfe, reset_nfe
from odeflows.tasks.density import DensityTask
from odeflows.tasks.image_density import ImageDensityTask

# (id, family, options): every family, NSF with both conditioners, small networks
SMALL = {"transforms": 3, "hidden_dims": [16, 16]}
CASES = [
    ("linear", "linear", {"transforms": 3}),
    ("nice", "nice", SMALL),
    ("realnvp", "realnvp", SMALL),
    ("maf", "maf", SMALL),
    ("iaf", "iaf", SMALL),
    ("nsf", "nsf", SMALL),
    ("nsf-coupling", "nsf", {**SMALL, "conditioner": "coupling"}),
]
IDS = [c[0] for c in CASES]


def make(family: str, options: dict, shape, perturb: float = 0.1, dtype=torch.float64):
    """A flow with its init perturbed, so that the linear flow and NICE's scaling (zero at init)
    are not the identity and every density is visibly non-Gaussian."""
    torch.manual_seed(1)
    model = build_discrete_flow(family, shape, **options).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(perturb * torch.randn_like(p))
    return model


def log_normal(z: torch.Tensor, std: float = 1.0) -> torch.Tensor:
    """log N(z; 0, std²I) in z's precision (torch's Normal keeps float32 parameters)."""
    return (-0.5 * (z / std).pow(2) - math.log(std) - 0.5 * math.log(2 * math.pi)).sum(1)


# -- options and sizes ---------------------------------------------------------------------------
# (the size ladders are configuration: tests/test_primer.py checks them from the experiment file)
def test_every_family_has_options_with_defaults():
    assert set(OPTION_SCHEMAS) == set(FAMILIES)
    for family in FAMILIES:
        assert all("default" in frag for frag in OPTION_SCHEMAS[family].values())
        build_discrete_flow(family, (2,))  # the defaults validate


def test_options_are_validated_strictly():
    with pytest.raises(ValueError, match="hidden"):
        build_discrete_flow("maf", (2,), hidden=[8])  # unknown key
    with pytest.raises(ValueError, match="transforms"):
        build_discrete_flow("realnvp", (2,), transforms=0)
    with pytest.raises(ValueError, match="hidden_dims"):
        build_discrete_flow("nsf", (2,), hidden_dims=16)
    with pytest.raises(ValueError, match="conditioner"):
        build_discrete_flow("nsf", (2,), conditioner="spline")
    with pytest.raises(ValueError, match="hidden_dims"):
        build_discrete_flow("linear", (2,), hidden_dims=[8])  # no network in a linear flow
    with pytest.raises(ValueError, match="unknown discrete flow"):
        build_discrete_flow("glow", (2,))
    with pytest.raises(ValueError, match="at least 2 features"):
        build_discrete_flow("maf", (1,))
    assert option_defaults("nsf")["bins"] == 8
    assert build_discrete_flow("iaf", (2,), base_std=0.5).base_std == 0.5


def test_effective_parameters_leave_out_masked_weights():
    # the autoregressive masks hold some stored weights at zero; coupling nets have none
    maf = build_discrete_flow("maf", (8,), **SMALL)
    masked = sum(int((~m.mask).sum()) for m in maf.modules() if hasattr(m, "mask"))
    assert masked > 0
    assert num_effective_parameters(maf) == num_parameters(maf) - masked
    assert maf.effective_parameters() == num_effective_parameters(maf)
    nvp = build_discrete_flow("realnvp", (8,), **SMALL)
    assert num_effective_parameters(nvp) == num_parameters(nvp)


def test_builds_on_the_meta_device():
    for family in FAMILIES:
        options = {"transforms": 2} if family == "linear" else SMALL
        with torch.device("meta"):
            model = build_discrete_flow(family, (1, 4, 4), **options)
        assert next(model.parameters()).is_meta
        cpu = build_discrete_flow(family, (1, 4, 4), **options)
        assert num_parameters(model) == num_parameters(cpu)


# -- densities ------------------------------------------------------------------------------------
@pytest.mark.parametrize("family,options", [c[1:] for c in CASES], ids=IDS)
def test_density_integrates_to_one(family, options):
    limit, n = 7.0, 200
    h = 2 * limit / n
    c = -limit + h * (torch.arange(n, dtype=torch.float64) + 0.5)
    grid = torch.stack(torch.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2)
    model = make(family, options, (2,))
    with torch.no_grad():
        out = model(grid)
    mass = float(out["logp"].exp().sum() * h * h)
    assert mass == pytest.approx(1.0, abs=1e-2)
    # the test can fail: with the log-determinant's sign flipped the mass is off by more than
    # three times the tolerance
    flipped = 2 * log_normal(out["z"]) - out["logp"]
    assert abs(float(flipped.exp().sum() * h * h) - 1.0) > 3e-2


@pytest.mark.parametrize("family,options", [c[1:] for c in CASES], ids=IDS)
def test_log_density_matches_brute_force_jacobian(family, options):
    model = make(family, options, (3,), perturb=0.2)
    model.base_std = 1.3
    x = 1.5 * torch.randn(4, 3, dtype=torch.float64)
    out = model(x)
    jac = torch.autograd.functional.jacobian(lambda v: model(v)["z"], x)  # (B, D, B, D)
    blocks = torch.stack([jac[i, :, i, :] for i in range(x.shape[0])])
    expected = log_normal(out["z"], 1.3) + torch.linalg.slogdet(blocks).logabsdet
    torch.testing.assert_close(out["logp"], expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("family,options", [c[1:] for c in CASES], ids=IDS)
def test_round_trip(family, options):
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        model = make(family, options, (5,), dtype=dtype)
        x = 2.0 * torch.randn(64, 5, dtype=dtype)
        with torch.no_grad():
            z = model(x)["z"]
        err = (model.transform_to_data(z) - x).abs().max().item()
        assert err <= tol, (dtype, err)
        assert (z - x).abs().max().item() > 1e-2  # not the identity


@pytest.mark.parametrize("family,options", [c[1:] for c in CASES], ids=IDS)
def test_sampling_is_deterministic_given_a_generator(family, options):
    model = make(family, options, (3,))
    state = torch.get_rng_state()
    a = model.sample(50, torch.Generator().manual_seed(3))
    b = model.sample(50, torch.Generator().manual_seed(3))
    c = model.sample(50, torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not used
    assert a.shape == (50, 3) and a.dtype == torch.float64
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # samples are the inverse map of base draws with the generator's stream
    z = torch.randn(50, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(a, model.transform_to_data(z))


def test_base_std_scales_the_base():
    model = make("maf", SMALL, (2,))
    model.base_std = 2.0
    z = torch.randn(7, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(model.sample(7, torch.Generator().manual_seed(0)),
                               model.transform_to_data(2.0 * z))


# -- costs ----------------------------------------------------------------------------------------
# network passes per transform: (density, sampling); d = features
PASSES = {
    "linear": lambda d: (0, 0),  # no network
    "nice": lambda d: (1, 1),
    "realnvp": lambda d: (1, 1),
    "maf": lambda d: (1, d),
    "iaf": lambda d: (d, 1),
    "nsf": lambda d: (1, d),
    "nsf-coupling": lambda d: (1, 1),
}


@pytest.mark.parametrize("d", [2, 8])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_network_passes(case, d):
    name, family, options = case
    model = make(family, options, (d,), dtype=torch.float32)
    transforms = options["transforms"]
    density, sampling = (transforms * k for k in PASSES[name](d))
    x = torch.randn(10, d)
    reset_nfe(model)
    model.log_prob(x)
    assert count_nfe(model) == density
    reset_nfe(model)
    model.loss(x)[0].backward()
    assert count_nfe(model) == density  # the backward pass calls no network
    reset_nfe(model)
    model.sample(10, torch.Generator().manual_seed(0))
    assert count_nfe(model) == sampling


def test_iaf_density_reuses_the_last_sweep():
    """The hand-written inverse gives zuko's own inverse (same z, same log-det) with the D
    sequential passes only; zuko's generic inverse spends one more pass on the log-det."""
    d = 6
    iaf = make("iaf", {"transforms": 1, "hidden_dims": [16]}, (d,), perturb=0.3)
    ours_lazy = iaf.transform.transforms[0]
    assert isinstance(ours_lazy, InverseAutoregressive)
    zuko_lazy = LazyInverse(ours_lazy.transform)
    x = torch.randn(5, d, dtype=torch.float64)
    reset_nfe(iaf)
    z, ladj = ours_lazy().call_and_ladj(x)
    assert count_nfe(iaf) == d
    reset_nfe(iaf)
    z_ref, ladj_ref = zuko_lazy().call_and_ladj(x)
    assert count_nfe(iaf) == d + 1
    torch.testing.assert_close(z, z_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(ladj, ladj_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("family,options", [c[1:] for c in CASES], ids=IDS)
def test_every_parameter_gets_a_gradient(family, options):
    model = make(family, options, (4,), dtype=torch.float32)
    model.loss(torch.randn(16, 4))[0].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# -- images ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("family,options", [c[1:] for c in CASES], ids=IDS)
def test_image_flow_is_the_vector_flow_on_logits(family, options):
    alpha = 0.05
    image = make(family, {**options, "alpha": alpha}, (1, 4, 4))
    vector = build_discrete_flow(family, (16,), **options).double()
    vector.load_state_dict(image.state_dict())
    x = torch.rand(6, 1, 4, 4, dtype=torch.float64)
    # the logit pre-processing, written out independently of LogitTransform
    s = alpha + (1 - 2 * alpha) * x.flatten(1)
    y = torch.log(s / (1 - s))
    logdet = (math.log(1 - 2 * alpha) - torch.log(s) - torch.log(1 - s)).sum(1)
    with torch.no_grad():
        out = image(x)
        torch.testing.assert_close(out["logp"], vector.log_prob(y) + logdet, rtol=0,
                                   atol=1e-10)
        torch.testing.assert_close(out["z"], vector(y)["z"], rtol=0, atol=1e-12)
        back = image.transform_to_data(out["z"])
    assert back.shape == x.shape and (back - x).abs().max() <= 1e-10
    samples = image.sample(5, torch.Generator().manual_seed(0))
    assert samples.shape == (5, 1, 4, 4) and samples.min() >= 0 and samples.max() <= 1


def test_image_shape_is_checked():
    model = build_discrete_flow("realnvp", (1, 4, 4))
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(2, 16))


def test_harness_tasks_accept_the_flows():
    gen = torch.Generator().manual_seed(0)
    toy = build_discrete_flow("maf", (2,), **SMALL)
    scores = DensityTask().score(toy, np.random.default_rng(0).normal(size=(40, 2))
                                 .astype(np.float32), None, 16, gen)
    assert math.isfinite(scores["loss"]) and scores["nfe"] == SMALL["transforms"]
    img = build_discrete_flow("iaf", (1, 4, 4), **SMALL)
    pixels = torch.randint(0, 256, (8, 1, 4, 4), generator=gen, dtype=torch.uint8)
    task = ImageDensityTask()
    loss, stats = task.loss(img, pixels, None, gen)
    loss.backward()
    assert 0 < stats["bpd"] < 32
    scores = task.score(img, pixels.numpy(), None, 4, gen)
    assert scores["nfe"] == 16 * SMALL["transforms"]  # IAF density: D passes per transform


# -- the linear flow (§3.3) -----------------------------------------------------------------------
def _gaussian(d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64) + 1.5 * torch.eye(d,
                                                                             dtype=torch.float64)
    b = torch.randn(d, generator=g, dtype=torch.float64)
    return a, b


def test_linear_flow_is_the_gaussian_n_b_aat():
    """Closed-form fit: A = P·chol(Pᵀ Σ P) gives exactly N(b, Σ), and sampling reproduces Σ."""
    d = 3
    a, b = _gaussian(d)
    cov = a @ a.T
    model = build_discrete_flow("linear", (d,)).double()
    layer = model.transform.transforms[0]
    perm = torch.eye(d, dtype=torch.float64)[layer.order]  # (P x)_i = x_order[i]
    chol = torch.linalg.cholesky(perm.T @ cov @ perm)
    with torch.no_grad():
        layer.weight.copy_(torch.diagonal_scatter(chol, chol.diagonal().log()))
        layer.bias.copy_(b)
    x = torch.randn(20, d, dtype=torch.float64) * 2
    target = torch.distributions.MultivariateNormal(b, cov)
    torch.testing.assert_close(model.log_prob(x), target.log_prob(x), rtol=0, atol=1e-10)
    s = model.sample(20000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(torch.cov(s.T), cov, rtol=0.06, atol=0.06)


def test_linear_flows_compose_to_a_linear_flow():
    model = make("linear", {"transforms": 3}, (3,), perturb=0.5)
    eye = torch.eye(3, dtype=torch.float64)
    b = model.transform_to_data(torch.zeros(1, 3, dtype=torch.float64))[0]
    a = (model.transform_to_data(eye) - b).T  # columns A e_i
    x = torch.randn(10, 3, dtype=torch.float64)
    target = torch.distributions.MultivariateNormal(b, a @ a.T)
    torch.testing.assert_close(model.log_prob(x), target.log_prob(x), rtol=0, atol=1e-10)


def test_linear_flow_fit_reaches_the_gaussian_entropy():
    """A few hundred Adam steps reach the maximum-likelihood Gaussian exactly, whose NLL is the
    target's entropy up to sampling noise."""
    d = 3
    a, b = _gaussian(d, seed=1)
    g = torch.Generator().manual_seed(0)
    data = b + torch.randn(2000, d, generator=g, dtype=torch.float64) @ a.T
    model = build_discrete_flow("linear", (d,)).double()
    with torch.no_grad():
        initial = model.loss(data)[0].item()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        model.loss(data)[0].backward()
        opt.step()
    nll = model.loss(data)[0].item()
    mle = torch.distributions.MultivariateNormal(data.mean(0), torch.cov(data.T, correction=0))
    entropy = 0.5 * torch.logdet(2 * math.pi * math.e * a @ a.T).item()
    assert nll == pytest.approx(-mle.log_prob(data).mean().item(), abs=1e-6)
    assert abs(nll - entropy) < 0.05, (nll, entropy)
    assert initial - entropy > 1.0  # the fit did the work


@pytest.mark.parametrize("family,options", [c[1:] for c in CASES], ids=IDS)
def test_state_dict_restores_the_model(family, options):
    """What resume and ``load_run`` rely on: the options and the state dict fix the model."""
    model = make(family, options, (1, 2, 2))
    torch.manual_seed(7)
    fresh = build_discrete_flow(family, (1, 2, 2), **options).double()
    fresh.load_state_dict(copy.deepcopy(model).state_dict())
    x = torch.rand(5, 1, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(fresh.log_prob(x), model.log_prob(x), rtol=0, atol=0)
    torch.testing.assert_close(fresh.sample(5, torch.Generator().manual_seed(0)),
                               model.sample(5, torch.Generator().manual_seed(0)), rtol=0, atol=0)
