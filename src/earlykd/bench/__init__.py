"""Sweeps over datasets, methods, earliness and seeds; results in SQLite; local or Ray executors."""
