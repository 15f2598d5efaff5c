"""When an adversarial-transfer measure can rank a stolen copy against an independent model, and how a range of
gains is written. Imports nothing heavy: the Results views (no torch) and the evaluations share it."""

from __future__ import annotations

__all__ = ["SATURATED", "signed_span"]

SATURATED = 0.98  # an attack fooling the victim on this share of images from both models cannot rank them


def signed_span(values: list[float]) -> str:
    """"+7.6", or "-2.1 to +7.6" when the values differ at one decimal."""
    low, high = f"{min(values):+.1f}", f"{max(values):+.1f}"
    return low if low == high else f"{low} to {high}"
