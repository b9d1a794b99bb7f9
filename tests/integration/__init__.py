"""The local stack over real HTTP: ``python -m local_stack`` as a child process, httpx clients."""
