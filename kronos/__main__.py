"""`python -m kronos`: see kronos.cli."""

import sys

from kronos.cli import main

sys.exit(main())
