"""`python -m demo_suite build [--quick] [--out DIR] [--resume]`, the same as `sae-analysis demo build`."""

import sys

from sae_analysis_cli.demo import main

sys.exit(main())
