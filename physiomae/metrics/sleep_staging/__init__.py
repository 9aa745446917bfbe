"""The `sleep_staging` evaluate module (`sleep_staging.py`) and its computation (`staging_scores.py`).

A package so that `physiomae` imports the computation as `physiomae.metrics.sleep_staging.staging_scores`;
`evaluate.load` ignores this file. Importing it imports nothing.
"""
