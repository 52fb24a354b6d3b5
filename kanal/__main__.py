"""`python -m kanal`: the same as the `kanal` console script."""

import sys

from kanal.cli.main import main

sys.exit(main())
