"""The built-in plugins, installed as the package ``orchestrator_plugins``.

They are registered through the ``orchestrator`` entry-point group in ``pyproject.toml``, just
as a third party's plugins are, and use only the public API of ``orchestrator``. None of them
imports Lightning or MLflow; torch is imported by the builders, when a component is built.
"""
