"""`python -m pipeline.cli`: the same as `netsem`."""

import sys

from . import main

sys.exit(main())
