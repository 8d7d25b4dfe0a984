"""Seeded generators of the synthetic built-in tasks (facts, facts_ru, mri_reports_ru).

Synthetic data is the only way to test *new* knowledge (no model saw it) with answers known exactly.
Each generator is deterministic from (config, seed): per-item RNG streams come from sha256, never from
Python's salted hash(); the built-in folders are generated once, committed, and verified against their
manifest.json (sha256 of every file) at load.
"""
