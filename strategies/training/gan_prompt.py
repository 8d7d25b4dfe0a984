"""gan_prompt, seed 004's method: a soft-prompt generator for a frozen model, trained against a discriminator.

Seed 004 plans prompt tuning whose prompt comes from the generator of a generative adversarial network,
with a discriminator telling the model's answers from real ones (after arXiv 2305.06176, where a
discriminator is the reward of RLAIF). Here:

- the generator (`PromptGenerator`) reads the frozen model's input embeddings of the rendered prompt and
  writes `num_virtual_tokens` soft tokens placed in front of it: k learned queries attend over the input
  tokens, and the attended summary, projected back to the embedding width, is added to the queries. The
  projection starts at zero, so training starts from a static soft prompt (prompt_tuning with the same k,
  initialised from sampled vocabulary embeddings) and learns how the prompt should depend on the input;
- the discriminator (`Discriminator`) is a small classifier over the frozen model's last hidden states
  of an (input, answer) pair, mean-pooled over the answer tokens (the model runs without the soft
  prompt, so these features are a fixed view of the text): reference answers are real, the model's own
  greedy answers under the generated prompt are fake. The fakes are generated anew every epoch through
  bench's batched, cached generation; an answer that equals the reference is not a fake;
- steps alternate: one discriminator step (logistic loss on real and fake pairs), then one generator step
  on the answer tokens' negative log-likelihood through the frozen model plus `adv_weight` times a
  REINFORCE term that raises the likelihood of fakes the discriminator finds realistic and lowers the
  others (reward = the discriminator's probability of "real", minus a running baseline, per answer token;
  the fakes are the epoch's greedy answers, so within an epoch the term is slightly off-policy);
- training stops at the step or epoch limit, when validation loss (answer NLL on the held-out slice) has
  not improved for `patience` evaluations (the best generator is kept), when the discriminator's balanced
  accuracy on the held-out pairs, measured on each epoch's fresh fakes before it trains on them, settles
  within `chance_margin` of 0.5 for CHANCE_EPOCHS epochs in a row (one epoch near chance on a few pairs
  can be luck), or when no fake is left (every answer equals the reference).

The frozen model's weights never change (they are hashed before and after; meta.json records both). The
generator and the discriminator are saved with safetensors; `GanPromptBackend`, the transformers backend
with the generator's tokens put in front of every prompt (batched like any HFBackend), serves the result.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from bench.errors import BenchError
from bench.models.convert import load_pretrained
from bench.models.hf import HFBackend
from bench.models.resolve import ModelSpec
from bench.seeding import rng, set_global_seed
from bench.types import Example, Generation
from strategies.training.data import Record
from strategies.training.preference import Answerer
from strategies.training.trainer import LOG_FILE, PLOT_FILE, TrainJob, TrainResult, plan_check, train_in_cache
from strategies.training.trainer import _PeakRss as PeakRss

GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
CONFIG_FILE = "generator.json"
CHANCE_EPOCHS = 2  # epochs in a row the discriminator must stay near chance before training stops


@dataclass
class GanJob(TrainJob):
    """A TrainJob with the examples behind its records and the way the model's answers are generated (the
    answers follow from the frozen model and the generator, so neither is part of the key)."""

    examples: tuple[Example, ...] = ()
    val_examples: tuple[Example, ...] = ()
    answers: Optional[Answerer] = field(default=None, compare=False)


def _modules() -> tuple[type, type]:
    """The two networks (torch is imported only when a gan_prompt arm runs)."""
    import torch
    from torch import nn

    class PromptGenerator(nn.Module):
        """k soft tokens from the input's embeddings: queries + out(attention of the queries over the input)."""

        def __init__(self, dim: int, k: int, width: int, init: Optional[Any] = None):
            super().__init__()
            self.dim, self.k, self.width = dim, k, width
            self.queries = nn.Parameter(init.clone() if init is not None else torch.zeros(k, dim))
            self.q = nn.Linear(dim, width, bias=False)
            self.key = nn.Linear(dim, width, bias=False)
            self.value = nn.Linear(dim, width, bias=False)
            self.out = nn.Linear(width, dim)
            nn.init.zeros_(self.out.weight)  # starts as a static soft prompt
            nn.init.zeros_(self.out.bias)

        def forward(self, embeds: Any, mask: Any) -> Any:
            """embeds (batch, tokens, dim) of the prompt, mask (batch, tokens) -> (batch, k, dim), computed in
            the generator's own dtype (float32 beside a bf16 model on GPU)."""
            x = embeds.to(self.queries.dtype)
            scores = torch.einsum("kw,btw->bkt", self.q(self.queries), self.key(x)) / math.sqrt(self.width)
            scores = scores.masked_fill(mask[:, None, :] == 0, torch.finfo(scores.dtype).min)
            summary = torch.einsum("bkt,btw->bkw", scores.softmax(-1), self.value(x))
            return self.queries[None] + self.out(summary)

    class Discriminator(nn.Module):
        """P(real) of an (input, answer) pair from its pooled hidden states (a logit)."""

        def __init__(self, dim: int, width: int):
            super().__init__()
            self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, width), nn.GELU(), nn.Linear(width, 1))

        def forward(self, features: Any) -> Any:
            return self.net(features).squeeze(-1)

    return PromptGenerator, Discriminator


