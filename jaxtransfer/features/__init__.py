"""Features: each module or subpackage here adds one capability to the lab
(staged runs, active learning, per-layer analysis, ...) by registering its
config checks, run kind, evaluation, report section and command with the
core's registry (core/registry.py). They are found by this folder's
listing (`registry.load_features`), not by a list: adding a feature is
adding a module here. A feature imports the layers below it and never
another feature (import-linter's independence contract, pyproject.toml).
"""
