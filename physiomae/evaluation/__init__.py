"""Evaluation of frozen encoders, the run that eval.py drives (`runner.run_evaluation`) and its parts, lowest first:
`probing` (tasks, features, probes, metrics), `variants` (which encoders a checkpoint holds), `data` (the probe
splits), `features` (a variant's features and probes), `analysis` (attention and modality analyses), `export`
(task classifiers), `label_efficiency`, `tables` (the ranking and its markdown / json)."""
