"""Metric families added for the built-in tasks and probes; importing this package registers them.

Kept out of bench/metrics.py (the core registry and ROUGE/EM/F1) so each family is one small module:
abstention and hallucination (the unanswerable-item probe), choice (yes/no/maybe and other closed
answer sets), mri_consistency (fact checks of generated MRI descriptions against structured truth).
"""

from bench.metric_families import abstention, choice, mri_consistency  # noqa: F401
