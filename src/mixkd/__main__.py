"""`python -m mixkd` (also what torchrun runs: `torchrun --nproc_per_node N -m mixkd distill ...`)."""

import sys

from mixkd.cli import main

sys.exit(main())
