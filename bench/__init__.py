"""Interlock benchmarks against the floor (bare Temporal, plain Ansible).

See the README's Benchmarks section; the latest figures are in bench/RESULTS.md.
"""
