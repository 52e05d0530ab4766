"""Benchmarks: figures measured side by side in one run, printed and written as JSON.

Run ``python -m benchmarks --help``. Nothing here is a test: targets are printed next to the
figures, and nothing fails when a figure misses its target.
"""
