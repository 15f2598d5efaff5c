"""`python -m fmsteal`: the command line (see `fmsteal.cli`)."""

import sys

from fmsteal.cli import main

sys.exit(main())
