"""fmsteal: watch a model-stealing attack on foundation-model classifiers happen.

`fmsteal.attack(victim, pool=..., test=..., thief=..., budget=...)` steals your own model (a function,
an ONNX or TorchScript file, an HTTP API, a Gradio Space); `fmsteal.run(ExperimentConfig(...))` runs
a whole experiment with a victim trained here (its steal phase is `attack`). Both yield plain-dict
events ending with a run card.
"""

__version__ = "0.2.0"
__all__ = ["attack", "run", "ExperimentConfig", "BlackBoxVictim", "__version__"]


def __getattr__(name: str):
    """Lazy exports: `import fmsteal` stays light (no torch until an attack runs)."""
    if name == "attack":
        from fmsteal.experiment.attack import attack

        return attack
    if name in ("run", "ExperimentConfig"):
        import fmsteal.experiment as experiment

        return getattr(experiment, name)
    if name == "BlackBoxVictim":
        from fmsteal.adversary.blackbox import BlackBoxVictim

        return BlackBoxVictim
    raise AttributeError(f"module 'fmsteal' has no attribute {name!r}")
