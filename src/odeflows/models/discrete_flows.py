"""Discrete normalizing flows of the flow primer (§3.3–3.5) behind the CNFs' model surface.

Families (``build_discrete_flow``), every transform from zuko unless said otherwise:

    linear   x = P L U z + b per layer (§3.3): zuko ``LULinearTransform`` (L lower with a
             positive, exp-parametrised diagonal; U unit upper), ``PermutationTransform`` and
             ``AdditiveTransform``; no network.
    nice     additive coupling (§3.4, NICE): zuko ``GeneralCouplingTransform`` with
             ``AdditiveTransform``, then NICE's diagonal scaling (``MonotonicAffineTransform``).
    realnvp  affine coupling (§3.4, RealNVP): ``GeneralCouplingTransform`` with
             ``MonotonicAffineTransform``.
    maf      masked autoregressive flow (§3.5): ``MaskedAutoregressiveTransform``.
    iaf      inverse autoregressive flow (§3.5): the same zuko transform used as the sampling map
             (see ``InverseAutoregressive`` for the one hand-written piece).
    nsf      neural spline flow: ``MonotonicRQSTransform`` with a masked autoregressive
             (``MaskedAutoregressiveTransform``, zuko's ``NSF``) or coupling
             (``GeneralCouplingTransform``) conditioner.

Each model maps data x to latent z (zuko's direction: a ``Flow``'s transform goes data → base),
log p(x) = log N(z; 0, σ²I) + log|det ∂z/∂x|. zuko's ``Flow``/``NormalizingFlow`` are not used:
their ``sample`` draws from the global RNG and their base is fixed at σ = 1.

Cost counter: every conditioner network (zuko's ``MLP``/``MaskedMLP`` hyper-network) is wrapped in
``odeflows.ode.Counted``, so ``count_nfe`` returns the network passes actually made. MAF's density
is one pass per transform and its sampling one per feature (zuko inverts an autoregressive
transform by ``passes`` = D fixed-point sweeps, each a network call); IAF the other way round;
coupling one pass each way. Images: ``shape = (C, H, W)``, x ∈ [0, 1]^D is logit-transformed
(``LogitTransform``, as ``MultiscaleCNF``) and flattened; no multiscale architecture.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import jsonschema
import torch
from torch import nn
from torch.distributions import Transform, constraints
from zuko.flows.autoregressive import MaskedAutoregressiveTransform
from zuko.flows.coupling import GeneralCouplingTransform
from zuko.lazy import LazyComposedTransform, LazyTransform, UnconditionalTransform
from zuko.nn import MaskedLinear
from zuko.transforms import (
    AdditiveTransform,
    AutoregressiveTransform,
    ComposedTransform,
    DependentTransform,
    LULinearTransform,
    MonotonicAffineTransform,
    MonotonicRQSTransform,
    PermutationTransform,
)

from odeflows.models import BuildContext
from odeflows.models.entries.discrete_flows import FAMILIES, OPTION_SCHEMAS
from odeflows.models.odenvp import LogitTransform
from odeflows.nn.layers import NONLINEARITIES
from odeflows.ode import Counted

__all__ = ["DiscreteFlow", "InverseAutoregressive", "LinearLU", "build", "build_discrete_flow",
           "num_effective_parameters", "num_parameters", "option_defaults", "validate_options"]


def option_defaults(family: str) -> dict[str, Any]:
    """The default of every option of ``family``."""
    return {k: copy.deepcopy(v["default"]) for k, v in _schema_of(family).items()}


def _schema_of(family: str) -> dict[str, dict[str, Any]]:
    if family not in OPTION_SCHEMAS:
        raise ValueError(f"unknown discrete flow {family!r}; allowed values: {', '.join(FAMILIES)}")
    return OPTION_SCHEMAS[family]


def validate_options(family: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked strictly against the family's schema, defaults filled in."""
    schema = {"type": "object", "properties": _schema_of(family), "additionalProperties": False}
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(options),
                    key=lambda e: list(e.path))
    if errors:
        msgs = "; ".join(f"{'/'.join(map(str, e.path)) or '(options)'}: {e.message}"
                         for e in errors)
        raise ValueError(f"invalid options for discrete flow {family!r}: {msgs}")
    return {**option_defaults(family), **copy.deepcopy(options)}


# -- sizes --------------------------------------------------------------------------------------
# Size ladders are experiment configuration (config/experiments/primer_flows.yaml: one variant per
# rung); tests read them from there.
def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def num_effective_parameters(model: nn.Module) -> int:
    """Trainable parameters less the weights that zuko's autoregressive masks hold at zero (a
    ``MaskedLinear`` stores a full matrix; about half of it never reaches the output)."""
    masked = sum(int((~m.mask).sum()) for m in model.modules()
                 if isinstance(m, MaskedLinear) and m.weight.requires_grad)
    return num_parameters(model) - masked


