"""Figures of the flow primer's comparison (``primer_flows``): test NLL against parameters per
dataset, densities per family at matched size, the cost of sampling against density evaluation
as the dimension grows, and the round-trip error against the solver tolerance.

Everything is read from the run directories' ``eval.json``, ``density.npz`` and
``roundtrip.npz`` (via :class:`odeflows.figures.view.Experiment`); a figure with nothing to draw
says why. matplotlib and pandas are imported inside the functions: this module is imported
whenever a configuration that names a figure is checked (see :mod:`odeflows.figures.named`),
training jobs included.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from odeflows.figures import register_figure

if TYPE_CHECKING:
    import pandas as pd

    from odeflows.figures.view import Experiment

__all__ = ["cost_vs_dimension", "densities_matched", "nll_vs_parameters", "roundtrip_vs_tolerance",
           "runs_table"]

STRUCTURE_MARKERS = {"linear": "x", "coupling": "s", "autoregressive": "^",
                     "inverse_autoregressive": "v", "continuous": "o"}


def runs_table(exp: Experiment) -> pd.DataFrame:
    """One row per completed run: coordinates, family (base model) and its display, and the
    scalars of its eval.json."""
    import pandas as pd

    from odeflows.models import get_model

    rows = []
    for (dataset, model), group in exp.groups.items():
        cfg = exp.config(dataset, model)
        if cfg is None:
            continue
        entry = get_model(cfg["model"], cfg["data"]["kind"])
        for run in group.completed:
            ev = {k: v for k, v in run.evaluation.items()
                  if isinstance(v, (int, float, str)) or v is None}
            rows.append({**ev, "dataset": dataset, "model": model, "seed": run.spec.seed,
                         "family": cfg["model"], "family_label": entry.label or cfg["model"],
                         "family_color": entry.color or exp.color(cfg["model"]),
                         "kind": cfg["data"]["kind"], "run": run})
    table = pd.DataFrame(rows)
    # runs evaluated without the flow evidence still draw where they can
    for column, missing in (("flow_structure", ""), ("effective_parameters", np.nan),
                            ("num_parameters", np.nan), ("test_bpd", np.nan),
                            ("test_loss", np.nan)):
        if column not in table:
            table[column] = missing
    return table


def _families(table: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(family, label, colour) in order of first appearance."""
    seen = table.drop_duplicates("family")
    return list(zip(seen["family"], seen["family_label"], seen["family_color"], strict=True))


def _score(frame: pd.DataFrame) -> tuple[pd.Series, str]:
    import pandas as pd

    if pd.to_numeric(frame["test_bpd"], errors="coerce").notna().any():
        return pd.to_numeric(frame["test_bpd"], errors="coerce"), "test bits/dim"
    return pd.to_numeric(frame["test_loss"], errors="coerce"), "test NLL (nats)"


def _params(frame: pd.DataFrame) -> pd.Series:
    import pandas as pd

    eff = pd.to_numeric(frame["effective_parameters"], errors="coerce")
    return eff.fillna(pd.to_numeric(frame["num_parameters"], errors="coerce"))


@register_figure("nll_vs_parameters")
def nll_vs_parameters(exp: Experiment, out_dir: Path) -> list[Path]:
    """One panel per dataset: each family's ladder, test NLL (mean ± std over seeds) against
    its effective parameters on a log axis, with the single-Gaussian fit and, where known, the
    true entropy as references."""
    import pandas as pd

    from odeflows.figures import draw

    name, title = "nll_vs_parameters", "Test NLL against parameters per family"
    table = runs_table(exp)
    if table.empty:
        return draw.empty_figure(out_dir, name, title, exp.caption(), exp.status_lines())
    datasets = [d for d in exp.datasets if d in set(table["dataset"])]
    cols = min(3, len(datasets))
    rows = math.ceil(len(datasets) / cols)
    fig, axes = draw.figure(rows, cols, panel=(4.6, 3.6))
    for ax in axes.flat[len(datasets):]:
        ax.set_axis_off()
    for ax, dataset in zip(axes.flat, datasets, strict=False):
        sub = table[table["dataset"] == dataset]
        score, unit = _score(sub)
        sub = sub.assign(score=score, params=_params(sub))
        for family, label, color in _families(sub):
            fam = sub[sub["family"] == family]
            stats = fam.groupby("model").agg(params=("params", "median"),
                                             mean=("score", "mean"), std=("score", "std"),
                                             n=("score", "count")).sort_values("params")
            structure = str(fam["flow_structure"].iloc[0])
            ax.errorbar(stats["params"], stats["mean"], yerr=stats["std"].fillna(0.0),
                        color=color, marker=STRUCTURE_MARKERS.get(structure, "o"),
                        markersize=5, capsize=2, linewidth=1.4,
                        label=f"{label} ({int(stats['n'].max())} seed"
                              f"{'s' if stats['n'].max() != 1 else ''})")
        for column, style, text in (("gaussian_fit_test_nll", ":", "best single Gaussian"),
                                    ("data_entropy", "--", "true entropy")):
            if column in sub and pd.to_numeric(sub[column], errors="coerce").notna().any():
                ax.axhline(float(pd.to_numeric(sub[column], errors="coerce").mean()),
                           color="0.35", linestyle=style, linewidth=1, label=text)
        ax.set_xscale("log")
        ax.set_xlabel("parameters (effective; log scale)")
        ax.set_ylabel(unit)
        ax.set_title(exp.dataset_title(dataset))
        ax.grid(alpha=0.3, which="both")
        draw.legend(ax, loc="best")
    draw.title(fig, title, exp.caption("mean ± std over seeds; markers: ○ continuous, □ coupling, "
                                       "△ autoregressive, ▽ inverse autoregressive, × linear"))
    return draw.save(fig, out_dir, name)


