"""fruitspark's benchmark suite: one module per section (benchmarks/sections/), shared helpers
(common.py, bare_model.py), the issues' targets in one table (targets.py), results saved per
section (results/<section>.json) and BENCHMARKS.md rendered from them (document.py).

Run ``python -m benchmarks --help``; the protocol for a section is in benchmarks/README.md.
"""
