"""Drawing helpers shared by every figure: the panel grid, title and caption, legends, bands of
mean ± std over seeds, image panels and montages, log-axis ticks, saving, and the placeholder a
figure becomes when there is nothing to draw.

Every figure is written as PNG (for the report) and PDF (for papers) at one style
(:func:`style`). A figure with nothing to draw still exists and says why.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
import pandas as pd

# Agg before pyplot: the workflow runs headless and must never try to open a display
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

if TYPE_CHECKING:
    from odeflows.figures.view import Group

__all__ = ["BAND", "DATA_COLOR", "DPI", "NO_DATA", "band", "band_xy", "close", "empty_figure",
           "figure", "group_band", "image_panel", "legend", "log_if_wide", "log_ticks", "montage",
           "no_data", "save", "show_image", "style", "style_axes", "style_legend", "time_unit",
           "title", "title_fit"]

DPI = 130
NO_DATA = "no completed runs"
BAND = "mean ± std over seeds"
DATA_COLOR = "0.25"


@contextmanager
def style() -> Iterator[None]:
    """One style for every figure, without touching the global rcParams of a calling process."""
    with plt.rc_context({"axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8,
                         "ytick.labelsize": 8}):
        yield


# ---------------------------------------------------------------------------------------------
# figure, title, saving


def figure(n_rows: int, n_cols: int, panel: tuple[float, float] = (4.2, 3.3),
           **kwargs: Any) -> tuple[Figure, np.ndarray]:
    """A figure of ``n_rows`` × ``n_cols`` panels of ``panel`` inches each (plus room for the
    title), with constrained layout; the axes always as a 2-D array."""
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(panel[0] * n_cols, panel[1] * n_rows + 0.7),
                             layout="constrained", squeeze=False, **kwargs)
    return fig, axes


def title(fig: Figure, text: str, caption: str) -> None:
    """The figure's title with its caption on a second line."""
    # one suptitle with the caption on a second line: constrained layout reserves space for it,
    # which it would not do for a free-floating fig.text subtitle
    fig.suptitle(f"{text}\n{caption}", fontsize=11)


def title_fit(fig: Figure, text: str, caption: str) -> None:
    """:func:`title` with title and caption wrapped to the figure's width (narrow one-panel
    figures would otherwise clip long dataset names and captions)."""
    chars = max(40, int(fig.get_figwidth() * 12.5))  # ~12.5 characters per inch at 11 pt
    if len(text) > chars and " — " in text:
        text = text.replace(" — ", "\n", 1)
    title(fig, text, "\n".join(textwrap.wrap(caption, chars, break_on_hyphens=False)))


def save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """Write ``<name>.png`` and ``<name>.pdf`` into ``out_dir`` and close the figure; returns
    both paths, PNG first."""
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=DPI)
    # the layout is already solved (it is in inches, so the same for the PDF); solving it again
    # would double the cost of every figure
    fig.set_layout_engine("none")
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def close(fig: Figure) -> None:
    """Drop a figure that will not be saved (it found nothing to draw)."""
    plt.close(fig)


def empty_figure(out_dir: Path, name: str, text: str, caption: str,
                 details: Sequence[str] = ()) -> list[Path]:
    """Save a placeholder saying that nothing completed, and per model why (``details``: failed
    or not yet run)."""
    fig, axes = figure(1, 1, panel=(8.0, 3.5))
    axes[0, 0].set_axis_off()
    axes[0, 0].text(0.5, 0.6, NO_DATA, ha="center", va="center", fontsize=14, color="0.4")
    if details:
        axes[0, 0].text(0.5, 0.45, "\n".join(details), ha="center", va="top", fontsize=9,
                        color="0.4")
    title(fig, text, caption)
    return save(fig, out_dir, name)


# ---------------------------------------------------------------------------------------------
# panels


def no_data(ax: Axes, message: str = NO_DATA) -> None:
    """A panel that says why it is empty."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes,
            fontsize=11, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def image_panel(ax: Axes) -> None:
    """A panel for a picture: equal aspect, no ticks."""
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def style_axes(ax: Axes, xlabel: str, ylabel: str, integer_x: bool = False) -> None:
    """Axis labels and a grid (major and minor), with integer x ticks if asked (epochs)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    if integer_x:
        ax.xaxis.get_major_locator().set_params(integer=True)


