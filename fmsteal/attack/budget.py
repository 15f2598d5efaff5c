"""The budget ladder: the query counts at which a thief is retrained and evaluated. Imports no torch."""

from __future__ import annotations

__all__ = ["curve_checkpoints"]


def curve_checkpoints(budget: int) -> list[int]:
    """Budgets at which the thief is evaluated: a 1-1.5-2-3-5-7 ladder from budget/100 up to `budget`."""
    low = max(20, budget / 100)
    ladder = sorted({int(m * 10**e) for e in range(1, 8) for m in (1, 1.5, 2, 3, 5, 7)})
    return [b for b in ladder if low <= b < budget] + [budget]
