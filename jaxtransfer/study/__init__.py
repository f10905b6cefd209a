"""Studies: the plan of a study's arms (planning.py), the runner that trains
them (runner.py; vectorize.py trains arms as one program), and the report
written from what they filed (report.py, report_columns.py,
report_plots.py)."""
