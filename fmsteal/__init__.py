"""fmsteal: watch a model-stealing attack on foundation-model classifiers happen."""

__version__ = "0.1.0"
