"""Mutation check of the store's conditions: ``python -m tests.mutation`` (``make mutants``)."""