@register_figure("densities_matched")
def densities_matched(exp: Experiment, out_dir: Path) -> list[Path]:
    """Per 2-D dataset, each family's learned density at the rung whose parameter count is
    nearest (log scale) to the continuous flows' smallest rung, seed 0 (or the lowest completed
    seed)."""
    import pandas as pd

    from odeflows.figures import draw

    name, title = "densities_matched", "Learned densities per family at matched size"
    table = runs_table(exp)
    table = table[table["kind"] == "vectors"] if len(table) else table
    if table.empty or "data_dim" not in table:
        return draw.empty_figure(out_dir, name, title, exp.caption(), exp.status_lines())
    table = table[pd.to_numeric(table["data_dim"], errors="coerce") == 2]
    table = table.assign(params=_params(table))
    datasets = [d for d in exp.datasets if d in set(table["dataset"])]
    families = _families(table)
    if not datasets:
        return draw.empty_figure(out_dir, name, title, exp.caption(), exp.status_lines())
    fig, axes = draw.figure(len(datasets), len(families), panel=(2.8, 2.8))
    for row, dataset in enumerate(datasets):
        sub = table[table["dataset"] == dataset]
        cont = sub[sub["flow_structure"] == "continuous"]
        target = float((cont if len(cont) else sub).groupby("model")["params"].median().min())
        for col, (family, label, _) in enumerate(families):
            ax = axes[row, col]
            draw.image_panel(ax)
            fam = sub[sub["family"] == family]
            if fam.empty:
                draw.no_data(ax, "not run here")
            else:
                sizes = fam.groupby("model")["params"].median()
                model = (np.log(sizes) - math.log(target)).abs().idxmin()
                runs = sorted(fam[fam["model"] == model]["run"], key=lambda r: r.spec.seed)
                arrays = next((a for r in runs if (a := r.arrays("density")) is not None),
                              None)
                if arrays is None:
                    draw.no_data(ax, f"no density grid\n{model}")
                else:
                    axis = arrays["axis"]
                    ax.imshow(np.exp(arrays["logp"]), origin="lower", cmap="viridis",
                              interpolation="nearest",
                              extent=(axis[0], axis[-1], axis[0], axis[-1]))
                    ax.text(0.03, 0.03, f"{model}: {sizes[model]:,.0f} params",
                            transform=ax.transAxes, fontsize=7, color="w", va="bottom")
            if row == 0:
                ax.set_title(label)
        axes[row, 0].set_ylabel(f"{dataset}\n(≈{target:,.0f} params)", fontsize=9)
    draw.title(fig, title, exp.caption("rung nearest (log scale) to the continuous flows' "
                                       "smallest; colour = density per panel"))
    return draw.save(fig, out_dir, name)


