"""``python -m local_stack`` (``make run``): the whole API on http://127.0.0.1:${PORT:-3000}.

Kept to an import and a call: worker processes are spawned, and a spawned process imports the
parent's ``__main__`` module again, which must not start a second gateway.
"""

from local_stack.gateway import main

if __name__ == "__main__":
    main()
