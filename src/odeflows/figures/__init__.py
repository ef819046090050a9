"""Figures an experiment names (``figures:`` in its file), drawn besides its tasks' own.

A figure is a registered function ``draw(exp, out_dir) -> list[Path]`` of an
:class:`odeflows.plots.Experiment` view that reads run directories and tables only, like every
figure. Its module must not import matplotlib at import time: looking a name up imports every
module of this package (see :mod:`odeflows.figure_names`, where the registry lives so that
configuration can check names without depending on figure code). Built-in figures live in this
package's modules; a user's module registers more with :func:`register_figure` and is named under
``modules:``.
"""

from odeflows.figure_names import FIGURES, Draw, get_figure, register_figure

__all__ = ["FIGURES", "Draw", "get_figure", "register_figure"]
