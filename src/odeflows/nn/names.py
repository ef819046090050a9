"""Names of the building blocks that model options choose from, importable without torch: model
entries declare their options from these tuples, and :mod:`odeflows.nn.layers` maps each name to
its implementation (a test checks the two agree)."""

__all__ = ["DIVERGENCES", "IMAGE_LAYERS", "NONLINEARITIES", "TIME_LAYERS"]

NONLINEARITIES = ("tanh", "relu", "softplus", "elu")
#: FFJORD's time-conditioned linear layers
TIME_LAYERS = ("concat", "concatsquash")
#: the multiscale image flows' conv layers: time as a channel (FFJORD) or AFFJORD's hypernet
IMAGE_LAYERS = ("concat", "hyper")
#: how a CNF's log-density change is integrated: Hutchinson's estimator or the exact trace
DIVERGENCES = ("hutchinson", "exact")
