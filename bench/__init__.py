"""Interlock benchmarks against the floor (bare Temporal, plain Ansible); see the README's Benchmarks section and bench/RESULTS.md."""
