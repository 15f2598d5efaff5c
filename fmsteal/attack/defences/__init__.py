"""Defences: the victim owner's side, inside the black box between the victim's probabilities and the
output mode. The thief sees answers only and cannot tell whether, or which, defence runs.

`DEFENCES` lists them (name, help, typed parameters); `plan_defence` validates a choice against the
API's output mode; `build_defence` makes one instance per client, given a `DefenceContext`.
Importing this package imports no torch; the defence modules are loaded on the first lookup.
"""

from fmsteal.attack.defences.base import (DEFENCES, Defence, DefenceContext, DefencePlan, build_defence,
                                          plan_defence)

__all__ = ["DEFENCES", "Defence", "DefenceContext", "DefencePlan", "build_defence", "plan_defence"]
