"""No garbage collection while a Lambda function initialises (README, "Cold start").

Importing a handler creates 50,000 to 100,000 objects that live as long as the execution
environment (modules, classes, functions, pydantic's field descriptions) and next to no garbage,
yet the collector runs after every 700 new objects and walks them again and again: measured with
``gc.callbacks``, about 40 ms of a 330 ms handler import (130 collections, one of them full),
60 ms of a model handler's. So collection is paused by the import of this package, which is every
handler module's first import (``tests/test_cold_start.py`` checks it), until the handler is
built; then the objects made so far are frozen (``gc.freeze``: no collection walks them again,
which also shortens every full collection during requests) and collection resumes. Nothing is
deferred: the same modules are imported, without the collector's work.

Only in Lambda, whose runtime sets ``_HANDLER``: tests, the local stack and the tools import the
same modules with the collector as usual.
"""

import gc
import os

_paused = False


def pause() -> None:
    """Called by the package's import (``chat_sessions/__init__.py``)."""
    global _paused
    if os.environ.get("_HANDLER") and gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """Called once the handler is built: by ``api.lambda_handler_for`` (every HTTP handler's last
    line) and at the end of each other handler module (``tests/test_cold_start.py`` checks all)."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
