"""Strategies: importing this package registers every strategy (prompting, retrieval, fine-tuning).

Each module registers its own names with `bench.registry.STRATEGIES`; heavy libraries (transformers,
peft, trl, faiss) are imported inside the methods that need them, so `bench ls` stays fast.
"""

from strategies import finetune, prompting, rag  # noqa: F401
