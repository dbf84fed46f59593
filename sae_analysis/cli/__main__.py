"""`python -m sae_analysis.cli ...`, the same as the `sae-analysis` console script."""

import sys

from sae_analysis.cli import main

sys.exit(main())
