"""`none` and the truncating defences `top1`, `topk`, `rounding`.

Truncation already exists as the black box's output modes; these entries list it among the defences
without a second implementation: they leave the probabilities as they are and name the output mode
that `plan_defence` switches the API to (from `probs`), with that mode's own parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmsteal.adversary.defences.base import DEFENCES, Defence
from fmsteal.adversary.outputs import OUTPUT_MODES

if TYPE_CHECKING:
    import torch

__all__ = ["Undefended"]


class Undefended(Defence):
    """The victim's probabilities as they are (the output mode alone decides what is answered)."""

    def answer(self, images: "torch.Tensor", probs: "torch.Tensor") -> "torch.Tensor":
        return probs


DEFENCES.register("none", help="undefended: the victim's answer as it is", acts_on_labels=lambda p: True)(Undefended)

for _name, _mode in (("top1", "label"), ("topk", "topk"), ("rounding", "rounded")):
    _entry = OUTPUT_MODES.get(_mode)
    DEFENCES.register(_name, help=f"the output mode {_mode!r} instead of full probabilities: {_entry.help}",
                      params=_entry.params, output_mode=_mode)(Undefended)
