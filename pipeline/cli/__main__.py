"""`python -m pipeline.cli`: the same as `netsem`."""

import sys

from .main import main

sys.exit(main())
