"""RL-CAI: optimise the policy against the preference model with a KL penalty.

    cai train rloo --pm runs/x/pm --model hf:runs/x/sft-model --out runs/x/rl-model

We use TRL's **RLOOTrainer** (TRL 1.x ships no PPO). RLOO samples k completions per
prompt and uses the mean reward of the other k − 1 as each one's baseline, so it needs
no value network — one model fewer in memory than PPO, which matters on a CPU — and with
``beta > 0`` it adds the KL penalty to the reference (the starting SL-CAI model; with
LoRA the reference is the same weights with the adapter off). GRPO would also work; RLOO's
leave-one-out baseline is the unbiased one of the two and it is what Ahmadian et al. (2024)
showed matching PPO for RLHF.

Rewards (``reward``):
* ``pm``      the trained preference model's score of (prompt, completion)
* ``direct``  direct RLAIF: the feedback model's probability that the completion is better
              than the reference model's own answer, under a sampled principle (both orders)
``constrained``: reward = helpfulness − λ · harm cost, the cost being the feedback
model's probability that the completion violates the constitution; λ follows dual ascent,
λ ← max(0, λ + η (mean cost − target)), logged every step.

The over-training monitor (boilerplate, distinct-n, length, refusals, degeneration inside
each answer, and fluency: the completions' per-token NLL under the starting model) runs on
every batch of completions and is logged next to reward and KL; checkpoints are kept every
``checkpoint_every`` steps so a run can be rolled back to before the Goodhart point, and
``stop_on_warning`` ends the run once warnings persist, naming that checkpoint.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import time
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence


from ..errors import CaiError
from ..evaluation.overtraining import (PROBE_FLUENCY_SHIFT, degeneration, gold, is_degenerate,
                                       monitor, nll_under, probe_fluency, probe_relevance,
                                       proxy_against_gold, shared_phrases, warnings_for)
from ..evaluation.refusal import classify_many
from ..progress import console
from rich.markup import escape
from transformers import TrainerCallback

from .common import (LossPrinter, load_tokenizer, lora_config, save_checkpoint_as,
                     save_trained, train)
from .config import RLTrainConfig
from ..jsonio import append_jsonl, write_json


@dataclass
class DualAscent:
    """Lagrange multiplier for ``cost ≤ target``: raised while the cost is over target."""
    target: float
    lr: float
    value: float = 0.0

    def update(self, mean_cost: float) -> float:
        self.value = max(0.0, self.value + self.lr * (mean_cost - self.target))
        return self.value


def _texts(completions: list[Any]) -> list[str]:
    return [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]


class Rewards:
    """The callable RLOOTrainer calls each step: rewards plus logged monitor figures."""

    __name__ = "cai_reward"

    def __init__(self, score: Callable[[list, list[str]], list[float]],
                 cost: Callable[[list, list[str]], list[float]] | None = None,
                 dual: DualAscent | None = None,
                 fluency: Callable[[list, list[str]], list[float]] | None = None,
                 fluency_rise: float | None = None):
        self.score, self.cost, self.dual = score, cost, dual
        self.fluency, self.fluency_rise = fluency, fluency_rise
        self.history: list[dict[str, float]] = []
        self.warnings: list[list[str]] = []  # per batch
        self.events: list[dict[str, Any]] = []  # each kind's first warning: batch, examples
        # a warning that holds until something says otherwise (the gold probe's divergence
        # stands until a later probe finds none), counted on every batch meanwhile
        self.standing: list[str] = []
        self.monitor_seconds = 0.0  # what watching costs: the monitor's figures and fluency
        self._warned: set[str] = set()
        # A batch answers a few prompts (batch size / k): phrases shared across prompts are
        # counted over the last WINDOW completions.
        self._recent: deque[tuple[str, str]] = deque(maxlen=self.WINDOW)

    WINDOW = 32

    def warn(self, warning: str, examples: Callable[[], list[str]], recorded: bool = False) -> None:
        """Count ``warning`` against the last batch; the first of each kind is printed with
        the step and two example completions, and kept in ``events``."""
        if not recorded and self.warnings:
            self.warnings[-1].append(warning)
        key = warning.split(" ")[0]
        if key in self._warned:
            return
        self._warned.add(key)
        shown = examples()
        self.events.append({"batch": len(self.warnings), "warning": warning, "examples": shown})
        console.print(f"[yellow]over-training warning at step {len(self.warnings)}:[/yellow] "
                      f"{escape(warning)}")
        for t in shown:
            console.print(f"    e.g. {escape(json.dumps(t, ensure_ascii=False))}")

    def _examples(self, warning: str, texts: list[str], nll: list[float] | None,
                  phrase: str | None) -> list[str]:
        """Two completions that show what ``warning`` saw, cut to 200 characters."""
        if warning.startswith("boilerplate:") and phrase:
            at = re.compile(r"\W+".join(map(re.escape, phrase.split())), re.IGNORECASE)
            found = [(t, at.search(t)) for _, t in reversed(self._recent)]
            # the stretch around the phrase, which may sit past the cut
            return [("…" if m.start() > 60 else "") + t[max(0, m.start() - 60):][:200]
                    for t, m in found if m][:2]
        elif warning.startswith("fluency") and nll:
            up = "up:" in warning
            pool = [t for _, t in sorted(zip(nll, texts), key=lambda x: -x[0] if up else x[0])]
        elif "degeneration" in warning or "repetitive" in warning:
            pool = sorted(texts, key=lambda t: -degeneration(t)["repeated_share"])
        elif warning.startswith("refusal"):
            pool = [t for t, v in zip(texts, classify_many(texts)) if v != "complied"]
        else:
            pool = list(texts)
        return [t[:200] for t in (pool or list(texts))[:2]]

    @property
    def streak(self) -> int:
        """Batches in a row, up to the last, with an over-training warning."""
        n = 0
        for w in reversed(self.warnings):
            if not w:
                break
            n += 1
        return n

    @property
    def first_warning(self) -> int | None:
        """The 1-based batch at which a warning first fired."""
        return next((i + 1 for i, w in enumerate(self.warnings) if w), None)

    # Batches averaged on each side of the fluency comparison. One RL batch answers only a
    # few prompts, so its NLL swings by a nat with nothing wrong (healthy RLOO at lr 1e-5:
    # 1.8–4.1 over 40 batches); three batches a side kept that run quiet (at most 0.85 nats
    # apart) and still warned on both lr 5e-5 collapses (benchmarks/README.md).
    FLUENCY_WINDOW = 3

    def _fluency_warning(self, nll: float) -> list[str]:
        """The mean NLL under the starting model of the last ``FLUENCY_WINDOW`` batches
        against the first ``FLUENCY_WINDOW``'s, either way: word salad reads as unlikely, a
        loop ("aw, aw, aw") as likelier than any real answer
        (tests/evaluation/test_overtraining.py)."""
        w = self.FLUENCY_WINDOW
        seen = [h["nll_ref"] for h in self.history if "nll_ref" in h] + [nll]
        if self.fluency_rise is None or len(seen) <= w:
            return []
        base, recent = sum(seen[:w]) / w, sum(seen[-w:]) / w
        if abs(recent - base) > self.fluency_rise:
            return [f"fluency: NLL under the starting model {recent:.2f} over the last {w} "
                    f"batches, {base:.2f} over the first {w} (a move over {self.fluency_rise} "
                    f"{'up: less fluent' if recent > base else 'down: more repetitive'})"]
        return []

    def __call__(self, prompts, completions, log_metric=None, **_: Any) -> list[float]:
        texts = _texts(completions)
        rewards = self.score(prompts, texts)
        started = time.perf_counter()
        stats = monitor(texts)
        self._recent.extend((str(p), t) for p, t in zip(prompts, texts))
        stats["shared_phrase_rate"], stats["shared_phrase"], _ = shared_phrases(
            [t for _, t in self._recent], [p for p, _ in self._recent])
        watched = time.perf_counter() - started
        logged: dict[str, Any] = {k: v for k, v in stats.items() if k != "n" and v is not None}
        logged["reward_raw"] = sum(rewards) / len(rewards)
        if self.cost is not None and self.dual is not None:
            costs = self.cost(prompts, texts)
            lam = self.dual.value  # this batch is penalised with the current λ
            rewards = [r - lam * c for r, c in zip(rewards, costs)]
            logged["harm_cost"] = sum(costs) / len(costs)
            logged["lambda"] = self.dual.update(logged["harm_cost"])
        found = warnings_for(stats) + self.standing
        if self.fluency is not None:
            started = time.perf_counter()
            nll = self.fluency(prompts, texts)
            watched += time.perf_counter() - started
            logged["nll_ref"] = sum(nll) / len(nll)
            found += self._fluency_warning(logged["nll_ref"])
        logged["monitor_s"] = watched
        self.monitor_seconds += watched
        self.warnings.append(found)
        for w in found:
            self.warn(w, lambda w=w: self._examples(w, texts, nll if self.fluency is not None
                                                    else None, stats.get("shared_phrase")),
                      recorded=True)
        if log_metric is not None:
            for k, v in logged.items():
                if isinstance(v, (int, float)):
                    log_metric(k, float(v))
        self.history.append(logged)
        return rewards


def pm_scorer(pm_dir: str | Path, device: str | None = None,
              dtype: str | None = None) -> Callable[[list, list[str]], list[float]]:
    from ..pm import PreferenceModel

    pm = PreferenceModel.load(pm_dir, device=device, dtype=dtype)
    return lambda prompts, texts: pm.rewards(prompts, texts)


def direct_scorer(judge, constitution, references: dict[str, str],
                  seed: int) -> Callable[[list, list[str]], list[float]]:
    """p(completion better than the reference answer) from the feedback model (a backend)."""
    from ..feedback import LabelConfig, label_pairs
    from ..hashing import content_hash

    def score(prompts, texts):
        pairs = []
        for i, (p, t) in enumerate(zip(prompts, texts)):
            key = content_hash(p)
            pairs.append({"id": content_hash([key, t, i]), "messages": p,
                          "responses": [t, references.get(key, "")]})
        rows = label_pairs(judge, pairs, constitution, LabelConfig(seed=seed))
        return [(r["p_response0_ab"] + r["p_response0_ba"]) / 2 for r in rows]

    return score


def harm_cost(judge, constitution) -> Callable[[list, list[str]], list[float]]:
    from ..evaluation.harm import judge_harm
    from ..hashing import content_hash

    def cost(prompts, texts):
        items = [{"id": content_hash([p, t, i]), "messages": p, "response": t}
                 for i, (p, t) in enumerate(zip(prompts, texts))]
        return [r["p_violation"] for r in judge_harm(judge, items, constitution, k=1)]

    return cost


def reference_nll(model: str | Path, device: str | None = None,
                  dtype: str | None = None) -> Callable[[list, list[str]], list[float]]:
    """Each completion's mean per-token NLL under ``model`` (the starting policy, loaded
    once on our transformers loop; see ``overtraining.nll_under``)."""
    from ..backends import ModelConfig
    from ..backends.spec import hf_spec

    spec = hf_spec(model).text if isinstance(model, Path) else str(model)
    backend = ModelConfig(spec=spec, engine="hf", **{k: v for k, v in (("device", device),
                                                                      ("dtype", dtype)) if v}).load()
    return lambda prompts, texts: nll_under(backend, prompts, texts)


class GoldProbe(TrainerCallback):
    """Proxy against gold: before the first step and every ``every`` steps, the policy
    answers a fixed probe set of held-out prompts greedily. The reward of those answers
    (the proxy) is set beside measures the reward was not trained on (``overtraining.gold``:
    refusal classes, loops, length); when the proxy has risen while gold stayed flat or
    fell, that is a warning like the monitor's; it stands on every step until a later probe
    finds no divergence, and counts toward ``stop_on_warning``. With ``answers_path``, every
    probe's answers are appended there (step, kind, prompt, answer, reward, relevance,
    loop), so what the monitor saw can be read; a new training run starts the file anew."""

    def __init__(self, probe: Sequence[tuple[list[dict[str, str]], str]], every: int,
                 score: Callable[[list, list[str]], list[float]], rewards: Rewards,
                 tokenizer, max_new_tokens: int, fluency_shift: float = PROBE_FLUENCY_SHIFT,
                 answers_path: Path | None = None):
        self.probe, self.every, self.score, self.rewards = list(probe), every, score, rewards
        self.fluency_shift = fluency_shift
        self.answers_path = answers_path
        if answers_path is not None:  # the answers of a policy this run replaces
            answers_path.unlink(missing_ok=True)
        self.tokenizer, self.max_new_tokens = tokenizer, max_new_tokens
        self.history: list[dict[str, Any]] = []
        self.seconds = 0.0

    def answers(self, model) -> list[str]:
        import torch

        tok = self.tokenizer
        prompts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
                   for m, _ in self.probe]
        side, tok.padding_side = tok.padding_side, "left"
        try:
            batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tok.padding_side = side
        batch = batch.to(model.device)
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id or tok.eos_token_id)
        finally:
            model.train(training)
        return tok.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)

    def measure(self, step: int, texts: list[str]) -> dict[str, Any]:
        """One probe's row from its answers; warns on a divergence."""
        asked = [m for m, _ in self.probe]
        proxy = self.score(asked, texts)
        row = {"step": step, "proxy": statistics.fmean(proxy),
               "proxy_sd": statistics.stdev(proxy) if len(proxy) > 1 else 0.0,
               **gold([k for _, k in self.probe], [m[-1]["content"] for m in asked], texts)}
        if self.rewards.fluency is not None:  # the starting model's reading of the same prompts
            row["nll_ref"] = statistics.fmean(self.rewards.fluency(asked, texts))
        self.history.append(row)
        if self.answers_path is not None:
            append_jsonl(self.answers_path, [
                {"step": step, "kind": kind, "prompt": m[-1]["content"], "answer": t,
                 "reward": round(float(r), 4), "relevance": near, "loops": is_degenerate(t)}
                for (m, kind), t, r, near in zip(self.probe, texts, proxy, row["relevance_each"])])
        console.print(f"probe at step {step}: reward {row['proxy']:.3f}  gold {row['gold']:.2f}  "
                      f"degenerate {row['degenerate']:.0%}  words {row['mean_words']:.0f}  "
                      f"on request {row['relevance']:.2f}"
                      + (f"  NLL {row['nll_ref']:.2f}" if "nll_ref" in row else ""))
        found = [w for w in (proxy_against_gold(self.history),
                             probe_fluency(self.history, self.fluency_shift),
                             probe_relevance(self.history)) if w]
        for w in found:
            bad = [t for t, (_, k) in zip(texts, self.probe) if k != "harmful"]
            self.rewards.warn(w, lambda: [t[:200] for t in (bad or texts)[:2]])
        self.rewards.standing = found  # they hold for the steps until the next probe
        return row

    def _run(self, state, model) -> None:
        if model is None:
            return
        started = time.perf_counter()
        self.measure(state.global_step, self.answers(model))
        self.seconds += time.perf_counter() - started

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._run(state, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self._run(state, model)


def probe_set(harmful: Sequence, helpful: Sequence) -> list[tuple[list[dict[str, str]], str]]:
    """Prompts (``Prompt``s) as a probe set: [(messages, "harmful" / "helpful"), …]."""
    return ([([m.model_dump() for m in p.messages], "harmful") for p in harmful]
            + [([m.model_dump() for m in p.messages], "helpful") for p in helpful])


def hold_out_probe(redteam: Sequence, helpful: Sequence, n: int = 8) -> tuple[list, list, list]:
    """The last ``n`` red-team and ``n`` helpful prompts set aside as the probe set, never
    trained on: (red-team left, helpful left, probe set). A source of ``n`` or fewer is
    not split (and its prompts are then trained on too)."""
    red, help_ = list(redteam), list(helpful)
    left = lambda xs: xs[:-n] if len(xs) > n else xs  # noqa: E731
    return left(red), left(help_), probe_set(red[-n:], help_[-n:])


def prompt_mix(redteam: Sequence, helpful: Sequence, config: RLTrainConfig) -> tuple[list, list]:
    """A command's prompts as RLOO trains on them: red-team plus helpful prompts mixed by
    ``helpful_ratio``, and the probe set held out of both when ``probe_every`` is set."""
    red, help_, probe = (hold_out_probe(redteam, helpful) if config.probe_every
                         else (list(redteam), list(helpful), []))
    return build_prompts(red, help_, config.helpful_ratio, config.seed), probe


class StopOnWarnings(TrainerCallback):
    """Stop training once ``rewards`` has warned on ``after`` batches in a row."""

    def __init__(self, rewards: Rewards, after: int):
        self.rewards, self.after = rewards, after
        self.stopped_at: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.after and self.rewards.streak >= self.after and self.stopped_at is None:
            self.stopped_at = state.global_step
            control.should_training_stop = True
            console.print(f"[yellow]over-training: stopped at step {state.global_step}[/yellow] "
                          f"after {self.rewards.streak} batches in a row with a warning")
        return control


def build_prompts(redteam, helpful, helpful_ratio: float, seed: int) -> list[list[dict[str, str]]]:
    """Red-team prompts plus ``helpful_ratio`` helpful ones per red-team prompt, shuffled."""
    rng = random.Random(seed)
    k = min(len(helpful), round(helpful_ratio * len(redteam)))
    chosen = list(redteam) + rng.sample(list(helpful), k)
    rng.shuffle(chosen)
    return [[m.model_dump() for m in p.messages] for p in chosen]


def train_rl(prompts: list[list[dict[str, str]]], out: str | Path, model: str | Path,
             config: RLTrainConfig = RLTrainConfig(), *, pm: str | Path | None = None,
             feedback=None, constitution=None, device: str | None = None,
             dtype: str | None = None,
             score: Callable[[list, list[str]], list[float]] | None = None,
             probe: Sequence[tuple[list[dict[str, str]], str]] = ()) -> dict[str, Any]:
    """RLOO from ``model`` (a directory or spec). ``feedback`` is the judge's backend
    (or ``ModelConfig``), needed by the direct reward and the harm constraint. ``score``:
    a reward of your own, (prompts, completion texts) → one float each, in place of
    ``config.reward`` (a scripted judge, a rule, a remote grader). ``probe``: held-out
    prompts, (messages, "harmful" or "helpful"), answered every ``config.probe_every`` steps
    to set the reward against gold (``GoldProbe``; ``hold_out_probe`` carves them out)."""
    c = config
    reward, constrained, beta, seed = c.reward, c.constrained, c.beta, c.seed
    num_generations, batch_size = c.num_generations, c.batch_size
    max_completion_length = c.max_completion_length
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings():  # TRL checks the vLLM it finds against its own range;
        # this RLOO generates without TRL's vLLM path, so a newer vLLM is not its concern
        warnings.filterwarnings("ignore", "TRL currently supports vLLM", UserWarning)
        from trl import RLOOConfig, RLOOTrainer

    out = Path(out)
    if not prompts:
        raise CaiError("no prompts to train on")
    if score is not None:
        pass
    elif reward == "pm":
        if pm is None:
            raise CaiError("--reward pm needs --pm (a folder from cai train pm)")
        score = pm_scorer(pm, device, dtype)
    elif reward == "direct":
        if constitution is None:
            raise CaiError("direct RLAIF needs a constitution")
        if feedback is None:
            raise CaiError("direct RLAIF needs the feedback model (feedback=)")
        references = _references(model, prompts, max_completion_length, device, dtype)
        score = direct_scorer(_backend(feedback), constitution, references, seed)
    else:
        raise CaiError(f"--reward {reward!r}: expected pm or direct")
    if c.probe_every and not probe:
        raise CaiError("probe_every needs probe prompts (train.rl.hold_out_probe sets some aside)")
    if batch_size % num_generations:
        raise CaiError(f"--batch-size {batch_size} must be a multiple of --num-generations "
                       f"{num_generations} (each prompt's completions share a batch)")
    if constrained and feedback is None:
        raise CaiError("--constrained needs the feedback model (feedback=)")
    rewards = Rewards(score, harm_cost(_backend(feedback), constitution) if constrained else None,
                      DualAscent(c.cost_target, c.lambda_lr) if constrained else None,
                      reference_nll(model, device, dtype) if c.fluency else None, c.fluency_rise)
    stop = StopOnWarnings(rewards, c.stop_on_warning)
    path, tokenizer = load_tokenizer(model)
    gold_probe = (GoldProbe(probe, c.probe_every, rewards.score, rewards, tokenizer,
                            max_completion_length, c.probe_fluency_shift,
                            out / "probe_answers.jsonl") if c.probe_every else None)
    policy = AutoModelForCausalLM.from_pretrained(path)
    dataset = Dataset.from_list([{"prompt": p} for p in prompts])
    settings = {**c.dump(), "pm": str(pm) if pm else None,
                "score": getattr(score, "__name__", type(score).__name__) if score else None,
                "feedback": getattr(feedback, "spec", None),
                "prompts": len(prompts)}
    # checkpoints are kept to roll back to, not to resume: the model only (a third of the disk)
    save = (dict(save_strategy="steps", save_steps=c.checkpoint_every, save_only_model=True)
            if c.checkpoint_every else {})
    args = RLOOConfig(**c.trainer_args(out, device=device, dtype=dtype, **save), beta=beta, num_generations=num_generations,
                      max_completion_length=max_completion_length, temperature=c.temperature,
                      top_p=1.0)
    trainer = RLOOTrainer(model=policy, reward_funcs=rewards, args=args, train_dataset=dataset,
                          processing_class=tokenizer,
                          peft_config=lora_config() if c.lora else None,
                          callbacks=[RLPrinter(), *([gold_probe] if gold_probe else []), stop])
    started = time.perf_counter()
    train(trainer)
    seconds = time.perf_counter() - started
    manifest = save_trained(trainer, tokenizer, out, model, "rl", settings)
    manifest["monitor"] = rewards.history
    manifest["monitor_cost"] = {"monitor_s": round(rewards.monitor_seconds, 2),
                                "train_s": round(seconds, 2),
                                "share": round(rewards.monitor_seconds / seconds, 4) if seconds else None}
    manifest["warnings"] = rewards.warnings
    manifest["warning_events"] = rewards.events
    if gold_probe:
        manifest["probe"] = gold_probe.history
        manifest["probe_s"] = round(gold_probe.seconds, 2)
        best = best_on_gold(gold_probe.history, checkpoints(out / "checkpoints"),
                            rewards.first_warning)
        manifest["checkpoint_best_gold"] = str(best) if best else None
    manifest["first_warning_batch"] = rewards.first_warning
    manifest["stopped_at_step"] = stop.stopped_at
    if stop.stopped_at and c.checkpoint_every:  # roll back to before the warnings began
        # (a step generates one batch here: batches and steps count alike)
        found = checkpoint_before(out / "checkpoints", rewards.first_warning or 0,
                                  c.rollback_margin)
        manifest["checkpoint_before_warnings"] = str(found) if found else None
        console.print(f"over-training: the last checkpoint before the warning is {found}"
                      if found else "over-training: no checkpoint was saved before the first "
                      f"warning; the starting policy ({model}) is the last one before it")
        if manifest.get("checkpoint_best_gold"):
            console.print(f"over-training: best on gold before the warning: "
                          f"{manifest['checkpoint_best_gold']}")
        # before-warning with no checkpoint before it: the starting policy is the last one
        kept = {"before-warning": manifest["checkpoint_before_warnings"] or str(path),
                "best-gold": manifest.get("checkpoint_best_gold")}.get(c.keep)
        if kept and trainer.accelerator.is_main_process:
            save_checkpoint_as(Path(kept), out)
            console.print(f"over-training: {out} now holds {kept} ({c.keep}); the weights "
                          f"of step {stop.stopped_at} are not kept")
        elif c.keep != "final":
            console.print(f"over-training: keep = {c.keep} found no checkpoint; {out} holds the "
                          f"weights of step {stop.stopped_at}")
        manifest["kept"] = kept or "final"

    if trainer.accelerator.is_main_process:
        write_json(out / "cai_training.json", manifest)
    return manifest


def checkpoints(folder: Path) -> dict[int, Path]:
    """The trainer's ``checkpoint-N`` folders in ``folder``, by step N."""
    return {int(p.name.split("-")[1]): p for p in folder.glob("checkpoint-*")
            if p.name.split("-")[1].isdigit()}


def best_on_gold(history: Sequence[dict[str, Any]], kept: dict[int, Path],
                 first_warning: int | None) -> Path | None:
    """The kept checkpoint whose probe answers scored best on gold (the earliest on a tie),
    among those saved before the first warning when there is one. Gold reads a collapse's
    first apologetic non-answers as refusals of harmful requests, so a checkpoint the
    monitor has already warned about can score well on it (benchmarks/README.md,
    over-optimisation: three runs' best-gold checkpoints were the warned, degenerate ones)."""
    scored = [(-row["gold"], row["step"]) for row in history if row["step"] in kept
              and (first_warning is None or row["step"] < first_warning)]
    return kept[min(scored)[1]] if scored else None


def checkpoint_before(folder: Path, step: int, margin: int = 0) -> Path | None:
    """The last ``checkpoint-N`` in ``folder`` with N < ``step`` - ``margin``, if any."""
    before = [n for n in checkpoints(folder) if n < step - margin]
    return folder / f"checkpoint-{max(before)}" if before else None


def _backend(model):
    """A backend from a backend or a ``ModelConfig``."""
    return model.backend() if hasattr(model, "backend") and callable(model.backend) else model


def _references(model: str | Path, prompts, max_new_tokens: int, device: str | None,
                dtype: str | None) -> dict[str, str]:
    """The starting model's greedy answers, the bar direct RLAIF compares against."""
    from ..backends import ModelConfig
    from ..backends.base import GenerationRequest, Message, Sampling
    from ..backends.spec import hf_spec
    from ..hashing import content_hash

    spec = hf_spec(model).text if isinstance(model, Path) else str(model)
    backend = ModelConfig(spec=spec, **{k: v for k, v in (("device", device), ("dtype", dtype))
                                        if v}).load()
    gens = backend.generate([GenerationRequest(
        messages=tuple(Message.model_validate(m) for m in p),
        sampling=Sampling(max_new_tokens=max_new_tokens, temperature=0)) for p in prompts])
    return {content_hash(p): g.texts[0] for p, g in zip(prompts, gens)}


class RLPrinter(LossPrinter):
    """One line per step: reward, KL and the monitor's figures."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        parts = [f"step {state.global_step}/{state.max_steps}"]
        for name, key in (("reward", "reward"), ("kl", "kl"),
                          ("boilerplate", "boilerplate_rate"), ("shared", "shared_phrase_rate"),
                          ("distinct-2", "distinct_2"), ("refusals", "refusal_rate"), ("repeats", "repeated_share"),
                          ("nll-ref", "nll_ref"), ("λ", "lambda")):
            if key in logs:
                parts.append(f"{name} {float(logs[key]):.3f}")
        if len(parts) > 1:
            console.print("  ".join(parts))
