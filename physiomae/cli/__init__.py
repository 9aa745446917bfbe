"""The programs: `train`, `eval`, `finetune` and `run_experiment`, each a short top-down script over the library.

The repository's `train.py`, `eval.py`, `finetune.py` and `run_experiment.py` are links to these files, so
`python train.py ...` in a checkout and the installed console scripts (`physiomae-train`, `physiomae-eval`,
`physiomae-finetune`, `physiomae-experiment`) run the same code; `python -m physiomae.cli.train ...` works wherever
the package is installed. Nothing is installed as a top-level `train` or `eval` module. No library module imports
these.
"""
