"""The adversary: the black box in front of a victim and everything the thief does through it.

Owns `BlackBoxVictim` (the only door to a victim: output modes, budget, defences), query strategies
and the thief. It imports the engine's backbones and training loops, never the victim's
implementation (`fmsteal.engine.victim`), so every number it reports was reachable by an attacker.
"""
