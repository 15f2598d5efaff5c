"""Evaluations: what a run measures once the thief is trained (agreement metrics, and more to come).

Each evaluation is a registered function whose result lands in the run card under its own name.
It may import the engine and the attack's public types; the experiment calls it, never the reverse.
"""
