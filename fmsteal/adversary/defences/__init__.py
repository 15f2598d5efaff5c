"""Defences: the victim owner's side, inside the black box between the victim's probabilities and the
output mode. The thief sees answers only and cannot tell whether, or which, defence runs.

`DEFENCES` lists them (name, help, typed parameters); `plan_defence` validates a choice against the
API's output mode; `build_defence` makes one instance per client, given a `DefenceContext`.
Importing this package imports no torch (the defence modules import it inside their functions),
so the experiment's config validates against `DEFENCES` without it. Listing order = import order below.
"""

from fmsteal.adversary.defences.base import (DEFENCES, Defence, DefenceContext, DefencePlan, build_defence,
                                          plan_defence)
from fmsteal.adversary.defences import (truncation, noise, reverse_sigmoid, mad, mad_angular,  # noqa: F401,E402
                                     misinformation, misinformation_reversed, watermark, prada)

__all__ = ["DEFENCES", "Defence", "DefenceContext", "DefencePlan", "build_defence", "plan_defence"]
