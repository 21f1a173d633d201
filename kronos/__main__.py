"""`python -m kronos`: see kronos.cli. The process is set up before anything loads torch.

The cyclic garbage collector is kept off the objects the imports make (modules, classes, functions: they live as
long as the process): collecting while torch and pandas load, and walking all of that again in every later full
collection and in the interpreter's collections at exit, cost a repeat scan about 0.8 s of its 5."""

import gc
import sys

from kronos.process import prepare

prepare()
gc.disable()
from kronos.cli import main  # noqa: E402

gc.freeze()
gc.enable()
code = main()
gc.freeze()  # what the command made is freed by the exit itself: the last collections need not walk it
sys.exit(code)
