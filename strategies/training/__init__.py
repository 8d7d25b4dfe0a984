"""Fine-tuning machinery shared by every fine-tuning strategy (strategies/finetune.py).

data: the train split rendered with the model's template; methods: one small recipe per method;
params: hyperparameters and their checks; trainer: the single TRL SFTTrainer loop with the adapter
cache; weights: saving, loading and merging what trained; callbacks: loss log, early stopping, plot.
"""
