"""Serving experiments: the background job store, sweeps and presets, figures and precomputed tables.

Runs experiments through `fmsteal.experiment` and turns cards into plain data and plotly figures
for the app and the CLI. Imports torch only inside the functions that run experiments.
"""