# -- serving ------------------------------------------------------------------------------------------------------
class GanPromptBackend(HFBackend):
    """The frozen model with the prompt generator in front: each prompt gets its own soft tokens.

    Generation is HFBackend's batched decoding; only its first pass differs (the generator's tokens for
    each left-padded prompt go in front of it, as prompt tuning's do), and prompts never share a prefix
    cache (their soft tokens differ). Log-likelihoods score the continuation under the soft tokens
    generated from the context, so the forgetting probes measure the adapted model.
    """

    def __init__(self, spec: ModelSpec, cache_dir: str | Path, generator: Any, threads: int = 0, model: Any = None,
                 tokenizer: Any = None, adapter_hash: Optional[str] = None, device: Optional[str] = None):
        self.generator = generator
        super().__init__(spec, cache_dir, threads=threads, model=model, tokenizer=tokenizer,
                         adapter_hash=adapter_hash, device=device)
        self.generator.to(self.device)

    def _prompt_learning(self) -> tuple[str, int]:
        return "embedding", int(self.generator.k)

    def _shared_prefix(self, prompts: list[tuple[int, ...]]) -> int:
        """No prompt shares its start with another here: its soft tokens, in front, depend on all of it."""
        return 0

    def _first_pass(self, ids: Any, mask: Any) -> tuple[Any, Any, Any]:
        """Run the (left-padded) prompts after their generated soft tokens: (last logits, KV cache, full mask)."""
        import torch

        embeds = self.core.get_input_embeddings()(ids)
        virtual = self.generator(embeds, mask).to(embeds.dtype)
        full = torch.cat([mask.new_ones((mask.shape[0], self.n_virtual)), mask], dim=1)
        positions = (full.cumsum(-1) - 1).clamp(min=0)
        keep = {"logits_to_keep": 1} if self._keep_last else {}
        out = self.base(inputs_embeds=torch.cat([virtual, embeds], dim=1), attention_mask=full, position_ids=positions,
                        use_cache=True, **keep)
        return out.logits[:, -1].float(), out.past_key_values, full

    def loglikelihood_choices(self, context: str, continuations: list[str]) -> list[float]:
        """loglikelihood of each continuation of one context under the soft tokens generated from the context
        (continuation tokens as in HFBackend.loglikelihood_choices: after the longest common prefix)."""
        import torch

        ctx = self._encode(context)
        lead = [] if ctx else [self.start_token()]
        rows: list[tuple[list[int], int]] = []
        for cont in continuations:
            full = lead + self._encode(context + cont)
            if not cont:
                rows.append((full, len(full)))
                continue
            k = 0
            while k < min(len(ctx), len(full) - len(lead)) and full[len(lead) + k] == ctx[k]:
                k += 1
            rows.append((full, max(1, min(len(lead) + k, len(full) - 1))))
        out = [0.0] * len(rows)
        todo = [i for i, (full, start) in enumerate(rows) if start < len(full)]
        if not todo:
            return out
        width = max(len(rows[i][0]) for i in todo)
        ids = torch.full((len(todo), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(todo), width), dtype=torch.long)
        for j, i in enumerate(todo):
            ids[j, : len(rows[i][0])] = torch.tensor(rows[i][0], dtype=torch.long)
            mask[j, : len(rows[i][0])] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        with torch.inference_mode():
            embed = self.core.get_input_embeddings()
            prompt = torch.tensor([lead + ctx], dtype=torch.long, device=self.device)
            virtual = self.generator(embed(prompt), torch.ones_like(prompt)).expand(len(todo), -1, -1)
            full_mask = torch.cat([mask.new_ones((len(todo), self.n_virtual)), mask], dim=1)
            logits = self.base(inputs_embeds=torch.cat([virtual.to(embed.weight.dtype), embed(ids)], dim=1),
                               attention_mask=full_mask).logits[:, self.n_virtual:]
            for j, i in enumerate(todo):
                full, start = rows[i]
                logp = torch.log_softmax(logits[j, start - 1: len(full) - 1].float(), dim=-1)
                total = float(logp.gather(1, torch.tensor(full[start:], device=logp.device)[:, None]).sum())
                out[i] = total if math.isfinite(total) else float("-inf")
        return out

    def close(self) -> None:
        self.generator = None
        super().close()


