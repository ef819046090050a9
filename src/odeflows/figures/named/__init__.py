"""Figures an experiment names (``figures:`` in its file), drawn besides its tasks' own.

A figure is a registered function ``draw(exp, out_dir) -> list[Path]`` of an
:class:`odeflows.figures.view.Experiment` view that reads run directories and tables only, like
every figure. Every module of this package is imported when a figure name is first looked up
(:data:`odeflows.figure_names.FIGURES`), which configuration does to check an experiment's
names, training jobs included: so a module here imports matplotlib (and
:mod:`odeflows.figures.draw`) only inside the functions that draw. A user's module registers
more with :func:`odeflows.figures.register_figure` and is named under ``modules:``.
"""
