"""The built-in plugins, installed as the package ``orchestrator_plugins``.

They are registered through the ``orchestrator`` entry-point group in ``pyproject.toml``, just
as a third party's plugins are. The components (models, optimizers, regularizers, data) use only
the public API of ``orchestrator``; ``tracking`` returns orchestrator's MLflow tracker
(``orchestrator.tracking``). None of them imports Lightning or MLflow when it is loaded; torch is
imported by the builders, when a component is built, and MLflow when a run is recorded.
"""
