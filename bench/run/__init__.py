"""Running a grid: plan it (every name resolved before any model work), run each cell, write the results.

- `plan`: tasks, arms and the model from a RunConfig, and the list of cells;
- `pool`: each model loaded once per run, and only when a cell needs it;
- `pipeline`: stacking strategies into arms (`lora+rag+cot`);
- `context`: what a strategy sees while a cell runs; the one place models are called;
- `cache`: the SQLite generation cache;
- `cell`: `run_cell`, one (task, arm, model, seed);
- `grid`: `run_grid`, the loop over cells that writes results/<run_id>/ atomically and resumes;
- `strata`, `probes`: SliCK known/unknown labels and forgetting probes.
"""
