"""Test support shared by tests and benchmarks: hand-made lake runs and the per-window reference graph builder."""
