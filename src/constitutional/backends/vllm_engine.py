"""vLLM's offline engine on a local model directory: the engine for generation and scoring.

    cai --engine vllm run demo                 # or [models] engine = "vllm", or CAI_ENGINE
    ModelConfig(spec="smollm2", engine="vllm").backend()

The engine is chosen per model (``ModelConfig.engine``): ``auto`` takes vLLM where it is
installed (the ``[vllm]`` extra: ``vllm-cpu`` on CPU machines, ``vllm`` on CUDA ones) and
supports the model's architecture, and the hf backend otherwise; trainers always use
transformers. The same model directory, chat template and prompt budget as the hf
backend, so the two answer the same prompts.

* ``generate``: every request at once through ``LLM.generate`` on token ids (vLLM batches
  and schedules them itself), each with its own sampling parameters and seed.
* ``score``: the exact log-probability of each option's tokens, as the hf backend
  computes it, by one decoding step per distinct option prefix: after ``context + " ("``
  one step reads both "A" and "B" (``logprob_token_ids``), after ``context + " (A"`` one
  step reads ")". Prefix caching computes the shared context once.

The engine runs in a worker process of its own (vLLM's default), so its thread binding
does not touch the trainers in this process; a script that loads it needs the
``if __name__ == "__main__":`` guard (``cai`` has it). CPU knobs: ``VLLM_CPU_KVCACHE_SPACE``
(GiB of key/value cache, default here 2), ``VLLM_CPU_NUM_OF_RESERVED_CPU`` (cores kept for
vLLM's scheduler; default here 0 on machines of up to 4 cores, vLLM's own elsewhere) and ``CAI_VLLM_COMPILE=1`` (vLLM's compiled
graphs: starts in about 100 s instead of 15–30 s, a few per cent faster after). On CUDA
each engine takes ``CAI_VLLM_GPU_MEMORY`` of the GPU's memory (default 0.25: a run keeps up
to three engines loaded, and trains in this process between stages).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from ..errors import CaiError
from .base import ChoiceRequest, Generation, GenerationRequest, Message, tokenized_options

KV_CACHE_GIB = "2"


CPU_BLOCK_SIZE = 32
SMALL_MACHINE_CPUS = 4


def _cpu_defaults() -> None:
    """The CPU engine's settings, where the user has not set them."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", KV_CACHE_GIB)
    # vLLM keeps one core out of its worker for the scheduling process. On a machine of
    # two cores that halves the worker's threads (it ran 1.6x slower here); on a small
    # machine the worker takes every core and shares one with the scheduler instead.
    if (os.cpu_count() or 1) <= SMALL_MACHINE_CPUS:
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


def installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def unsupported(path: Path, device: str) -> str | None:
    """Why vLLM cannot run the model in ``path`` on ``device``; None when it can."""
    if not installed():
        return "vLLM is not installed (pip install -e '.[vllm]')"
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        return f"vLLM does not run on device {device!r}"
    if (path / "adapter_config.json").exists():
        return f"{path} holds a LoRA adapter, not a whole model"
    try:
        archs = json.loads((path / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError) as e:
        return f"{path / 'config.json'}: {e}"
    from vllm import ModelRegistry

    supported = ModelRegistry.get_supported_archs()
    if not any(a in supported for a in archs):
        return f"vLLM does not support the architecture {archs or '(none given)'}"
    return None


class VLLMBackend:
    """A local model directory served by ``vllm.LLM``; the ``spec`` is the model's own."""

    own_process = True  # the engine runs in a worker process (kept across training stages)

    def __init__(self, path: Path, spec: str, dtype: str = "auto", device: str = "auto",
                 batch_size: int = 32, seed: int = 0):
        why = unsupported(path, device)
        if why:
            raise CaiError(f"model {spec!r}: the vllm engine cannot load it: {why} "
                           "(use --engine hf)")
        from ..devices import resolve

        on_cpu = resolve(device, dtype)[0] == "cpu"
        if on_cpu:
            _cpu_defaults()
        from vllm import LLM

        from .hf import render_chat

        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        self.max_context = min(int(config.get("max_position_embeddings") or 2048), 8192)
        kwargs = dict(model=str(path), dtype=_dtype(dtype, device), seed=seed,
                      max_model_len=self.max_context, enable_prefix_caching=True,
                      use_tqdm_on_load=False,
                      # vLLM 0.32 on CPU fails a seeded request whose prompt is split over
                      # two steps ("CPU Generator does not use offset"): whole prompts only.
                      enable_chunked_prefill=False,
                      enforce_eager=os.environ.get("CAI_VLLM_COMPILE") != "1")
        if on_cpu:
            # vLLM's CPU attention takes blocks of any multiple of 32; its default (128)
            # lets prefix caching reuse a shared prompt only in whole 128-token blocks, and
            # scoring asks up to four steps on one context
            kwargs["block_size"] = CPU_BLOCK_SIZE
        if device.startswith("cuda"):
            # A run keeps up to three engines, and trains between stages in this process.
            kwargs["gpu_memory_utilization"] = float(os.environ.get("CAI_VLLM_GPU_MEMORY", "0.25"))
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self._render = render_chat
        self.spec = spec
        self.batch_size = batch_size

    # Seconds the engine's process gets to exit on its own before vLLM kills it. vLLM's own
    # 5 s is short on a busy CPU: a process killed before it unlinks its shared-memory queues
    # leaves them to Python's resource tracker, which cleans them up and prints a warning
    # ("leaked shared_memory objects") on the user's terminal.
    SHUTDOWN_GRACE = 60.0

    def close(self) -> None:
        """Stop the engine's processes (also when this backend is garbage-collected)."""
        engine = getattr(getattr(self, "llm", None), "llm_engine", None)
        shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
        self.llm = None
        if shutdown:
            try:
                shutdown(timeout=self.SHUTDOWN_GRACE)
            except TypeError:  # a vLLM whose shutdown takes no timeout
                shutdown()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the engine's own finaliser stops it
            pass

    def render(self, messages: tuple[Message, ...], prefix: str = "") -> str:
        return self._render(self.tokenizer, messages, prefix)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _run(self, prompts: list[list[int]], params: list) -> list:
        from vllm.inputs import TokensPrompt

        if not prompts:
            return []
        return self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params,
                                 use_tqdm=False)

    # -- generate --------------------------------------------------------------------

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        from vllm import SamplingParams

        prompts, params, warnings = [], [], []
        for r in requests:
            s = r.sampling
            budget = max(1, self.max_context - s.max_new_tokens)
            ids = self._ids(self.render(r.messages, r.prefix))
            warning = None
            if len(ids) > budget:
                warning = f"prompt of {len(ids)} tokens truncated to its last {budget}"
                ids = ids[-budget:]
            prompts.append(ids)
            warnings.append([warning] if warning else [])
            greedy = s.temperature == 0
            params.append(SamplingParams(
                n=s.n, max_tokens=s.max_new_tokens, seed=s.seed, stop=list(s.stop) or None,
                temperature=0.0 if greedy else s.temperature, top_p=1.0 if greedy else s.top_p,
                skip_special_tokens=True))
        results = []
        for ids, out, warn in zip(prompts, self._run(prompts, params), warnings):
            outputs = sorted(out.outputs, key=lambda o: o.index)
            results.append(Generation(
                texts=[o.text for o in outputs], tokens=[len(o.token_ids) for o in outputs],
                finish_reasons=["length" if o.finish_reason == "length" else "stop"
                                for o in outputs],
                prompt_tokens=len(ids), warnings=warn))
        return results

    # -- score -----------------------------------------------------------------------

    def score(self, requests: list[ChoiceRequest]) -> list[dict[str, float]]:
        """Log-probability of each option after each request's context, summed over the
        option's tokens: one decoding step per distinct prefix of the options' tokens,
        reading exactly the tokens that may follow it."""
        from vllm import SamplingParams

        plans = []  # per request: context ids, [(option, continuation ids)]
        steps: dict[tuple[int, ...], set[int]] = {}  # prompt ids -> next tokens to read
        for r in requests:
            options, budget = tokenized_options(r, self._ids, self.max_context)
            context = self._ids(self.render(r.messages, r.prefix))[-budget:]
            plans.append((context, options))
            for _, cont in options:
                for t in range(len(cont)):
                    steps.setdefault(tuple(context + cont[:t]), set()).add(cont[t])
        keys = list(steps)
        outs = self._run([list(k) for k in keys],
                         [SamplingParams(max_tokens=1, temperature=0.0,
                                         logprob_token_ids=sorted(steps[k])) for k in keys])
        read = {}
        for key, out in zip(keys, outs):
            first = out.outputs[0].logprobs[0]
            for token in steps[key]:
                read[key, token] = float(first[token].logprob)
        results = []
        for context, options in plans:
            results.append({option: sum(read[tuple(context + cont[:t]), cont[t]]
                                        for t in range(len(cont)))
                            for option, cont in options})
        return results


def _dtype(dtype: str, device: str) -> str:
    """vLLM's dtype for ours: ``auto`` is bfloat16 where we would choose it."""
    if dtype != "auto":
        return dtype
    from ..devices import resolve

    import torch

    _, chosen = resolve(device, dtype)
    return "bfloat16" if chosen == torch.bfloat16 else "float32"
