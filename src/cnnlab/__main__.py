"""`python -m cnnlab` (and `torchrun -m cnnlab`) run the CLI."""

import sys

from cnnlab.cli import main

sys.exit(main())
