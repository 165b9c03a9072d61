"""`python -m train ...` and `torchrun --nproc_per_node 2 -m train ...`: the resnet-train CLI."""

import sys

from train.cli import main

sys.exit(main())
