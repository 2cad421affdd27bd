"""python -m msrgb status|verify ... (msrgb.cli)."""

import sys

from msrgb.cli import main

sys.exit(main())
