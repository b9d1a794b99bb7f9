"""Reference imports for :mod:`benchmarks.cold_start`: what the frameworks cost before any of our
code. Each module is imported alone in a fresh interpreter, as a handler module is.

With the handlers' own treatment of the garbage collector (``chat_sessions.coldstart``): paused
from the first import (this package's), frozen and resumed at the module's end. So the floor is
the frameworks' cost as our handlers pay it, not inflated by collections they avoid."""

import gc

gc.disable()
