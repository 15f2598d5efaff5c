"""The command line: `fmsteal run|sweep|zoo` (also `python -m fmsteal`).

Options are generated from the experiment's field declarations; commands call the experiment and
service layers and print plain summaries. Nothing below imports from here.
"""

from fmsteal.cli.main import main

__all__ = ["main"]
