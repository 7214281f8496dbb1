"""Hydra sweeper ``hydra/sweeper=optuna``, on current Optuna, shipped with orchestrator.

Hydra finds it in its plugin namespace (``hydra_plugins``): :mod:`.config` registers the config
(``hydra/sweeper: optuna`` and the samplers ``hydra/sweeper/sampler: tpe|random|nsgaii|grid``),
:mod:`.optuna_sweeper` the sweeper class. Optuna is imported when a search runs, never when
Hydra scans its plugins: the work is done by :mod:`orchestrator.optuna_search`.
"""