@register_figure("cost_vs_dimension")
def cost_vs_dimension(exp: Experiment, out_dir: Path) -> list[Path]:
    """Sampling ÷ density cost against the data dimension D, in network passes (left, with the
    D and 1/D guides of the autoregressive flows) and in wall time per point (right)."""
    import pandas as pd

    from odeflows.figures import draw

    name, title = "cost_vs_dimension", "Sampling vs density evaluation cost against dimension"
    table = runs_table(exp)
    needed = {"density_passes", "sample_passes", "density_seconds", "sample_seconds",
              "data_dim"}
    if table.empty or not needed <= set(table.columns):
        return draw.empty_figure(out_dir, name, title, exp.caption(),
                                 ["no costs recorded (eval.cost_batch)", *exp.status_lines()])
    for c in needed:
        table[c] = pd.to_numeric(table[c], errors="coerce")
    table = table.dropna(subset=list(needed))
    fig, axes = draw.figure(1, 2, panel=(5.0, 3.8))
    dims = sorted(table["data_dim"].unique())
    counted = table[(table["density_passes"] > 0) & (table["sample_passes"] > 0)]
    for ax, frame, num, den, ylabel in (
            (axes[0, 0], counted, "sample_passes", "density_passes",
             "network passes: sampling ÷ log p"),
            (axes[0, 1], table, "sample_seconds", "density_seconds",
             "wall time per point: sampling ÷ log p")):
        for family, label, color in _families(frame):
            fam = frame[frame["family"] == family]
            ratio = (fam[num] / fam[den]).groupby(fam["data_dim"]).mean()
            structure = str(fam["flow_structure"].iloc[0])
            ax.plot(ratio.index, ratio.to_numpy(), color=color, label=label,
                    marker=STRUCTURE_MARKERS.get(structure, "o"), linewidth=1.4)
        if len(dims) > 1:
            d = np.array(dims, dtype=float)
            ax.plot(d, d, color="0.5", linestyle=":", linewidth=1, label="D (guide)")
            ax.plot(d, 1 / d, color="0.5", linestyle="--", linewidth=1, label="1/D (guide)")
        ax.axhline(1.0, color="0.7", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("data dimension D (log scale)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        draw.legend(ax, loc="best")
    axes[0, 0].set_title("passes (counted; the linear flow has none)")
    axes[0, 1].set_title("wall time (fastest of repeats)")
    draw.title(fig, title, exp.caption(f"D measured: {', '.join(str(int(d)) for d in dims)}; "
                                       "mean over runs"))
    return draw.save(fig, out_dir, name)


@register_figure("roundtrip_vs_tolerance")
def roundtrip_vs_tolerance(exp: Experiment, out_dir: Path) -> list[Path]:
    """Round-trip error x → z → x against the solver tolerance for the continuous flows (float64,
    one line per run), with the discrete flows' float32 and float64 levels for comparison."""
    import pandas as pd

    from odeflows.figures import draw

    name, title = "roundtrip_vs_tolerance", "Round-trip error against solver tolerance"
    table = runs_table(exp)
    if table.empty or "roundtrip_max" not in table:
        return draw.empty_figure(out_dir, name, title, exp.caption(),
                                 ["no round trips recorded (eval.roundtrip_batch)",
                                  *exp.status_lines()])
    curves: list[tuple[Any, dict[str, np.ndarray]]] = []
    for _, r in table[table["flow_structure"] == "continuous"].iterrows():
        arrays = r["run"].arrays("roundtrip")
        if arrays is not None and len(arrays.get("tolerance", [])):
            curves.append((r, arrays))
    discrete = table[table["flow_structure"].isin(
        ("coupling", "autoregressive", "inverse_autoregressive"))]
    if not curves and discrete.empty:
        return draw.empty_figure(out_dir, name, title, exp.caption(),
                                 ["no coupling, autoregressive or continuous runs completed",
                                  *exp.status_lines()])
    fig, axes = draw.figure(1, 1, panel=(6.2, 4.2))
    ax = axes[0, 0]
    shown: set[str] = set()
    for r, arrays in curves:
        label = None if r["family_label"] in shown else f"{r['family_label']} (float64)"
        shown.add(r["family_label"])
        ax.plot(arrays["tolerance"], np.maximum(arrays["max"], 1e-18), color=r["family_color"],
                marker="o", linewidth=1.2, alpha=0.8, label=label)
    for column, style, what in (("roundtrip_max", "--", "float32"),
                                ("roundtrip_max_f64", ":", "float64")):
        values = pd.to_numeric(discrete.get(column), errors="coerce").dropna()
        if len(values):
            ax.axhline(max(float(values.max()), 1e-18), color="0.3", linestyle=style,
                       linewidth=1, label=f"coupling / autoregressive, {what} (max)")
    if curves:
        tol = np.unique(np.concatenate([a["tolerance"] for _, a in curves]))
        ax.plot(tol, tol, color="0.6", linewidth=0.8, label="error = tolerance (guide)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("solver tolerance rtol = atol (dopri5; tighter →)")
    ax.set_ylabel("max ‖x − T⁻¹(T(x))‖ / RMS‖x‖")
    ax.grid(alpha=0.3, which="both")
    draw.legend(ax, loc="best")
    draw.title(fig, title, exp.caption("continuous flows in float64"))
    return draw.save(fig, out_dir, name)
