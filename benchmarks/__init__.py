"""Cost benchmark: this service's per-item layout against the whole-history-in-one-item design.

``python -m benchmarks.run`` (``make bench``) measures both on one local DynamoDB (moto) and
writes ``benchmarks/results.md`` and ``benchmarks/bytes_per_message.png``. The request meter
(:mod:`benchmarks.meter`) and the history seeding (:mod:`benchmarks.seed`) are shared with
``tests/test_cost.py``, which asserts the cost properties the benchmark reports.
"""
