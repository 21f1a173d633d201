"""`python -m kronos`: see kronos.cli. The process is set up before anything loads torch."""

import sys

from kronos.process import prepare

prepare()
from kronos.cli import main  # noqa: E402

sys.exit(main())
