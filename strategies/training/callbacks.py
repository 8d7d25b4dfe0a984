"""Trainer callbacks: the loss log, early stopping on validation loss, AdaLoRA's rank budget, the plot.

The seeds read the loss curve to choose the number of epochs (seed 003: loss flat after epoch 2, so
stop at 2). bench does the same automatically: every logging step goes to train_log.jsonl, validation
loss is checked at each evaluation, training stops after `patience` evaluations without improvement,
and the best weights seen are restored, so the epochs actually used are recorded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

from transformers import TrainerCallback


class JsonlLog(TrainerCallback):
    """One JSON line per logging/eval step: step, epoch, loss, eval_loss, learning_rate, ..."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("", encoding="utf-8")
        self.rows: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kw):
        if not logs:
            return
        row = {"step": state.global_step, "epoch": round(float(state.epoch or 0), 4)}
        for k, v in logs.items():
            if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
                row[k] = round(float(v), 6) if isinstance(v, float) else v
        self.rows.append(row)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


class BestOnValidation(TrainerCallback):
    """Early stopping on eval_loss with the best trainable weights kept in memory (no checkpoints on disk)."""

    def __init__(self, patience: int, min_delta: float = 0.0):
        self.patience = patience
        self.min_delta = min_delta
        self.best: Optional[float] = None
        self.best_step = 0
        self.best_epoch = 0.0
        self.bad = 0
        self.snapshot: Optional[dict] = None
        self.stopped_early = False
        self.last_step: Optional[int] = None  # the step of the latest evaluation

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kw):
        loss = (metrics or {}).get("eval_loss")
        if loss is None or model is None:
            return
        self.last_step = state.global_step
        if self.best is None or loss < self.best - self.min_delta:
            self.best, self.best_step, self.best_epoch, self.bad = loss, state.global_step, float(state.epoch or 0), 0
            self.snapshot = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        else:
            self.bad += 1
            if self.patience > 0 and self.bad >= self.patience:
                self.stopped_early = True
                control.should_training_stop = True

    def restore(self, model: Any) -> None:
        if not self.snapshot:
            return
        params = dict(model.named_parameters())
        for n, t in self.snapshot.items():
            params[n].data.copy_(t)


class AdaLoraBudget(TrainerCallback):
    """AdaLoRA reallocates ranks after each optimizer step (before gradients are cleared)."""

    def on_optimizer_step(self, args, state, control, model=None, **kw):
        m = model
        while m is not None and not hasattr(m, "update_and_allocate"):
            m = getattr(m, "base_model", None) if getattr(m, "base_model", None) is not m else None
        if m is not None:
            m.update_and_allocate(state.global_step)


def plot_losses(rows: list[dict], path: Path, title: str = "") -> Optional[Path]:
    """Train and validation loss against epoch, as the seeds read it (matplotlib, Agg)."""
    train = [(r["epoch"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["epoch"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    if not train and not val:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", marker=".")
    if val:
        ax.plot(*zip(*val), label="validation loss", marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
