"""Active learning (source write-up 003): rounds of training and querying
(active_learning.py) and their report section (active_report.py)."""

# Importing the feature registers it (core/registry.py).
from jaxtransfer.features.active import active_learning, active_report  # noqa: F401,E402
