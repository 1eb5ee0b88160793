"""Interlock benchmarks against the floor (bare Temporal, plain Ansible); see docs/bench.md."""
