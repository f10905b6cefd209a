"""`jaxtransfer analyze`: per-layer linear probes (probes.py), CKA between
runs (cka.py), corruption accuracy, and the analysis report
(analysis_report.py); analyze.py runs them over a study or a run."""
