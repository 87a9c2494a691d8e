"""The project's own experiments: the comparison plan (compare.py), its training queues
(queue.py) and the report generator (report.py). Not installed with the package (pyproject.toml
finds `fewshot_mann*` only) and never imported by it; run from the repository root
(`python -m experiments.queue`, `python scripts/report.py`).
"""
