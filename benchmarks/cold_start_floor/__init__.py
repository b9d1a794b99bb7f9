"""Reference imports for :mod:`benchmarks.cold_start`: what the frameworks cost before any of our
code. Each module is imported alone in a fresh interpreter, as a handler module is."""
