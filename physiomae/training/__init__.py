"""What train.py runs: `arguments` (the three argument dataclasses), `data` (the training stream of one model),
`checkpoints`, `pretraining` (the run loop), `export` (the Hub folder, push, loss curves)."""
