"""Declarations of the built-in models: what each entry is (kinds, data, options, traits, label)
without importing its implementation, which :class:`odeflows.registry.Deferred` imports when a
model is built. Each module here declares the entries of one implementation module of
:mod:`odeflows.models`; :data:`odeflows.models.MODELS` imports them all on first use."""
