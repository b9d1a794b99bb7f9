"""Service layer: one function per operation, taking plain values and a store."""
