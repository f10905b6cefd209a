"""Active learning (source write-up 003): rounds of training and querying
(active_learning.py) and their report section (active_report.py)."""
