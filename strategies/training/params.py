"""The hyperparameters of every fine-tuning method, with CPU-demo defaults and range checks.

Defaults train a few steps so `bench run` stays laptop-fast; docs/finetuning.md lists the GPU defaults
for an 8B model (the seeds' QLoRA: r=16, 3 epochs with early stopping). `validate()` returns a one-line
problem or None; the run config calls it before anything trains.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Optional

from bench.types import GGUF_TYPES

EVAL_BACKENDS = ("gguf", "hf")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
EXPORT_DTYPES = ("auto", *GGUF_TYPES)  # auto: the run's serve_format, so every arm is served alike

# What a fine-tuning arm trains on (strategies/training/data.py: recipe_records): the train split's pairs
# (minus generated paraphrases), the pairs with their paraphrases, the task's documents (every token
# learned), or documents then pairs. The knowledge-injection recipes of docs/finetuning.md.
RECIPES = ("qa", "qa+paraphrases", "docs", "docs+qa")

# Fields that change how a trained model is served, not what is trained: kept out of the adapter key.
SERVING_FIELDS = ("eval_backend", "export_dtype", "threads")


@dataclass(frozen=True)
class TrainParams:
    max_steps: int = 0  # 0 = train whole epochs (with early stopping); > 0 caps the optimizer steps
    epochs: float = 3.0  # at most (the seeds' choice); early stopping on validation loss usually uses fewer
    learning_rate: float = 1e-3
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 256  # tokens per example (prompt + answer), longer ones are cut
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    scheduler: str = "linear"
    val_fraction: float = 0.2  # validation slice carved from train with the seed; 0 = none
    eval_every: int = 0  # optimizer steps between validation passes; 0 = twice per epoch
    patience: int = 2  # evaluations without improvement before stopping; 0 = never stop early
    recipe: str = "qa"  # what it trains on: qa | qa+paraphrases | docs | docs+qa (RECIPES)
    unknown_share: float = -1.0  # >= 0: train on mix_size pairs, this share unknown to the base model (SliCK), -1 = off
    mix_size: int = 0  # with unknown_share: pairs in the mix (0 = as many as the scarcer kind allows)
    mix_pool: int = 0  # with unknown_share: label only the first N training pairs (0 = all; SliCK costs 8 calls each)
    train_tokens: int = 0  # > 0: train on exactly this many tokens (the recipe's records cycled, one pass), 0 = epochs
    padding_free: bool = True  # each batch's examples flattened into one row, no pad tokens (same loss, faster)
    eval_backend: str = "gguf"  # gguf: merged model exported for llama.cpp; hf: the unmerged adapter
    export_dtype: str = "auto"
    threads: int = 0  # torch threads for training; 0 = the run's threads (or one per core)

    def validate(self) -> Optional[str]:
        if self.max_steps < 0:
            return f"max_steps must be >= 0 (0 = train `epochs` epochs), got {self.max_steps}"
        if not 0 < self.epochs <= 100:
            return f"epochs must be in (0, 100], got {self.epochs}"
        if not 0 < self.learning_rate < 1:
            return f"learning_rate must be in (0, 1), got {self.learning_rate}"
        if self.batch_size < 1 or self.grad_accum < 1:
            return f"batch_size and grad_accum must be >= 1, got {self.batch_size} and {self.grad_accum}"
        if self.max_length < 8:
            return f"max_length must be >= 8 tokens, got {self.max_length}"
        if not 0 <= self.warmup_ratio < 1:
            return f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}"
        if self.weight_decay < 0:
            return f"weight_decay must be >= 0, got {self.weight_decay}"
        if self.scheduler not in SCHEDULERS:
            return f"scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}"
        if not 0 <= self.val_fraction < 0.9:
            return f"val_fraction must be in [0, 0.9), got {self.val_fraction}"
        if self.eval_every < 0:
            return f"eval_every must be >= 0 steps (0 = twice per epoch), got {self.eval_every}"
        if self.patience < 0:
            return f"patience must be >= 0 (0 = no early stopping), got {self.patience}"
        if self.recipe not in RECIPES:
            return f"recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}"
        if self.unknown_share != -1.0 and not 0 <= self.unknown_share <= 1:
            return f"unknown_share must be in [0, 1] (or -1 = off), got {self.unknown_share}"
        if self.mix_size < 0 or self.mix_pool < 0:
            return f"mix_size and mix_pool must be >= 0 (0 = as many as there are), got {self.mix_size}, {self.mix_pool}"
        if not 0 <= self.train_tokens <= 10**9:
            return f"train_tokens must be in [0, 1e9] (0 = train `epochs` epochs), got {self.train_tokens}"
        if self.eval_backend not in EVAL_BACKENDS:
            return f"eval_backend must be gguf or hf, got {self.eval_backend!r}"
        if self.export_dtype not in EXPORT_DTYPES:
            return f"export_dtype must be one of {', '.join(EXPORT_DTYPES)}, got {self.export_dtype!r}"
        if self.threads < 0:
            return f"threads must be >= 0, got {self.threads}"
        return None

    def training_dict(self) -> dict:
        """What goes into the adapter cache key."""
        return {k: v for k, v in asdict(self).items() if k not in SERVING_FIELDS}


@dataclass(frozen=True)
class LoraParams(TrainParams):
    r: int = 16  # the seeds' rank
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str = "all-linear"  # or a comma list: q_proj,v_proj

    def validate(self) -> Optional[str]:
        if not 1 <= self.r <= 1024:
            return f"r must be in [1, 1024], got {self.r}"
        if self.alpha < 1:
            return f"alpha must be >= 1, got {self.alpha}"
        if not 0 <= self.dropout < 1:
            return f"dropout must be in [0, 1), got {self.dropout}"
        if not self.target_modules.strip():
            return "target_modules is empty; use all-linear or a comma list like q_proj,v_proj"
        return super().validate()


@dataclass(frozen=True)
class QLoraParams(LoraParams):
    pass


@dataclass(frozen=True)
class LoftqParams(LoraParams):
    loftq_iter: int = 1  # alternating quantize/SVD iterations of the LoftQ initialisation

    def validate(self) -> Optional[str]:
        if not 1 <= self.loftq_iter <= 10:
            return f"loftq_iter must be in [1, 10], got {self.loftq_iter}"
        return super().validate()


@dataclass(frozen=True)
class AdaLoraParams(LoraParams):
    r: int = 8  # target average rank after pruning
    init_r: int = 12  # starting rank

    def validate(self) -> Optional[str]:
        if self.init_r < self.r:
            return f"init_r ({self.init_r}) must be >= r ({self.r}): AdaLoRA prunes ranks down to r"
        return super().validate()


@dataclass(frozen=True)
class CptLoraParams(LoraParams):
    recipe: str = "docs+qa"  # continued pretraining on the documents, then the pairs (recipe "docs": documents only)


@dataclass(frozen=True)
class IA3Params(TrainParams):
    learning_rate: float = 3e-3


@dataclass(frozen=True)
class VirtualTokenParams(TrainParams):
    learning_rate: float = 1e-2
    num_virtual_tokens: int = 16
    eval_backend: str = "hf"  # virtual tokens cannot be merged into weights

    def validate(self) -> Optional[str]:
        if not 1 <= self.num_virtual_tokens <= 512:
            return f"num_virtual_tokens must be in [1, 512], got {self.num_virtual_tokens}"
        if self.eval_backend != "hf":
            return "eval_backend must be hf: prefix and prompt tuning cannot be merged into a GGUF"
        return super().validate()


@dataclass(frozen=True)
class FullParams(TrainParams):
    learning_rate: float = 2e-5


@dataclass(frozen=True)
class FreezeParams(TrainParams):
    learning_rate: float = 5e-5
    train_top_layers: int = 2  # the top N transformer blocks (and the final norm) train, the rest is frozen

    def validate(self) -> Optional[str]:
        if self.train_top_layers < 1:
            return f"train_top_layers must be >= 1, got {self.train_top_layers}"
        return super().validate()


PREFERENCE_LOSSES = ("sigmoid", "ipo", "hinge", "robust", "sigmoid_norm")  # TRL's pairwise losses on the reward gap


@dataclass(frozen=True)
class DpoParams(LoraParams):
    learning_rate: float = 5e-4  # LoRA on a preference loss: half the SFT rate
    beta: float = 0.1  # strength of the pull towards the reference model (DPO's beta, SPIN's lambda)
    loss_type: str = "sigmoid"  # sigmoid = DPO/SPIN's logistic loss; ipo, hinge, robust, sigmoid_norm
    nll_weight: float = 0.0  # > 0 adds the chosen answers' negative log-likelihood with this weight (RPO)
    answer_tokens: int = 64  # new tokens of the model's own greedy answers (the rejected side)
    sft_epochs: float = 0.0  # SFT warm-up (LoRA on the train split) before the preference loss; 0 = none

    def validate(self) -> Optional[str]:
        if self.beta <= 0:
            return f"beta must be > 0, got {self.beta}"
        if self.loss_type not in PREFERENCE_LOSSES:
            return f"loss_type must be one of {', '.join(PREFERENCE_LOSSES)}, got {self.loss_type!r}"
        if self.nll_weight < 0:
            return f"nll_weight must be >= 0 (0 = pure preference loss), got {self.nll_weight}"
        if not 1 <= self.answer_tokens <= 4096:
            return f"answer_tokens must be in [1, 4096], got {self.answer_tokens}"
        if not 0 <= self.sft_epochs <= 100:
            return f"sft_epochs must be in [0, 100] (0 = no SFT warm-up), got {self.sft_epochs}"
        return super().validate()


@dataclass(frozen=True)
class SftDpoParams(DpoParams):
    sft_epochs: float = 1.0


@dataclass(frozen=True)
class SpinParams(DpoParams):
    iterations: int = 2  # self-play rounds: each answers the train prompts anew and trains against those answers
    epochs: float = 2.0  # per iteration

    def validate(self) -> Optional[str]:
        if not 1 <= self.iterations <= 20:
            return f"iterations must be in [1, 20], got {self.iterations}"
        return super().validate()


@dataclass(frozen=True)
class GanPromptParams(TrainParams):
    learning_rate: float = 3e-3  # the generator's
    num_virtual_tokens: int = 16  # k soft tokens per input (prompt_tuning's default, so the two compare)
    generator_width: int = 64  # width of the generator's attention over the input embeddings
    disc_width: int = 64  # hidden width of the discriminator's classifier
    disc_learning_rate: float = 1e-3
    adv_weight: float = 0.1  # weight of the adversarial (discriminator-reward) loss beside the answer likelihood
    answer_tokens: int = 32  # new tokens of the fake answers generated every epoch
    chance_margin: float = 0.05  # stop once the discriminator's held-out accuracy is within 0.5 +- this
    eval_backend: str = "hf"  # the generator runs in front of the frozen model: nothing to merge

    def validate(self) -> Optional[str]:
        if not 1 <= self.num_virtual_tokens <= 512:
            return f"num_virtual_tokens must be in [1, 512], got {self.num_virtual_tokens}"
        if not 1 <= self.generator_width <= 4096 or not 1 <= self.disc_width <= 4096:
            return f"generator_width and disc_width must be in [1, 4096], got {self.generator_width} and {self.disc_width}"
        if not 0 < self.disc_learning_rate < 1:
            return f"disc_learning_rate must be in (0, 1), got {self.disc_learning_rate}"
        if self.adv_weight < 0:
            return f"adv_weight must be >= 0 (0 = likelihood only), got {self.adv_weight}"
        if not 1 <= self.answer_tokens <= 4096:
            return f"answer_tokens must be in [1, 4096], got {self.answer_tokens}"
        if not 0 <= self.chance_margin < 0.5:
            return f"chance_margin must be in [0, 0.5), got {self.chance_margin}"
        if self.eval_backend != "hf":
            return "eval_backend must be hf: the prompt generator runs in front of the frozen model, nothing merges"
        return super().validate()


def field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]
