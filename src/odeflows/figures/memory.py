"""Figures of the memory-profile task (adjoint against backpropagation through the solver): peak
memory saved for backward and time per training step against the number of solver steps, one
panel per model, on log–log axes.

Every number comes from the runs' ``profile.csv``; the band spans seeds and repeats, as in the
table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import NullLocator

from odeflows.figures import draw
from odeflows.figures.view import Experiment

__all__ = ["MODE_STYLE", "plot_memory"]

MODE_STYLE = {
    "direct": {"color": "tab:purple", "marker": "o", "label": "direct (backprop through solver)"},
    "adjoint": {"color": "tab:green", "marker": "s", "label": "adjoint"},
}


def _profile_vs_steps(exp: Experiment, out_dir: Path, name: str, column: str, scale: float,
                      title: str, ylabel: str) -> list[Path]:
    tables: dict[str, list[pd.DataFrame]] = {m: [] for m in exp.models}
    for model in exp.models:
        for dataset in exp.datasets:
            for run in exp.group(dataset, model).completed:
                prof = run.profile()
                if prof is not None and {"mode", "steps", column} <= set(prof.columns):
                    tables[model].append(prof.assign(seed=run.spec.seed))
    if not any(tables.values()):
        return draw.empty_figure(out_dir, name, title, exp.caption(), exp.status_lines())
    fig, axes = draw.figure(1, len(exp.models), panel=(4.8, 3.8))
    for ax, model in zip(axes[0], exp.models, strict=True):
        groups = [exp.group(d, model) for d in exp.datasets]
        failed = sum(g.count("failed") for g in groups)
        missing = sum(g.count("missing") for g in groups)
        ax.set_title(exp.name(model))
        if not tables[model]:
            draw.no_data(ax, f"{draw.NO_DATA}\n{groups[0].label()}" if groups else draw.NO_DATA)
            continue
        prof = pd.concat(tables[model], ignore_index=True)
        n_seeds = prof["seed"].nunique()
        n_rep = prof.groupby(["seed", "mode", "steps"]).size().max()
        order = list(MODE_STYLE)
        for mode in sorted(prof["mode"].unique(),
                           key=lambda m: (order.index(m) if m in order else len(order), m)):
            style = MODE_STYLE.get(mode, {"color": "0.3", "marker": "^", "label": mode})
            sub = prof[prof["mode"] == mode]
            # one curve per (seed, repeat) so the band is the spread over both, as in the table
            curves = [g.set_index("steps")[column].astype(float) * scale
                      for _, g in sub.groupby(["seed", "repeat"] if "repeat" in sub else "seed")]
            extra = "".join(f", {k} {w}" for k, w in ((failed, "failed"), (missing, "missing"))
                            if k)
            label = (f"{style['label']} ({n_seeds} seed{'s' if n_seeds != 1 else ''} × "
                     f"{n_rep} repeat{'s' if n_rep != 1 else ''}{extra})")
            draw.band(ax, curves, style["color"], label, marker=style["marker"])
        steps = np.sort(prof["steps"].unique())
        if len(steps) > 1:
            # a slope-1 guide makes "linear in steps" vs "flat" readable on log–log axes
            direct = prof[prof["mode"] == "direct"]
            anchor = direct if not direct.empty else prof
            y0 = float(anchor[anchor["steps"] == steps[0]][column].mean()) * scale
            ax.plot(steps, y0 * steps / steps[0], color="0.5", linestyle=":", linewidth=1,
                    label="∝ steps (guide)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.margins(x=0.06, y=0.12)
        ax.set_xticks(steps, [str(int(s)) for s in steps])
        ax.xaxis.set_minor_locator(NullLocator())
        draw.log_ticks(ax)
        ax.set_xlabel("solver steps (fixed-step RK4)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        # the curves fill the whole panel (and the flat adjoint line hugs an edge), so the legend
        # goes under the axes where it cannot hide data
        draw.legend(ax, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    draw.title(fig, title, exp.caption("mean ± std over seeds and repeats; log–log axes"))
    return draw.save(fig, out_dir, name)


def plot_memory(exp: Experiment, out_dir: Path) -> list[Path]:
    """The memory-profile task's figures: ``memory_vs_steps`` and ``time_vs_steps``."""
    return (
        _profile_vs_steps(exp, out_dir, "memory_vs_steps", "peak_saved_bytes", 1 / 2**20,
                          "Peak memory saved for backward vs solver steps",
                          "peak saved tensors (MiB)")
        + _profile_vs_steps(exp, out_dir, "time_vs_steps", "seconds", 1.0,
                            "Time per training step vs solver steps",
                            "seconds per training step (s)")
    )
