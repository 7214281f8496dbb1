"""orchestrator-mlp: a reference plugin distribution for orchestrator."""

__version__ = "0.1.0"