def load_generator(folder: Path) -> Any:
    """The saved prompt generator (config + safetensors weights), on CPU."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise BenchError(f"gan_prompt: {folder} holds no {CONFIG_FILE}; delete that cache folder and train again")
    cfg = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    generator_cls, _ = _modules()
    gen = generator_cls(cfg["dim"], cfg["k"], cfg["width"])
    gen.load_state_dict(load_file(str(folder / GENERATOR_FILE)))
    return gen.eval()


def serving_backend(spec: ModelSpec, cache_dir: Path, folder: Path, threads: int = 0,
                    adapter_hash: Optional[str] = None) -> GanPromptBackend:
    """The trained generator (`folder` = the result's adapter/ folder) in front of the frozen base model."""
    return GanPromptBackend(spec, cache_dir, load_generator(folder), threads=threads, adapter_hash=adapter_hash)


# -- training -----------------------------------------------------------------------------------------------------
def train_gan_prompt(job: GanJob) -> TrainResult:
    """Train the generator against the discriminator (or return the cached result)."""
    plan_check(job)
    if job.answers is None:
        raise BenchError(f"strategy {job.method}: the adversarial loop needs a way to generate the model's answers")
    if len(job.examples) != len(job.train) or len(job.val_examples) != len(job.val):
        raise BenchError(f"strategy {job.method}: one SFT record per example is needed")
    return train_in_cache(job, lambda out, threads: _train(job, out, threads))


def weights_sha256(model: Any) -> str:
    """sha256 of every parameter and buffer of a model (names and bytes): the frozen model's fingerprint."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class _Item:
    """One training or validation example: its prompt and reference answer tokens, and this epoch's fake."""

    example: Example
    record: Record
    prompt: list[int]
    answer: list[int]
    real: Any = None  # discriminator features of (prompt, reference)
    fake_ids: Optional[list[int]] = None  # this epoch's fake answer (None: it equals the reference, or failed)
    fake: Any = None  # its features


def _items(tok: Any, examples: Sequence[Example], records: Sequence[Record], max_length: int) -> list[_Item]:
    out = []
    for ex, rec in zip(examples, records):
        p_ids = tok(rec.prompt, add_special_tokens=True)["input_ids"]
        a_ids = tok(rec.completion, add_special_tokens=False)["input_ids"][: max(0, max_length - len(p_ids))]
        if a_ids:  # a prompt that fills max_length leaves nothing to learn
            out.append(_Item(ex, rec, p_ids, a_ids))
    return out


class _Game:
    """The frozen model, the two networks and the batched passes through the model that the loop needs."""

    def __init__(self, llm: Any, tok: Any, gen: Any, disc: Any, device: str):
        self.llm, self.tok, self.gen, self.disc, self.device = llm, tok, gen, disc, device
        self.embed = llm.get_input_embeddings()

    def _batch(self, prompts: list[list[int]], answers: list[list[int]]) -> tuple[Any, Any, Any, Any]:
        """Right-padded prompt (for the generator) and prompt+answer (for the model) tensors, and the answer mask."""
        import torch

        pad = self.tok.pad_token_id
        pw = max(len(p) for p in prompts)
        fw = max(len(p) + len(a) for p, a in zip(prompts, answers))
        p_ids = torch.full((len(prompts), pw), pad, dtype=torch.long)
        p_mask = torch.zeros_like(p_ids)
        ids = torch.full((len(prompts), fw), pad, dtype=torch.long)
        mask, answer = torch.zeros_like(ids), torch.zeros_like(ids)
        for j, (p, a) in enumerate(zip(prompts, answers)):
            p_ids[j, : len(p)] = torch.tensor(p)
            p_mask[j, : len(p)] = 1
            ids[j, : len(p) + len(a)] = torch.tensor(p + a)
            mask[j, : len(p) + len(a)] = 1
            answer[j, len(p): len(p) + len(a)] = 1
        d = self.device
        return p_ids.to(d), p_mask.to(d), ids.to(d), (mask.to(d), answer.to(d))

    def token_logps(self, prompts: list[list[int]], answers: list[list[int]]) -> tuple[Any, Any]:
        """Per-row sum of the answer tokens' log-probabilities under the generated soft tokens, and token counts."""
        import torch

        p_ids, p_mask, ids, (mask, answer) = self._batch(prompts, answers)
        tokens = self.embed(ids)
        virtual = self.gen(self.embed(p_ids), p_mask).to(tokens.dtype)
        k = virtual.shape[1]
        embeds = torch.cat([virtual, tokens], dim=1)
        full = torch.cat([mask.new_ones((mask.shape[0], k)), mask], dim=1)
        logits = self.llm(inputs_embeds=embeds, attention_mask=full).logits[:, k:-1].float()
        targets = ids[:, 1:]
        logp = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)
        on = answer[:, 1:].to(logp.dtype)
        return (logp * on).sum(-1), on.sum(-1)

    def features(self, prompts: list[list[int]], answers: list[list[int]], batch: int = 16) -> Any:
        """The discriminator's view of (prompt, answer) pairs: last hidden states mean-pooled over the answer."""
        import torch

        out = []
        with torch.no_grad():
            for s in range(0, len(prompts), batch):
                _, _, ids, (mask, answer) = self._batch(prompts[s:s + batch], answers[s:s + batch])
                hidden = self.llm(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
                w = answer.to(hidden.dtype)[..., None]
                out.append(((hidden * w).sum(1) / w.sum(1).clamp(min=1)).float())
        return torch.cat(out) if out else torch.zeros((0, self.embed.embedding_dim))

    def nll(self, items: Sequence[_Item], batch: int) -> Optional[float]:
        """Mean answer-token negative log-likelihood under the generator (validation loss)."""
        import torch

        if not items:
            return None
        total = count = 0.0
        with torch.no_grad():
            for s in range(0, len(items), batch):
                part = items[s:s + batch]
                logp, n = self.token_logps([i.prompt for i in part], [i.answer for i in part])
                total += float(-logp.sum())
                count += float(n.sum())
        return total / max(count, 1.0)


def _balanced_accuracy(disc: Any, real: Any, fake: Any) -> Optional[float]:
    """(true-positive rate + true-negative rate) / 2 of the discriminator: 0.5 is chance whatever the class sizes."""
    import torch

    if len(real) == 0 or len(fake) == 0:
        return None
    with torch.no_grad():
        return round(float((disc(real) > 0).float().mean() + (disc(fake) <= 0).float().mean()) / 2, 4)


def _refresh_fakes(job: GanJob, game: _Game, items: list[_Item], threads: int) -> tuple[str, int, int]:
    """This epoch's fakes: the model's greedy answers under the current generator (batched, cached by the
    generator's hash); (the answering model id, fakes, answers equal to the reference)."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in game.gen.state_dict().items()}
    digest = hashlib.sha256(save(state)).hexdigest()
    backend = GanPromptBackend(job.spec, job.cache_dir, game.gen, threads=threads, model=game.llm, tokenizer=game.tok,
                               adapter_hash=f"gan_prompt:{digest}", device=game.device)
    try:
        gens: list[Generation] = job.answers(backend, [i.example for i in items], job.params.answer_tokens)
    finally:
        backend.generator = None  # the generator trains on: the backend must not keep or free it
        backend.close()
    game.gen.train()
    identical = 0
    for item, gen in zip(items, gens):
        item.fake_ids, item.fake = None, None
        if gen.error:
            continue
        if gen.output.strip() == item.example.output.strip():
            identical += 1
            continue
        end = item.record.completion[len(item.example.output.strip()):]
        item.fake_ids = game.tok(gen.output.strip() + end, add_special_tokens=False)["input_ids"] or [
            game.tok.eos_token_id]
    fakes = [i for i in items if i.fake_ids is not None]
    if fakes:
        feats = game.features([i.prompt for i in fakes], [i.fake_ids for i in fakes])
        for item, f in zip(fakes, feats):
            item.fake = f
    return backend.model_id, len(fakes), identical


def _game_step(game: _Game, group: list[list[_Item]], opt_d: Any, opt_g: Any, adv_weight: float,
               baseline: Optional[float]) -> dict:
    """One round of the game over `group` (micro-batches of one optimizer step): a discriminator step on real
    (reference) and fake (own answer) pairs, then a generator step with the updated discriminator's reward."""
    import torch
    import torch.nn.functional as F

    n = len(group)
    stats = {"loss": 0.0, "adv_loss": 0.0, "disc_loss": 0.0, "disc_accuracy": 0.0, "tokens": 0}
    opt_d.zero_grad()
    for part in group:
        fakes = [i.fake for i in part if i.fake is not None]
        feats = torch.stack([i.real for i in part] + fakes)
        labels = torch.cat([torch.ones(len(part)), torch.zeros(len(fakes))]).to(feats.device)
        logits = game.disc(feats)
        d_loss = F.binary_cross_entropy_with_logits(logits, labels)
        (d_loss / n).backward()
        stats["disc_loss"] += float(d_loss.detach()) / n
        stats["disc_accuracy"] += float(((logits > 0).float() == labels).float().mean()) / n
    opt_d.step()
    opt_g.zero_grad()
    for part in group:
        fakes = [i for i in part if i.fake is not None]
        prompts = [i.prompt for i in part] + [i.prompt for i in fakes]
        answers = [i.answer for i in part] + [i.fake_ids for i in fakes]
        logp, count = game.token_logps(prompts, answers)
        stats["tokens"] += sum(len(q) + len(a) for q, a in zip(prompts, answers))
        nll = -logp[: len(part)].sum() / count[: len(part)].sum()
        loss = nll
        if fakes and adv_weight > 0:
            with torch.no_grad():
                reward = torch.sigmoid(game.disc(torch.stack([i.fake for i in fakes])))
            mean = float(reward.mean())
            baseline = mean if baseline is None else 0.9 * baseline + 0.1 * mean
            adv = -((reward - baseline) * logp[len(part):] / count[len(part):].clamp(min=1)).mean()
            loss = loss + adv_weight * adv
            stats["adv_loss"] += float(adv.detach()) / n
        (loss / n).backward()
        stats["loss"] += float(nll.detach()) / n
    opt_g.step()
    stats["baseline"] = baseline
    return stats


def _train(job: GanJob, out: Path, threads: int) -> tuple[dict, list[dict]]:
    import torch
    from safetensors.torch import save_file
    from transformers import get_scheduler

    p = job.params
    device = "cuda" if torch.cuda.is_available() else "cpu"
    set_global_seed(job.seed)
    t_start = time.perf_counter()
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    llm, tok = load_pretrained(job.spec, job.cache_dir, dtype=dtype)
    llm.to(device).eval()
    for prm in llm.parameters():
        prm.requires_grad_(False)
    llm_before = weights_sha256(llm)
    embed = llm.get_input_embeddings()
    dim = embed.embedding_dim
    generator_cls, disc_cls = _modules()
    start_ids = rng(job.seed, "gan_prompt-init").sample(range(embed.num_embeddings), p.num_virtual_tokens)
    with torch.no_grad():  # through the embedding module: models that scale their embeddings (Gemma) scale these too
        init = embed(torch.tensor(start_ids, device=device)).float()
    gen = generator_cls(dim, p.num_virtual_tokens, p.generator_width, init=init).to(device)
    disc = disc_cls(dim, p.disc_width).to(device)
    game = _Game(llm, tok, gen, disc, device)
    items = _items(tok, job.examples, job.train, p.max_length)
    val = _items(tok, job.val_examples, job.val, p.max_length)
    if not items:
        raise BenchError(f"params.{job.method}.max_length: {p.max_length} tokens leave no answer tokens to learn; "
                         "raise it")
    for group in (items, val):
        feats = game.features([i.prompt for i in group], [i.answer for i in group])
        for item, f in zip(group, feats):
            item.real = f

    per_epoch = max(1, math.ceil(len(items) / (p.batch_size * p.grad_accum)))
    total_steps = p.max_steps if p.max_steps > 0 else max(1, math.ceil(per_epoch * p.epochs))
    eval_every = p.eval_every or max(1, per_epoch // 2)
    opt_g = torch.optim.AdamW(gen.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=p.disc_learning_rate)
    sched = get_scheduler(p.scheduler, opt_g, num_warmup_steps=int(p.warmup_ratio * total_steps),
                          num_training_steps=total_steps)
    log_path = out / LOG_FILE
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []

    def log(row: dict) -> None:
        row = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items() if v is not None}
        rows.append(row)
        with log_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    step, epoch_no, baseline, tokens, near_chance = 0, 0, None, 0, 0
    best_loss = game.nll(val, max(p.batch_size, 8))
    loss_before, best_step, best_epoch, bad = best_loss, 0, 0.0, 0
    best_state = {k: v.detach().clone() for k, v in gen.state_dict().items()}
    last_eval_step = 0 if val else None
    if best_loss is not None:
        log({"step": 0, "epoch": 0.0, "eval_loss": best_loss})
    epochs_log: list[dict] = []
    stop = ""
    order_rng = rng(job.seed, "gan_prompt-order")
    with PeakRss() as rss:
        t_train = time.perf_counter()
        while not stop:
            epoch_no += 1
            generator_id, n_fakes, identical = _refresh_fakes(job, game, items + val, threads)
            held = [i for i in (val or items) if i.fake is not None]
            heldout_acc = _balanced_accuracy(disc, torch.stack([i.real for i in (val or items)]),
                                             torch.stack([i.fake for i in held]) if held else [])
            epoch_row = {"step": step, "epoch": float(epoch_no - 1), "fakes": n_fakes, "identical": identical,
                         "disc_accuracy_heldout": heldout_acc if epoch_no > 1 else None, "generator": generator_id}
            epochs_log.append(epoch_row)
            log(dict(epoch_row))
            if n_fakes == 0:
                stop = "no fakes: every answer equals the reference"
                break
            at_chance = epoch_no > 1 and heldout_acc is not None and abs(heldout_acc - 0.5) <= p.chance_margin
            near_chance = near_chance + 1 if at_chance else 0
            if near_chance >= CHANCE_EPOCHS:
                stop = "discriminator at chance"
                break
            order = list(range(len(items)))
            order_rng.shuffle(order)
            micro = [order[at:at + p.batch_size] for at in range(0, len(order), p.batch_size)]
            for g in range(0, len(micro), p.grad_accum):
                group = [[items[i] for i in batch_idx] for batch_idx in micro[g:g + p.grad_accum]]
                stats = _game_step(game, group, opt_d, opt_g, p.adv_weight, baseline)
                baseline = stats.pop("baseline")
                tokens += stats.pop("tokens")
                sched.step()
                step += 1
                done = epoch_no - 1 + min(1.0, (g + len(group)) / len(micro))
                log({"step": step, "epoch": round(done, 4), **stats, "learning_rate": sched.get_last_lr()[0]})
                if val and (step % eval_every == 0 or step == total_steps):
                    loss_now = game.nll(val, max(p.batch_size, 8))
                    last_eval_step = step
                    log({"step": step, "epoch": round(done, 4), "eval_loss": loss_now})
                    if loss_now < best_loss:
                        best_loss, best_step, best_epoch, bad = loss_now, step, done, 0
                        best_state = {k: v.detach().clone() for k, v in gen.state_dict().items()}
                    else:
                        bad += 1
                        if p.patience and bad >= p.patience:
                            stop = "validation loss stopped improving"
                            break
                if step >= total_steps:
                    stop = "step limit" if p.max_steps > 0 else "epoch limit"
                    break
            if not stop and p.max_steps <= 0 and epoch_no >= math.ceil(p.epochs):
                stop = "epoch limit"
        train_seconds = time.perf_counter() - t_train
    if val and last_eval_step != step:
        loss_now = game.nll(val, max(p.batch_size, 8))
        log({"step": step, "epoch": rows[-1]["epoch"], "eval_loss": loss_now})
        if loss_now < best_loss:
            best_loss, best_step, best_epoch = loss_now, step, rows[-1]["epoch"]
            best_state = {k: v.detach().clone() for k, v in gen.state_dict().items()}
    still_improving = None
    if val:
        still_improving = step > 0 and best_step == step  # validation loss was still falling at the end
        gen.load_state_dict(best_state)
    gen.eval()
    folder = out / "adapter"
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in gen.state_dict().items()}, str(folder / GENERATOR_FILE))
    save_file({k: v.detach().cpu().contiguous() for k, v in disc.state_dict().items()},
              str(folder / DISCRIMINATOR_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps({"dim": dim, "k": p.num_virtual_tokens, "width": p.generator_width,
                                                  "disc_width": p.disc_width}), encoding="utf-8")
    llm_after = weights_sha256(llm)
    if llm_after != llm_before:
        raise BenchError(f"strategy {job.method}: the frozen model's weights changed while training; report this bug")
    from strategies.training.callbacks import plot_losses  # transformers: only when a generator trains

    plot_losses(rows, out / PLOT_FILE, title=f"{job.method} on {job.spec.name}")
    trainable = sum(t.numel() for t in gen.parameters())
    total = sum(t.numel() for t in llm.parameters()) + trainable
    eval_losses = [r["eval_loss"] for r in rows if "eval_loss" in r]
    train_losses = [r["loss"] for r in rows if "loss" in r]
    accs = [e["disc_accuracy_heldout"] for e in epochs_log if e.get("disc_accuracy_heldout") is not None]
    meta = {
        "method": job.method, "base": job.spec.name, "base_sha256": job.spec.sha256, "key": job.key,
        "seed": job.seed, "device": device, "threads": threads, "mergeable": False, "quantized": False,
        "wall_seconds": round(time.perf_counter() - t_start, 3), "train_seconds": round(train_seconds, 3),
        "peak_rss_mb": round(rss.peak_kb / 1024, 1),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else 0.0,
        "trainable_params": trainable, "total_params": total, "trainable_share": round(trainable / total, 6),
        "tokens": tokens, "tokens_per_second": round(tokens / train_seconds, 2) if train_seconds else 0.0,
        "steps": step, "epochs": rows[-1]["epoch"] if rows else 0.0, "best_step": best_step,
        "best_epoch": round(float(best_epoch), 4), "stopped_early": stop not in ("step limit", "epoch limit"),
        "adapter_bytes": sum(f.stat().st_size for f in folder.iterdir() if f.is_file()),
        "n_train": len(items), "n_val": len(val),
        "train_loss_first": train_losses[0] if train_losses else None,
        "train_loss_last": train_losses[-1] if train_losses else None,
        "eval_loss_before": loss_before, "eval_loss_best": best_loss if val else None,
        "eval_loss_last": eval_losses[-1] if eval_losses else None, "still_improving": still_improving,
        "params": p.training_dict(),
        "details": {"stop_reason": stop, "disc_accuracy": accs[-1] if accs else None, "gan_epochs": epochs_log,
                    "disc_params": sum(t.numel() for t in disc.parameters()), "llm_sha256": llm_before,
                    "llm_unchanged": llm_after == llm_before},
    }
    del llm, gen, disc, game
    return meta, rows
