"""Figures: every figure of an experiment, drawn from finished run directories and prepared data
only.

- :mod:`~odeflows.figures.view`: the view model (:class:`~odeflows.figures.view.Experiment`,
  ``Group``, ``RunView``) and the one place that reads runs' files for figures;
- :mod:`~odeflows.figures.draw`: the drawing helpers every figure shares;
- one module per task's figures (``regression``, ``density``, ``memory``, ``classification``,
  ``image_density``), which the tasks name as their ``drawer``;
- :mod:`~odeflows.figures.named`: the figures an experiment names (``figures:`` in its file);
- :mod:`~odeflows.figures.plot`: :func:`~odeflows.figures.plot.plot_experiment`, which draws
  them all (``odeflows plot``).

The named-figure registry lives in :mod:`odeflows.figure_names` so that configuration can check
names without depending on figure code; this package gives it its public names. A figure is a
registered function ``draw(exp, out_dir) -> list[Path]`` of an
:class:`~odeflows.figures.view.Experiment` view, registered with :func:`register_figure`.
Looking a name up imports every module of :mod:`odeflows.figures.named` (training jobs
included), so this package's ``__init__`` and those modules import no matplotlib.
"""

from odeflows.figure_names import FIGURES, Draw, get_figure, register_figure

__all__ = ["FIGURES", "Draw", "get_figure", "register_figure"]