# -- transforms -----------------------------------------------------------------------------------
class _SequentialInverse(Transform):
    """The inverse of a zuko ``AutoregressiveTransform``: the sequential direction becomes the call.

    torch's generic inverse would compute the log-determinant with one extra network pass after
    the D fixed-point sweeps; the last sweep already holds the exact parameters of every feature
    (feature i's depend only on features < i, final from sweep i on), so they are reused.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, forward: AutoregressiveTransform):
        super().__init__()
        self.ar = forward

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return self.ar._inverse(x)

    def _inverse(self, z: torch.Tensor) -> torch.Tensor:
        return self.ar._call(z)

    def log_abs_det_jacobian(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return -self.ar.log_abs_det_jacobian(z, x)

    def call_and_ladj(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # zuko's own inverse loop (AutoregressiveTransform._inverse), keeping the last transform
        z = torch.zeros_like(x)
        for _ in range(self.ar.passes):
            step = self.ar.meta(z)
            z = step.inv(x)
        return z, -step.log_abs_det_jacobian(z, x)


class InverseAutoregressive(LazyTransform):
    """IAF: a zuko masked autoregressive transform f used as the sampling map, x = f(z), so that
    sampling takes one network pass and the density (z = f⁻¹(x)) D sequential ones."""

    def __init__(self, transform: MaskedAutoregressiveTransform):
        super().__init__()
        self.transform = transform

    def forward(self, c: torch.Tensor | None = None) -> Transform:
        return _SequentialInverse(self.transform(c))


class LinearLU(LazyTransform):
    """One affine layer x = P L U z + b, as the map data → latent z = (LU)⁻¹ Pᵀ (x − b).

    ``weight`` holds L's strict lower part, U's strict upper part and log diag(L) on its diagonal
    (zuko's ``LULinearTransform``: L carries the diagonal, U is unit upper): D² + D parameters, and
    det A = ±exp(Σ diag) never reaches 0. A positive diagonal loses nothing: N(b, AAᵀ) is unchanged
    by sign flips of A's columns. Initialised at A = P, b = 0. The permutation is fixed.
    """

    def __init__(self, features: int, order: torch.Tensor | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(features, features))
        self.bias = nn.Parameter(torch.zeros(features))
        if order is None:
            order = torch.arange(features - 1, -1, -1)
        self.register_buffer("order", torch.as_tensor(order, dtype=torch.long))

    def matrix(self) -> torch.Tensor:
        """The LU argument of zuko's ``LULinearTransform`` (diagonal exponentiated)."""
        return torch.diagonal_scatter(self.weight, self.weight.diagonal().exp())

    def generative(self) -> Transform:
        return ComposedTransform(LULinearTransform(self.matrix()),
                                 PermutationTransform(self.order),
                                 DependentTransform(AdditiveTransform(self.bias), 1))

    def forward(self, c: torch.Tensor | None = None) -> Transform:
        return self.generative().inv


def _diagonal_scale(log_scale: torch.Tensor) -> Transform:
    """NICE's scaling layer z = exp(s) ⊙ h (zuko soft-clips s to |s| < −log 1e-3)."""
    return DependentTransform(MonotonicAffineTransform(torch.zeros_like(log_scale), log_scale), 1)


def _counted(t: LazyTransform) -> LazyTransform:
    """Wrap the transform's conditioner (zuko's ``hyper``) so every network pass is counted."""
    t.hyper = Counted(t.hyper)
    return t


def _coupling_masks(features: int, transforms: int) -> list[torch.Tensor]:
    # zuko NICE's alternating checkered masks (True: the conditioning half)
    return [torch.arange(features) % 2 == i % 2 for i in range(transforms)]


def _autoregressive_orders(features: int, transforms: int) -> list[torch.Tensor]:
    # zuko MAF's alternating ascending / descending orders
    up = torch.arange(features)
    return [up if i % 2 == 0 else up.flip(0) for i in range(transforms)]


def _transforms(family: str, d: int, o: dict[str, Any]) -> list[LazyTransform]:
    if family == "linear":
        return [LinearLU(d) for _ in range(o["transforms"])]
    if d < 2:
        raise ValueError(f"discrete flow {family!r} needs at least 2 features, got {d}")
    net = {"hidden_features": tuple(o["hidden_dims"]),
           "activation": NONLINEARITIES[o["nonlinearity"]]}
    n = o["transforms"]
    if family in ("nice", "realnvp") or (family == "nsf" and o["conditioner"] == "coupling"):
        if family == "nice":
            uni: dict[str, Any] = {"univariate": AdditiveTransform, "shapes": ((),)}
        elif family == "realnvp":
            uni = {"univariate": MonotonicAffineTransform, "shapes": ((), ())}
        else:
            uni = _spline(o)
        out: list[LazyTransform] = [
            _counted(GeneralCouplingTransform(d, mask=m, **uni, **net))
            for m in _coupling_masks(d, n)]
        if family == "nice" and o["scaling"]:
            out.append(UnconditionalTransform(_diagonal_scale, torch.zeros(d)))
        return out
    uni = _spline(o) if family == "nsf" else {}
    ars = [_counted(MaskedAutoregressiveTransform(d, order=order, **uni, **net))
           for order in _autoregressive_orders(d, n)]
    if family == "iaf":
        return [InverseAutoregressive(t) for t in ars]
    return list(ars)


def _spline(o: dict[str, Any]) -> dict[str, Any]:
    # zuko NSF's univariate transform: K widths, K heights, K − 1 inner knot derivatives
    k = o["bins"]
    return {"univariate": partial(MonotonicRQSTransform, bound=float(o["bound"])),
            "shapes": ((k,), (k,), (k - 1,))}


# -- the model ------------------------------------------------------------------------------------
class DiscreteFlow(nn.Module):
    """A stack of zuko lazy transforms (data → latent) with a N(0, σ²I) base, on vectors
    ``shape = (D,)`` or on flattened logit-transformed images ``shape = (C, H, W)``."""

    def __init__(self, family: str, shape: Sequence[int], transforms: Sequence[LazyTransform], *,
                 base_std: float = 1.0, alpha: float = 1e-6):
        super().__init__()
        self.family = family
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) not in (1, 3):
            raise ValueError(f"inputs of shape {self.shape} are neither vectors nor images")
        self.dim = math.prod(self.shape)
        self.base_std = float(base_std)
        self.transform = LazyComposedTransform(*transforms)
        self.logit = LogitTransform(alpha) if len(self.shape) == 3 else None

    def base_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        var = self.base_std ** 2
        return -0.5 * (z.pow(2).sum(1) / var + self.dim * math.log(2 * math.pi * var))

    @property
    def structure(self) -> str:
        """How the flow's cost splits between its directions (primer §3.3-3.5): ``linear`` (no
        network), ``coupling`` (one pass each way), ``autoregressive`` (density one pass per
        transform, sampling D) or ``inverse_autoregressive`` (the reverse)."""
        kinds = {type(t) for t in self.transform.transforms}
        if InverseAutoregressive in kinds:
            return "inverse_autoregressive"
        if MaskedAutoregressiveTransform in kinds:
            return "autoregressive"
        if GeneralCouplingTransform in kinds:
            return "coupling"
        return "linear"

    def effective_parameters(self) -> int:
        """Trainable parameters that can reach the output (see
        :func:`num_effective_parameters`)."""
        return num_effective_parameters(self)

    # -- density ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> dict[str, torch.Tensor]:
        """Data → latent. ``logp`` is log p(x) in nats per sample; for images x ∈ [0, 1]^(C,H,W)
        and the logit log-det is included (as ``MultiscaleCNF``). ``generator`` is unused (no
        stochastic estimator) and kept for the harness's signature."""
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"expected inputs of shape (B, {', '.join(map(str, self.shape))}), "
                             f"got {tuple(x.shape)}")
        logdet: torch.Tensor | float = 0.0
        if self.logit is not None:
            x, logdet = self.logit(x)
            x = x.flatten(1)
        z, ladj = self.transform().call_and_ladj(x)
        return {"z": z, "logp": self.base_log_prob(z) + ladj + logdet}

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)["logp"]

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
        nll = -self.forward(x, generator)["logp"].mean()
        return nll, {"nll": nll.item()}

    # -- sampling ---------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ N(0, σ²I) from ``generator`` (drawn on its device, so samples do not depend on
        the accelerator), mapped to data; images are clamped to [0, 1]."""
        ref = next(self.parameters())
        device = generator.device if generator is not None else ref.device
        z = torch.randn(n, self.dim, generator=generator, dtype=ref.dtype, device=device)
        x = self.transform_to_data(z.to(ref.device) * self.base_std)
        return x.clamp(0.0, 1.0) if self.logit is not None else x

    @torch.no_grad()
    def transform_to_data(self, z: torch.Tensor) -> torch.Tensor:
        """Latent (B, D) → data: vectors (B, D) or images (B, C, H, W) (not clamped)."""
        x = self.transform().inv(z)
        if self.logit is None:
            return x
        return self.logit.inverse(x).reshape(z.shape[0], *self.shape)


def build_discrete_flow(family: str, shape: int | Sequence[int], **options: Any) -> DiscreteFlow:
    """A discrete flow of ``family`` (one of ``FAMILIES``) for inputs of ``shape`` ((D,) vectors,
    (C, H, W) images); ``options`` are validated strictly against ``OPTION_SCHEMAS[family]``."""
    o = validate_options(family, options)
    shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
    if torch.empty(0).device.type == "meta":
        # zuko computes its masks with data-dependent ops (unique, item) that the meta device
        # lacks: build on the CPU (parameter counts of the paper configs use the meta device)
        with torch.device("cpu"):
            model = build_discrete_flow(family, shape, **options)
        return model.to("meta")
    dim = math.prod(shape)
    return DiscreteFlow(family, shape, _transforms(family, dim, o), base_std=o["base_std"],
                        alpha=o["alpha"])


# -- the builder of the entries declared in odeflows.models.entries.discrete_flows ---------------
def build(family: str, o: dict, ctx: BuildContext) -> DiscreteFlow:
    return build_discrete_flow(family, ctx.shape, **o)
