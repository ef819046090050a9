"""Numerical checks a task's evaluation runs on a trained model and records as evidence for the
claims: :mod:`odeflows.evidence.estimators` (Hutchinson's trace estimator against the exact
trace) and :mod:`odeflows.evidence.flows` (what each direction of a flow costs and how exactly one
undoes the other). A declaration layer beside ``models/`` and ``tasks/``; the tasks import these
modules when they evaluate, so looking a task up imports no torch.
"""
