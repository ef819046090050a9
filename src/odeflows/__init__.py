"""odeflows: regenerate the reported numbers of FFJORD, AFFJORD, RNODE, ANODE and the adjoint
method from one workflow. Users load finished runs with :func:`odeflows.api.load_run`."""

__version__ = "0.1.0"
