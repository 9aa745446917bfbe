"""The `arousal_auprc` evaluate module (`arousal_auprc.py`) and its computation (`arousal_scores.py`).

A package so that `physiomae` imports the computation as `physiomae.metrics.arousal_auprc.arousal_scores`;
`evaluate.load` ignores this file. Importing it imports nothing.
"""
