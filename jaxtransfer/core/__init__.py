"""The core: what every layer may use and that names no feature.

errors, the config helpers and schema checks (configlib), the registry that
features add themselves to (registry), workdirs, checkpoints, the
multi-process helpers (distributed) and the metric writers
(tensorboard_events). Imports nothing of the package above it.
"""
