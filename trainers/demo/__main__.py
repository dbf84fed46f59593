"""`python -m trainers.demo build [--quick] [--out DIR] [--resume]`, the same as `sae-analysis demo build`."""

import sys

from trainers.demo.cli import main

sys.exit(main())
