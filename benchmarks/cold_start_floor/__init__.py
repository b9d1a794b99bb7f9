"""Reference imports for :mod:`benchmarks.cold_start`: what the frameworks cost before any of our
code. Each module is imported alone in a fresh interpreter, as a handler module is.

With the handlers' own treatment of the garbage collector (``chat_sessions.coldstart``), and
earlier: paused from the first import (here, before boto3 and Powertools; a handler pauses it
after Powertools' event handler), frozen and resumed at the module's end. So the floor is the
frameworks' best case, not inflated by collections our handlers avoid."""

import gc

gc.disable()
