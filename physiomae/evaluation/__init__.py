"""Evaluation of frozen encoders: linear probes and metrics (`probing`), attention and modality analyses
(`analysis`), and the evaluation run that eval.py drives (`runner`)."""
