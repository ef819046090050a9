"""Multiscale continuous normalizing flow for images (FFJORD's ODENVP), with RNODE's
regularisers and AFFJORD's augmented dynamics.

Data → latent (``forward``): logit transform, then per scale ``num_blocks`` CNFs → squeeze
(space-to-depth ×2) → ``num_blocks`` CNFs → half of the channels factored out as latent; the
final scale has ``num_blocks`` CNFs and no squeeze (reference-implementations.md §2.5).
Each CNF block integrates, over t ∈ [0, T],

    FFJORD/RNODE:  (x, Δ, [K, J])       dx/dt = f(x, t)
    AFFJORD:       (x, a, Δ, [K, J])    dx/dt = f(x, a),  da/dt = g(a)

with dΔ/dt = −tr(∂f/∂x) (AFFJORD: over the image channels only — the Jacobian of (f, g) is
block-triangular since g ignores x), dK/dt = ½·mean_d f_d² and dJ/dt = mean_d v_d², v = eᵀ∂f/∂x
(RNODE §3.3; v shares the vjp of the divergence). Δ, K and J are threaded through every block
as in the reference code: Δ starts at −(logit log-det), so its magnitude — and therefore the
adaptive solver's relative error control — is the reference's. Then
log p(x) = log N(z; 0, I) − Δ_final.

AFFJORD (§5.2 of the notes; paper §4): the augmented state a has the image's shape at scale
entry, starts at zero in every scale and is squeezed together with x. It is identical for all
samples, so it is carried as a single (1, c, H, W) tensor. g moves only the first ``aug_hidden``
coordinates of a (Linear·tanh·Linear); the main field sees a as extra input channels of its
first conv (``concat`` and ``hyper``) and, for ``hyper``, every conv's weights are a linear
function of the first ``hyper_in`` coordinates of a. a never depends on the data, so its values
at the end of each scale (needed for sampling) are recomputed from the parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from odeflows.models import BuildContext, ReferenceCount
from odeflows.nn import divergence as div_
from odeflows.nn import fused_conv
from odeflows.nn.conv_layers import ConvFieldNet, conv_param_count
from odeflows.nn.names import DIVERGENCES
from odeflows.nn.names import IMAGE_LAYERS as LAYERS
from odeflows.ode import Autonomous, CountedField, Solver, solve

__all__ = ["AugmentedField", "BlockDynamics", "CNFBlock", "ImageField", "LogitTransform",
           "MultiscaleCNF", "build", "cnf_channels", "exact_divergence", "num_scales",
           "reference_count", "reference_parameter_count", "squeeze", "standard_normal_logprob",
           "unsqueeze"]


# -- building blocks ------------------------------------------------------------------------------
def num_scales(height: int, width: int) -> int:
    """FFJORD's ``_calc_n_scale``: how many times h, w ≥ 4 can be halved (MNIST 3, CIFAR10 4)."""
    n = 0
    while height >= 4 and width >= 4:
        n, height, width = n + 1, height // 2, width // 2
    return n


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(B, C, 2H, 2W) → (B, 4C, H, W); channel c·4 + 2i + j holds pixel offset (i, j), the
    layout of FFJORD's ``squeeze`` (its view/permute is exactly ``pixel_unshuffle``)."""
    return F.pixel_unshuffle(x, 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    return F.pixel_shuffle(x, 2)


def standard_normal_logprob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the non-batch dimensions."""
    return -0.5 * (z.pow(2).flatten(1).sum(1) + z[0].numel() * math.log(2 * math.pi))


class LogitTransform(nn.Module):
    """y = logit(α + (1 − 2α) x) on x ∈ [0, 1]^D (RealNVP's pre-processing, as FFJORD)."""

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns y and log|det ∂y/∂x| per sample."""
        s = self.alpha + (1 - 2 * self.alpha) * x
        log_s, log_1ms = torch.log(s), torch.log1p(-s)
        logdet = (math.log(1 - 2 * self.alpha) - log_s - log_1ms).flatten(1).sum(1)
        return log_s - log_1ms, logdet

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)


class AugmentedField(nn.Module):
    """AFFJORD's g: Linear(k→k)·tanh·Linear(k→k) on the first k coordinates of the flattened
    augmented state; every other coordinate has zero velocity (the reference ``Aug_Cnn``)."""

    def __init__(self, numel: int, hidden: int):
        super().__init__()
        if hidden > numel:
            raise ValueError(f"aug_hidden={hidden} exceeds the {numel} augmented coordinates")
        self.numel, self.hidden = numel, hidden
        self.fc1, self.fc2 = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        moved = self.fc2(torch.tanh(self.fc1(a.reshape(1, -1)[:, :self.hidden])))
        return F.pad(moved, (0, self.numel - self.hidden)).view_as(a)


class ImageField(nn.Module):
    """f(x, t, a) of one block: turns t or a into the conditioning its ODEnet expects.

    ``time_channel``: FFJORD concat (t as a constant input channel of every conv).
    ``time_hyper``: FFJORD hyper (conv weights = Linear(1 → ·)(t)).
    ``aug_concat`` / ``aug_hyper``: AFFJORD (a as input channels of the first conv; for hyper
    also conv weights = Linear(hyper_in → ·)(a[:hyper_in])). Time itself is not an input.
    """

    def __init__(self, shape: tuple[int, int, int], hidden_dims: tuple[int, ...], *,
                 augmented: bool, layer: str, hyper_in: int, nonlinearity: str):
        super().__init__()
        c, h, w = shape
        n_layers = len(hidden_dims) + 1
        if layer == "hyper":
            self.mode = "aug_hyper" if augmented else "time_hyper"
        else:
            self.mode = "aug_concat" if augmented else "time_channel"
        cond = {"time_channel": [1] * n_layers, "time_hyper": [0] * n_layers}.get(
            self.mode, [c] + [0] * (n_layers - 1))
        self.hyper_in = (1 if not augmented else hyper_in) if layer == "hyper" else 0
        self.net = ConvFieldNet(c, hidden_dims, cond_channels=cond, hyper_in=self.hyper_in,
                                nonlinearity=nonlinearity)
        # the t channel is t·ones; the ones map is kept so no evaluation has to build it
        self.register_buffer("ones", torch.ones(1, 1, h, w), persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor, a: torch.Tensor | None) -> torch.Tensor:
        if self.mode == "time_channel":
            return self.net(x, cond=self.ones * t)
        if self.mode == "time_hyper":
            return self.net(x, h=t.reshape(1, 1).to(x.dtype))
        cond, h = self._conditioning(t, a)
        return self.net(x, cond=cond, h=h)

    def _conditioning(self, t: torch.Tensor, a: torch.Tensor | None
                      ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(cond channels, hypernet input) of the ODEnet for the aug modes."""
        assert a is not None
        h = a.reshape(1, -1)[:, :self.hyper_in] if self.mode == "aug_hyper" else None
        return a, h

    def weights_and_maps(self, t: torch.Tensor, a: torch.Tensor | None
                         ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per conv layer, the weight on the image channels and the bias map the batch shares
        (bias and conditioning), for ``odeflows.nn.fused_conv``; differentiable."""
        if self.mode == "time_channel":
            return self.net.weights_and_maps(cond=self.ones * t)
        if self.mode == "time_hyper":
            return self.net.weights_and_maps(h=t.reshape(1, 1).to(self.ones.dtype))
        return self.net.weights_and_maps(*self._conditioning(t, a))


def exact_divergence(field: nn.Module, x: torch.Tensor, t: torch.Tensor, a: torch.Tensor | None,
                     create_graph: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """f, exact tr(∂f/∂x) and ‖∂f/∂x‖²_F per sample, brute force: the field is evaluated on D
    copies of the batch and one vjp with the basis vectors as probes returns every Jacobian row
    (samples are independent). D times the memory — tiny images and tests only."""
    b, d = x.shape[0], x[0].numel()
    copies = x.repeat(d, *([1] * (x.dim() - 1)))  # copy i·b + n is sample n, probed with e_i
    f_all = field(copies, t, a)
    basis = torch.eye(d, dtype=x.dtype, device=x.device).repeat_interleave(b, dim=0)
    rows = torch.autograd.grad(f_all, copies, basis.view_as(copies), create_graph=create_graph,
                               retain_graph=True)[0]
    jac = rows.reshape(d, b, d)  # jac[i, n, j] = ∂f_i/∂x_j of sample n
    return f_all[:b], jac.diagonal(dim1=0, dim2=2).sum(1), jac.pow(2).sum((0, 2))


class BlockDynamics(nn.Module):
    """Right-hand side of one block's state (x, [a], Δ, [K, J]); K, J are present iff the
    state has them. The Hutchinson probe is set by the block once per solve."""

    def __init__(self, field: ImageField, aug_field: AugmentedField | None, divergence: str,
                 fused: bool = True):
        super().__init__()
        self.field, self.aug_field, self.divergence = field, aug_field, divergence
        self.probe: torch.Tensor | None = None
        self.with_logp = True
        # fast path (odeflows.nn.fused_conv): value and Hutchinson divergence by forward-mode
        # tangent, hand-written VJP; the generic branches below stay the tested ground truth
        self.fused = (fused and divergence == "hutchinson"
                      and field.net.nonlinearity in fused_conv.ACTIVATIONS)

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x = state[0]
        a = state[1] if self.aug_field is not None else None
        aug = () if a is None else (self.aug_field(a),)
        if not self.with_logp:  # sampling: the trajectory only
            return (self.field(x, t, a), *aug)
        regularise = len(state) > 2 + len(aug)
        if self.fused and not regularise and self.probe is not None:  # fast path
            weights, maps = self.field.weights_and_maps(t, a)
            f, ntr = fused_conv.apply(self.field.net.nonlinearity, x, self.probe, weights, maps)
            return (f, *aug, ntr)
        outer_grad = torch.is_grad_enabled()
        with torch.enable_grad():
            if not (outer_grad and x.requires_grad):
                # without an outer graph, x may still be a view of a grad-requiring tensor
                # made under no_grad (odeint_adjoint's forward): its requires_grad is True but
                # it is no node of f's graph, so take a fresh leaf
                x = x.detach().requires_grad_(True)
            if self.divergence == "exact":
                f, div, frob = exact_divergence(self.field, x, t, a, create_graph=outer_grad)
            else:
                if self.probe is None:
                    raise RuntimeError("the Hutchinson probe is set per solve by CNFBlock")
                f = self.field(x, t, a)
                div, frob = div_.hutchinson(f, x, self.probe, create_graph=outer_grad)
        if not outer_grad:
            f, div, frob = f.detach(), div.detach(), frob.detach()
        if not regularise:
            return (f, *aug, -div)
        d = x[0].numel()
        return (f, *aug, -div, 0.5 * f.pow(2).flatten(1).mean(1), frob / d)


# (x, a or None, Δ, (K, J) or ()) between blocks
BlockState = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, tuple[torch.Tensor, ...]]


class CNFBlock(nn.Module):
    """One CNF: integrates its state over [0, T] (reverse for sampling) with ``solve``."""

    def __init__(self, field: ImageField, aug_field: AugmentedField | None, *, T: float,
                 divergence: str, probe: str, fused: bool = True):
        super().__init__()
        self.func = CountedField(BlockDynamics(field, aug_field, divergence, fused))
        self.probe_kind = probe
        self.register_buffer("times", torch.tensor([0.0, T]), persistent=False)

    @property
    def dynamics(self) -> BlockDynamics:
        return self.func.func

    def forward(self, x: torch.Tensor, a: torch.Tensor | None, delta: torch.Tensor,
                reg: tuple[torch.Tensor, ...], solver: Solver,
                generator: torch.Generator | None = None) -> BlockState:
        dyn = self.dynamics
        dyn.with_logp = True
        dyn.probe = (div_.sample_probe(x, self.probe_kind, generator)
                     if dyn.divergence == "hutchinson" else None)
        state = (x, *(() if a is None else (a,)), delta, *reg)
        # the probe stays set after the solve: the adjoint's backward solve needs the same one
        final = [s[-1] for s in solve(self.func, state, self.times, solver)]
        x, rest = final[0], final[1:]
        if a is not None:
            a, rest = rest[0], rest[1:]
        return x, a, rest[0], tuple(rest[1:])

    def transport(self, y: torch.Tensor, a: torch.Tensor | None, solver: Solver,
                  reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The trajectory only (no log-density): 0 → T, or T → 0 with ``reverse`` (sampling)."""
        dyn = self.dynamics
        dyn.with_logp = False
        times = self.times.flip(0) if reverse else self.times
        try:
            sol = solve(self.func, (y,) if a is None else (y, a), times, solver)
        finally:
            dyn.with_logp = True
        return sol[0][-1], (None if a is None else sol[1][-1])

    def integrate_augmented(self, a: torch.Tensor, solver: Solver) -> torch.Tensor:
        """a(T) from a(0): g alone (a does not depend on the data)."""
        g = CountedField(Autonomous(self.dynamics.aug_field))
        return solve(g, a, self.times, solver)[-1]


class _Scale(nn.Module):
    """``pre`` blocks at the scale's entry shape, then (non-final scales) squeeze and ``post``
    blocks, then half of the channels factored out."""

    def __init__(self, shape: tuple[int, int, int], pre: list[CNFBlock], post: list[CNFBlock]):
        super().__init__()
        self.shape, self.last = shape, not post
        self.pre, self.post = nn.ModuleList(pre), nn.ModuleList(post)

    def latent_shape(self) -> tuple[int, int, int]:
        c, h, w = self.shape
        return (c, h, w) if self.last else (2 * c, h // 2, w // 2)


# -- the model ------------------------------------------------------------------------------------
class MultiscaleCNF(nn.Module):
    """FFJORD / RNODE (``augmented=False``) or AFFJORD (``augmented=True``) multiscale CNF on
    dequantised images in [0, 1]. ``solver`` is used in train mode, ``eval_solver`` in eval mode;
    the RNODE states are integrated only in train mode (as RNODE). ``n_scales`` overrides the
    number of scales computed from the image size (tests use it to squeeze tiny images).
    ``track_regularisers`` integrates RNODE's states even when both weights are zero.
    ``fused`` (default on) evaluates the Hutchinson divergence of unregularised blocks through
    ``odeflows.nn.fused_conv`` (forward-mode tangent, hand-written VJP, channels-last);
    ``fused=False`` keeps the generic autograd path, which the fused one is tested against."""

    def __init__(self, shape: tuple[int, int, int], *, solver: Solver, eval_solver: Solver,
                 augmented: bool = False, layer: str = "concat",
                 hidden_dims: Sequence[int] = (64, 64, 64), num_blocks: int = 1,
                 alpha: float = 1e-6, T: float = 1.0, nonlinearity: str = "softplus",
                 divergence: str = "hutchinson", probe: str = "rademacher",
                 kinetic: float = 0.0, jacobian: float = 0.0, zero_last: bool = False,
                 aug_hidden: int = 20, hyper_in: int = 10, n_scales: int | None = None,
                 track_regularisers: bool = False, fused: bool = True):
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; allowed values: {', '.join(LAYERS)}")
        if divergence not in DIVERGENCES:
            raise ValueError(f"unknown divergence {divergence!r}; "
                             f"allowed values: {', '.join(DIVERGENCES)}")
        if probe not in ("rademacher", "gaussian"):
            raise ValueError(f"unknown probe {probe!r}; allowed values: rademacher, gaussian")
        if augmented and layer == "hyper" and hyper_in > aug_hidden:
            raise ValueError("hyper_in > aug_hidden: the extra hypernet inputs would stay 0")
        c, h, w = (int(s) for s in shape)
        self.shape, self.dim = (c, h, w), c * h * w
        self.solver, self.eval_solver = solver, eval_solver
        self.augmented, self.layer = augmented, layer
        self.kinetic, self.jacobian, self.T = kinetic, jacobian, T
        # track_regularisers: integrate K and J even with zero weights, so an unregularised run
        # logs the Jacobian norm it reaches (RNODE Fig. 5); they then enter the loss times 0
        self.regularised = bool(kinetic or jacobian or track_regularisers)
        self.logit = LogitTransform(alpha)
        n = num_scales(h, w) if n_scales is None else n_scales
        if n < 1:
            raise ValueError(f"image {shape} is too small for a multiscale flow")

        def block(s: tuple[int, int, int]) -> CNFBlock:
            field = ImageField(s, tuple(hidden_dims), augmented=augmented, layer=layer,
                               hyper_in=hyper_in, nonlinearity=nonlinearity)
            if zero_last:
                field.net.zero_last_()
            aug = AugmentedField(s[0] * s[1] * s[2], aug_hidden) if augmented else None
            return CNFBlock(field, aug, T=T, divergence=divergence, probe=probe, fused=fused)

        scales = []
        for i in range(n):
            last = i == n - 1
            if not last and (h % 2 or w % 2):
                raise ValueError(f"scale {i} of {shape} has odd size {h}×{w}: cannot squeeze")
            pre = [block((c, h, w)) for _ in range(num_blocks)]
            post = [] if last else [block((4 * c, h // 2, w // 2)) for _ in range(num_blocks)]
            scales.append(_Scale((c, h, w), pre, post))
            c, h, w = 2 * c, h // 2, w // 2
        self.scales = nn.ModuleList(scales)
        self.num_cnfs = sum(len(s.pre) + len(s.post) for s in self.scales)

    def blocks(self) -> list[CNFBlock]:
        """Every CNF block in data → latent order."""
        return [b for s in self.scales for b in (*s.pre, *s.post)]

    def active_solver(self) -> Solver:
        return self.solver if self.training else self.eval_solver

    # -- density ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> dict[str, torch.Tensor]:
        """Data → latent. ``logp`` is log p(x) in nats for x ∈ [0, 1]^D (logit log-det included);
        ``kinetic``/``jacobian`` (train mode, regularised models) sum RNODE's per-sample
        integrals over all blocks. One Hutchinson probe per block call, from ``generator``."""
        solver = self.active_solver()
        y, logdet = self.logit(x)
        delta = -logdet  # the reference's running −log-det, threaded through every block
        reg: tuple[torch.Tensor, ...] = ()
        if self.regularised and self.training:
            reg = (torch.zeros_like(delta), torch.zeros_like(delta))
        latents = []
        for scale in self.scales:
            a = y.new_zeros((1, *scale.shape)) if self.augmented else None
            for block in scale.pre:
                y, a, delta, reg = block(y, a, delta, reg, solver, generator)
            if scale.last:
                latents.append(y.flatten(1))
                continue
            y, a = squeeze(y), (None if a is None else squeeze(a))
            for block in scale.post:
                y, a, delta, reg = block(y, a, delta, reg, solver, generator)
            y, out = y.chunk(2, dim=1)
            latents.append(out.flatten(1))
        z = torch.cat(latents, 1)
        result = {"z": z, "logp": standard_normal_logprob(z) - delta}
        if reg:
            result["kinetic"], result["jacobian"] = reg
        return result

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)["logp"]

    # -- sampling ---------------------------------------------------------------------------------
    def augmented_end_states(self, solver: Solver | None = None) -> list[torch.Tensor]:
        """a at the end of every scale (AFFJORD's stored ``aug_hist``), recomputed from a = 0."""
        solver = solver or self.eval_solver
        dtype, device = self.scales[0].pre[0].times.dtype, self.scales[0].pre[0].times.device
        ends = []
        for scale in self.scales:
            a = torch.zeros((1, *scale.shape), dtype=dtype, device=device)
            for block in scale.pre:
                a = block.integrate_augmented(a, solver)
            if not scale.last:
                a = squeeze(a)
                for block in scale.post:
                    a = block.integrate_augmented(a, solver)
            ends.append(a)
        return ends

    @torch.no_grad()
    def transform_to_data(self, z: torch.Tensor, solver: Solver | None = None) -> torch.Tensor:
        """Latent (B, D) → image (B, C, H, W) by reverse integration (exact inverse of the map
        up to solver error; values may leave [0, 1] by at most α/(1 − 2α))."""
        solver = solver or self.eval_solver
        n = z.shape[0]
        shapes = [s.latent_shape() for s in self.scales]
        parts = z.split([math.prod(s) for s in shapes], dim=1)
        ends = (self.augmented_end_states(solver) if self.augmented
                else [None] * len(self.scales))
        y: torch.Tensor | None = None
        for scale, part, shape, a in reversed(list(zip(self.scales, parts, shapes, ends,
                                                       strict=True))):
            part = part.reshape(n, *shape)
            y = part if y is None else torch.cat([y, part], dim=1)
            if not scale.last:
                for block in reversed(scale.post):
                    y, a = block.transport(y, a, solver, reverse=True)
                y, a = unsqueeze(y), (None if a is None else unsqueeze(a))
            for block in reversed(scale.pre):
                y, a = block.transport(y, a, solver, reverse=True)
        assert y is not None
        return self.logit.inverse(y)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, C, H, W) in [0, 1]: z ~ N(0, I), reverse integration with eval_solver."""
        ref = self.scales[0].pre[0].times
        z = torch.randn(n, self.dim, generator=generator, dtype=ref.dtype, device=ref.device)
        return self.transform_to_data(z).clamp(0.0, 1.0)


# -- parameter counts: ours, the reference code's, the papers' -------------------------------------
def cnf_channels(shape: tuple[int, int, int], num_blocks: int,
                 n_scales: int | None = None) -> list[int]:
    """Image channels of every CNF block in order (MNIST, 1 block: [1, 4, 2, 8, 4])."""
    c, h, w = shape
    n = num_scales(h, w) if n_scales is None else n_scales
    out: list[int] = []
    for i in range(n):
        out += [c] * num_blocks + ([] if i == n - 1 else [4 * c] * num_blocks)
        c *= 2
    return out


def reference_parameter_count(shape: tuple[int, int, int], *, model: str, layer: str = "concat",
                              num_blocks: int = 1, hidden_dims: Sequence[int] = (64, 64, 64),
                              aug_hidden: int = 20, hyper_in: int = 10) -> ReferenceCount:
    """Parameters of the reference implementation of ``model`` ∈ {ffjord, rnode, affjord}:
    rtqichen/ffjord ``ODENVP`` (ffjord; concat or FFJORD's t-hypernet convs), cfinlay/ffjord-rnode
    (rnode; concat, T not a parameter), ehaxholli/ANODEF ``affjord_joint`` (affjord).

    What the reference builds and we do not (``extras``):
    - ``end_time``: FFJORD's CNF registers T (``sqrt_end_time``) as a parameter per CNF; it never
      receives a gradient (notes §2.4) — we keep T fixed. Not in RNODE (train_T False).
    - ``aug_unused_1x1_conv``: AFFJORD's ``Aug_Cnn`` builds a Conv2d(1, 1, 1) it never calls.
    - ``unused_mixers``: AFFJORD's HyperConv2d builds two Linear(10, 10) it never calls.
    - ``discarded_outputs``: AFFJORD's last conv outputs 2c channels (augmented + image) and keeps
      only c of them; ours outputs the c image channels.
    """
    dims = list(hidden_dims)
    chans = cnf_channels(shape, num_blocks)
    n = len(chans)
    extras: dict[str, int] = {}
    if model in ("ffjord", "rnode"):
        if model == "rnode" and layer != "concat":
            raise ValueError("RNODE's code builds only concat layers")
        total = 0
        for c in chans:
            io = list(zip([c, *dims], [*dims, c], strict=True))
            if layer == "concat":  # t as an extra input channel of every conv
                total += sum(conv_param_count(i + 1, o) for i, o in io)
            else:  # Linear(1 → conv params): weight and bias per generated entry
                total += sum(2 * conv_param_count(i, o) for i, o in io)
        if model == "ffjord":
            extras["end_time"] = n
            total += n
        return ReferenceCount(total, extras)
    if model != "affjord":
        raise ValueError(f"unknown model {model!r}; allowed values: ffjord, rnode, affjord")
    # AFFJORD: every ODEnet is built for the joint 2c channels [a; x], without a t channel
    per_param = 1 if layer == "concat" else hyper_in + 1  # Linear(hyper_in → ·) per entry
    total = extras_mixers = extras_outputs = 0
    for c in chans:
        io = list(zip([2 * c, *dims], [*dims, 2 * c], strict=True))
        total += per_param * sum(conv_param_count(i, o) for i, o in io)
        total += 2 * (aug_hidden * aug_hidden + aug_hidden)  # g
        extras_outputs += per_param * conv_param_count(dims[-1], c)
        if layer == "hyper":
            extras_mixers += len(io) * 2 * (hyper_in * hyper_in + hyper_in)
    extras["discarded_outputs"] = extras_outputs
    extras["aug_unused_1x1_conv"] = 2 * n
    if layer == "hyper":
        extras["unused_mixers"] = extras_mixers
    extras["end_time"] = n
    return ReferenceCount(total + sum(v for k, v in extras.items()
                                      if k != "discarded_outputs"), extras)


# -- builders of the entries declared in odeflows.models.entries.odenvp ---------------------------
def build(augmented: bool, o: dict, ctx: BuildContext) -> MultiscaleCNF:
    return MultiscaleCNF(
        ctx.shape, solver=ctx.solver, eval_solver=ctx.eval_solver, augmented=augmented,
        layer=o["layer"], hidden_dims=tuple(o["hidden_dims"]), num_blocks=int(o["num_blocks"]),
        alpha=float(o["alpha"]), T=float(o["T"]), nonlinearity=o["nonlinearity"],
        divergence=o["divergence"], probe=o["probe"], kinetic=float(o["kinetic"]),
        jacobian=float(o["jacobian"]), zero_last=bool(o["zero_last"]),
        aug_hidden=int(o.get("aug_hidden", 20)), hyper_in=int(o["hyper_in"]),
        track_regularisers=bool(o["track_regularisers"]), fused=bool(o["fused"]))


def reference_count(o: dict, ctx: BuildContext, implementation: str) -> ReferenceCount | None:
    if implementation not in ("ffjord", "rnode", "affjord"):
        return None  # no reference implementation (affjord_rnode is new)
    if implementation == "rnode" and o["layer"] != "concat":
        return None
    return reference_parameter_count(
        ctx.shape, model=implementation, layer=o["layer"], num_blocks=int(o["num_blocks"]),
        hidden_dims=tuple(o["hidden_dims"]), aug_hidden=int(o.get("aug_hidden", 20)),
        hyper_in=int(o["hyper_in"]))
