"""One experiment: its configuration (declared fields), its phases, its estimate and its run card.

`ExperimentConfig` and its field declarations import no torch, so the CLI, the app and the API can
build and validate configurations cheaply; `run` and the phases import the engine, the attack and
the evaluations. Nothing in the engine or the attack imports from here.
"""

from __future__ import annotations

__all__ = ["ExperimentConfig", "run", "resolve_device"]


def __getattr__(name: str):
    """Lazy exports: building a config must not import torch."""
    if name == "ExperimentConfig":
        from fmsteal.experiment.config import ExperimentConfig

        return ExperimentConfig
    if name in ("run", "resolve_device"):
        from fmsteal.experiment import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'fmsteal.experiment' has no attribute {name!r}")
