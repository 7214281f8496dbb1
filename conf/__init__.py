"""The app's YAML config, installed as the package ``orchestrator.conf`` (see pyproject.toml).

Hydra reads it from the installed package: a wheel or ``pip install .`` carries it, not only a
checkout."""