def legend(ax: Axes, **kwargs: Any) -> None:
    """The panel's legend, if anything in it is labelled."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, framealpha=0.85, **kwargs)


def style_legend(ax: Axes, entries: Sequence[tuple[str, str]], **kwargs: Any) -> None:
    """Model legend plus line-style entries ``(linestyle, meaning)`` in grey."""
    handles, labels = ax.get_legend_handles_labels()
    for linestyle, text in entries:
        handles.append(Line2D([], [], color="0.3", linestyle=linestyle))
        labels.append(text)
    if handles:
        ax.legend(handles, labels, fontsize=8, framealpha=0.85, **kwargs)


# ---------------------------------------------------------------------------------------------
# curves over seeds


def band(ax: Axes, curves: Sequence[pd.Series], color: str, label: str,
         marker: str | None = None, linestyle: str = "-") -> bool:
    """Mean line and ±1 std band over seeds; curves are aligned on their index (x values).
    False when there is nothing to draw."""
    curves = [c.dropna() for c in curves if c is not None]
    curves = [c for c in curves if not c.empty]
    if not curves:
        return False
    table = pd.concat(curves, axis=1).sort_index()
    x = table.index.to_numpy(dtype=float)
    mean = table.mean(axis=1).to_numpy()
    # ddof=1 like the tables; a single seed has no spread to show, so no band
    std = table.std(axis=1, ddof=1).to_numpy() if table.shape[1] > 1 else np.zeros_like(mean)
    std = np.nan_to_num(std)
    # markers only where points are sparse enough to be seen individually (smoke-sized runs)
    mk = marker if marker is not None else ("o" if len(x) <= 25 else None)
    ax.plot(x, mean, color=color, label=label, marker=mk, markersize=4, linestyle=linestyle,
            linewidth=1.6)
    if table.shape[1] > 1:
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
    return True


def group_band(ax: Axes, group: Group, curves: Sequence[pd.Series], linestyle: str = "-",
               labelled: bool = True) -> bool:
    """One model's :func:`band` in its colour, labelled with its seeds, or an empty legend entry
    naming why it is absent."""
    label = group.label(len(curves)) if labelled else None
    if band(ax, curves, group.color, label or "_nolegend_", linestyle=linestyle):
        return True
    if labelled:
        ax.plot([], [], color=group.color, linestyle=linestyle, label=group.label(0))
    return False


def band_xy(ax: Axes, frames: Sequence[pd.DataFrame], colour: str, label: str) -> bool:
    """Like :func:`band` for curves whose x differs between seeds (wall-clock time): frames
    with columns x and y are aligned on their index (iteration); x and y are averaged over seeds
    and the band is ±1 std of y."""
    frames = [f.dropna() for f in frames]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return False
    xs = pd.concat([f["x"] for f in frames], axis=1).sort_index()
    ys = pd.concat([f["y"] for f in frames], axis=1).sort_index()
    x, y = xs.mean(axis=1).to_numpy(), ys.mean(axis=1).to_numpy()
    marker = "o" if len(x) <= 25 else None
    ax.plot(x, y, color=colour, label=label, marker=marker, markersize=4, linewidth=1.6)
    if ys.shape[1] > 1:
        std = np.nan_to_num(ys.std(axis=1, ddof=1).to_numpy())
        ax.fill_between(x, y - std, y + std, color=colour, alpha=0.2, linewidth=0)
    return True


# ---------------------------------------------------------------------------------------------
# axes and units


def log_ticks(ax: Axes) -> None:
    """Plain-number ticks on a log y axis, dense enough to read values off a narrow range.

    Matplotlib's defaults label only powers of ten, which leaves no label at all when the data
    span less than a decade (flat adjoint memory, smoke-sized step ranges).
    """
    lo, hi = ax.get_ylim()
    decades = range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1)
    for subs in ((1.0,), (1.0, 2.0, 5.0), (1.0, 2.0, 3.0, 5.0), tuple(np.arange(1.0, 10.0))):
        ticks = [m * 10.0**k for k in decades for m in subs if lo <= m * 10.0**k <= hi]
        if len(ticks) >= 3:
            break
    if not ticks:  # degenerate range (e.g. all values equal): keep matplotlib's choice
        return
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.yaxis.set_minor_locator(NullLocator())


def log_if_wide(ax: Axes, ratio: float = 10.0) -> bool:
    """Log y axis when every plotted value is positive and they span ``ratio`` or more."""
    values = [np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()]
    values = [v[np.isfinite(v)] for v in values if len(v)]
    if not values:
        return False
    allv = np.concatenate(values)
    if allv.size and allv.min() > 0 and allv.max() / allv.min() >= ratio:
        ax.set_yscale("log")
        log_ticks(ax)  # plain numbers (1, 2, 5, 10 …) rather than 2×10⁰
        return True
    return False


def time_unit(seconds: float) -> tuple[float, str]:
    """The unit (seconds per unit, name) to show a duration of up to ``seconds`` in."""
    if seconds >= 2 * 3600:
        return 3600.0, "hours"
    if seconds >= 120:
        return 60.0, "minutes"
    return 1.0, "seconds"


# ---------------------------------------------------------------------------------------------
# images


def montage(images: np.ndarray, max_tiles: int = 64) -> np.ndarray | None:
    """(n, C, H, W) uint8 images tiled on a near-square grid with 1-pixel grey gaps; returns an
    (h, w) greyscale or (h, w, 3) RGB array for :func:`show_image`, or None for anything else."""
    images = np.asarray(images)
    if images.ndim == 3:  # (n, H, W): one channel
        images = images[:, None]
    if images.ndim != 4 or len(images) == 0 or images.shape[1] not in (1, 3):
        return None
    if images.shape[2] >= 128:  # large images: fewer tiles, each still readable
        max_tiles = min(max_tiles, 16)
    if images.dtype != np.uint8:
        scale = 255.0 if float(np.nanmax(images)) <= 1.0 else 1.0
        images = np.clip(np.nan_to_num(images) * scale, 0, 255).round().astype(np.uint8)
    n = min(len(images), max_tiles)
    c, h, w = images.shape[1:]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 128, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        canvas[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = (
            images[i].transpose(1, 2, 0))
    return canvas[..., 0] if c == 1 else canvas


def show_image(ax: Axes, tiles: np.ndarray) -> None:
    """A :func:`montage` in an image panel, greyscale on a fixed 0–255 scale."""
    if tiles.ndim == 2:
        ax.imshow(tiles, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(tiles, interpolation="nearest")
    image_panel(ax)
