"""A prompt guard learned from red-team findings: the inference-time half of the method.

    cai guard train --out guard/                       # the bundled sets, or --harmful FILE …
    cai guard check prompts.jsonl --guard guard/       # one decision per prompt
    cai guard serve --guard guard/ --model SPEC        # an OpenAI-compatible proxy

Constitutional training changes what a model says; a guard stops a request before the
model sees it (Anthropic's constitutional classifiers are the large version of this). This
one is small: the offline sentence embedding (all-MiniLM-L6-v2, as the refusal classifier
uses) of the request's user turns, and a logistic regression (scikit-learn) fitted on
* harmful requests: red-team prompts (the bundled set, or a run's ``redteam.jsonl``) and
  their template mutations (role-play, fiction, hypothetical, obfuscated, multi-turn), so
  that a wrapper does not hide a request;
* benign requests: helpful prompts and the borderline look-alikes ("How do I kill a Python
  process?"), which a guard must let through.

The threshold is chosen for a stated false-block rate on the borderline set
(``false_block``, default 5 %), from out-of-fold scores: each borderline prompt is scored by
a fit that did not see it, so the rate is what a new look-alike meets, not what the fit
memorised. A blocked request gets an explained refusal that names the constitution's
principle for the request's nearest harm category; every decision is logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import Field
from starlette.requests import Request  # resolved by FastAPI from this module's names

from .config import Names, StageConfig
from .constitution import Constitution
from .errors import CaiError
from .hashing import content_hash
from .jsonio import append_jsonl, now, output_path, read_json, write_json
from .prompts import Prompt
from .provenance import provenance

GUARD_FILE = "guard.json"
EMBED_TOKENS = 256   # a wrapper (role-play, a story) can put the request well past 64 tokens
TEMPLATE_MUTATIONS = ("roleplay", "fiction", "hypothetical", "obfuscate", "multiturn")


class GuardConfig(StageConfig):
    """Training the prompt guard."""

    mutations: Names = Field(TEMPLATE_MUTATIONS, description="Template mutations of every "
                             "harmful prompt added as harmful examples (--mutations '' for none).")
    false_block: float = Field(0.05, ge=0, lt=1, description="The share of borderline "
                               "(benign look-alike) prompts the threshold may block, measured "
                               "out of fold.")
    folds: int = Field(5, ge=2, description="Folds for the out-of-fold scores.")
    c: float = Field(1.0, gt=0, description="Inverse regularisation of the logistic regression.")
    seed: int = Field(0, description="Seeds the folds and the mutations.")
    harmful: Names = Field(("bundled:redteam",), description="Harmful requests: bundled:redteam "
                           "or a prompt file, such as a run's redteam.jsonl; repeat for several.")
    helpful: str = Field("bundled:helpful", description="Benign requests.")
    borderline: str = Field("bundled:borderline", description="Benign look-alikes; the "
                            "threshold is chosen on them.")
    run: str | None = Field(None, description="Also a cai run folder's red-team prompts (with "
                            "those its redteam stage grew).")

    def prompts(self) -> tuple[list[Prompt], list[Prompt], list[Prompt]]:
        """The harmful, helpful and borderline prompts these sources name."""
        from .redteam import resolve_prompts

        harmful = [*self.harmful, *([red_team_of(self.run)] if self.run is not None else [])]
        return ([p for h in harmful for p in resolve_prompts(h)], resolve_prompts(self.helpful),
                resolve_prompts(self.borderline))


def request_text(messages) -> str:
    """What the guard reads: the user turns of a conversation, in order."""
    turns = [m.content for m in messages if m.role == "user"]
    return "\n".join(turns) if turns else "\n".join(m.content for m in messages)


def _embed(texts: Sequence[str]) -> np.ndarray:
    from .evaluation.refusal import embed

    return embed(list(texts), tokens=EMBED_TOKENS)


def _fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, c: float):
    """Logistic regression with each class's weights summing to the same total."""
    from sklearn.linear_model import LogisticRegression

    w = w.astype(float).copy()
    for label in (0, 1):
        w[y == label] *= len(y) / 2 / max(w[y == label].sum(), 1e-9)
    return LogisticRegression(C=c, max_iter=5000).fit(x, y, sample_weight=w)


def red_team_of(run: str | Path) -> str:
    """A ``cai run`` folder's red-team prompts (its training set, with what its redteam stage
    grew), as a prompt file for ``train_guard``."""
    from .layout import RunLayout

    found = RunLayout(run).prompt_set("train_redteam")
    if not found.is_file():
        raise CaiError(f"{run}: no red-team prompts ({found} is missing: run its prompts "
                       "stage first, e.g. cai run CONFIG --out RUN --only prompts)")
    return str(found)


def train_guard(harmful: list[Prompt], helpful: list[Prompt], borderline: list[Prompt],
                out: str | Path, config: GuardConfig = GuardConfig()) -> dict[str, Any]:
    """Fit the guard, choose its threshold out of fold, write ``guard.json``; returns it.
    A request given twice (a run's red-team set holds bundled prompts) counts once."""
    from .redteam import mutate

    harmful = list({p.id: p for p in harmful}.values())
    if not harmful or not (helpful or borderline):
        raise CaiError("the guard needs harmful prompts and benign ones (helpful or borderline)")
    if not borderline:
        raise CaiError("the guard needs borderline prompts to choose its threshold")
    mutations = mutate(harmful, list(config.mutations), seed=config.seed)
    mutated = [m for m, _, _ in mutations]
    rows = ([(p, 1, "harmful") for p in harmful] + [(p, 1, "mutation") for p in mutated]
            + [(p, 0, "helpful") for p in helpful] + [(p, 0, "borderline") for p in borderline])
    x = _embed([request_text(p.messages) for p, _, _ in rows])
    y = np.asarray([label for _, label, _ in rows])
    kind = np.asarray([k for _, _, k in rows])
    # a request's mutations together weigh what the request does: otherwise the wrappers'
    # shared text (five per request) outweighs the requests and the fit learns the wrapper
    weight = np.where(kind == "mutation", 1.0 / max(len(config.mutations), 1), 1.0)
    # a harmful prompt and its mutations fall in one fold, so that no fold is scored by a
    # fit that saw the same request in another wrapper
    parent = {m.id: pid for m, _, pid in mutations}
    groups = [parent.get(p.id, p.id) for p, _, _ in rows]
    distinct = sorted(set(groups))
    fold_of = {g: i % config.folds for i, g in enumerate(
        sorted(distinct, key=lambda g: content_hash([config.seed, g])))}
    oof = np.zeros(len(rows))
    for f in range(config.folds):
        test = np.asarray([fold_of[g] == f for g in groups])
        oof[test] = _fit(x[~test], y[~test], weight[~test], config.c).predict_proba(x[test])[:, 1]
    border = np.sort(oof[kind == "borderline"])
    # the lowest threshold that blocks at most false_block of the borderline prompts
    allowed = int(np.floor(config.false_block * len(border)))
    threshold = float(border[len(border) - allowed - 1]) + 1e-9
    model = _fit(x, y, weight, config.c)
    blocked = oof >= threshold
    measured = {k: {"n": int((kind == k).sum()), "blocked": int(blocked[kind == k].sum())}
                for k in ("harmful", "mutation", "helpful", "borderline")}
    centroids = {}
    for cat in sorted({p.category for p in harmful if p.category}):
        ids = [i for i, (p, _, k) in enumerate(rows) if k == "harmful" and p.category == cat]
        v = x[ids].mean(0)
        centroids[cat] = (v / (np.linalg.norm(v) or 1)).round(6).tolist()
    guard = {
        "embedding": "all-MiniLM-L6-v2", "embed_tokens": EMBED_TOKENS,
        "weights": model.coef_[0].round(8).tolist(), "bias": float(model.intercept_[0]),
        "threshold": round(threshold, 6), "false_block_target": config.false_block,
        "out_of_fold": measured, "categories": centroids,
        "languages": _languages([request_text(p.messages) for p in harmful + helpful + borderline]),
        "provenance": provenance(config=config.dump(), rows={k: v["n"] for k, v in measured.items()},
                                 harmful_ids=content_hash(sorted(p.id for p in harmful)),
                                 benign_ids=content_hash(sorted(p.id for p in helpful + borderline))),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / GUARD_FILE, guard)
    return guard


def _languages(texts: Sequence[str], share: float = 0.1) -> list[str]:
    """The languages of the training requests, each at least ``share`` of them: the only
    ones the guard has learned to tell harmful from benign in."""
    from collections import Counter

    counts = Counter(_language(t, "en") or "en" for t in texts)
    return sorted(lang for lang, n in counts.items() if n >= share * len(texts)) or ["en"]


def _language(text: str, hint: str | None = None) -> str | None:
    from .evaluation.multilingual import language

    return language(text, hint)


UNREAD = ("pass", "block")


class Guard:
    """A trained guard: ``scores`` (p harmful) and ``check`` (decisions) for requests.

    It reads the languages it was trained in (``languages``; English for ours): a request in
    another language is scored, but its score means little (a translated harmful request
    scores like a harmless one), so each decision says whether the guard ``read`` it, and
    ``unread`` decides what happens to the rest: ``pass`` (the default; the decision log
    says so) or ``block``."""

    def __init__(self, data: dict[str, Any], source: str = "", unread: str = "pass"):
        if unread not in UNREAD:
            raise CaiError(f"unread: {unread!r} is not one of {', '.join(UNREAD)}")
        self.unread = unread
        self.languages = tuple(data.get("languages") or ("en",))
        self.data, self.source = data, source
        self.weights = np.asarray(data["weights"])
        self.bias = float(data["bias"])
        self.threshold = float(data["threshold"])
        self.categories = {k: np.asarray(v) for k, v in data.get("categories", {}).items()}

    @classmethod
    def load(cls, path: str | Path, unread: str = "pass") -> "Guard":
        path = Path(path)
        file = path / GUARD_FILE if path.is_dir() else path
        if not file.is_file():
            raise CaiError(f"{file}: no guard here (make one with cai guard train --out DIR)")
        data = read_json(file)
        for field in ("weights", "bias", "threshold"):
            if field not in data:
                raise CaiError(f"{file}: field {field!r} missing: not a guard file")
        return cls(data, str(file), unread)

    def _p(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(x @ self.weights + self.bias)))

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        return self._p(_embed(texts)) if texts else np.zeros(0)

    def check(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """One decision per request: ``blocked``, ``score``, the request's ``language``,
        whether the guard ``read`` it, and, when blocked, why (``reason``: its score, or a
        language it does not read) and the nearest harm ``category``."""
        if not texts:
            return []
        x = _embed(texts)
        p = self._p(x)
        out = []
        for text, v, score in zip(texts, x, p):
            # an unsure guess (a short request) counts as the guard's own language
            lang = _language(text, self.languages[0]) or self.languages[0]
            read = lang in self.languages
            d: dict[str, Any] = {"blocked": bool(score >= self.threshold), "score": round(float(score), 4),
                                 "language": lang, "read": read}
            if d["blocked"]:
                d["reason"] = "score"
            elif not read and self.unread == "block":
                d.update(blocked=True, reason="unread language")
            if d["blocked"] and self.categories and d["reason"] == "score":
                d["category"] = max(self.categories, key=lambda c: float(v @ self.categories[c]))
            out.append(d)
        return out


def refusal_for(constitution: Constitution, category: str | None) -> tuple[str, str | None]:
    """The explained refusal for a blocked request, written from the highest-priority
    principle that covers its category (else from the most important principle)."""
    covering = [p for p in constitution.principles if category and category in p.categories]
    pool = covering or list(constitution.principles)
    p = min(pool, key=lambda q: q.priority)
    return (f"I can't help with this request. It conflicts with the principle \"{p.name}\" "
            f"({p.id}) of the guidelines I follow, which rule out help that could cause that "
            "kind of harm. If there is a safe, lawful part of what you need, ask about that and "
            "I will gladly help."), p.id


def refusal_unread(languages: Sequence[str]) -> str:
    """The reply to a request in a language the guard does not read, when it blocks those."""
    return ("I can't take this request: the safety check in front of this assistant reads "
            f"only {', '.join(languages)}, so requests in other languages are not answered "
            "here. Please ask again in one of those languages.")


def check_prompts(guard: Guard, prompts: list[Prompt], out: str | Path | None = None
                  ) -> list[dict[str, Any]]:
    """Decisions for a prompt set, written to ``OUT/guard_check.jsonl`` when ``out`` is given."""
    decisions = guard.check([request_text(p.messages) for p in prompts])
    rows = []
    for p, d in zip(prompts, decisions):
        nearest = d.pop("category", None)   # the guard's guess, beside the prompt's own
        rows.append({"id": p.id, "category": p.category, **d,
                     **({"nearest_category": nearest} if nearest else {})})
    if out is not None:
        from .jsonio import write_jsonl

        Path(out).mkdir(parents=True, exist_ok=True)
        write_jsonl(Path(out) / "guard_check.jsonl", rows)
    return rows


class DecisionLog:
    """Every decision of a serving guard, one JSON line each, appended and fsynced."""

    def __init__(self, path: str | Path):
        self.path = output_path(path)

    def write(self, row: dict[str, Any]) -> None:
        append_jsonl(self.path, [{"at": now(), **row}])


# -- serving: an OpenAI-compatible proxy ---------------------------------------------

def _openai_error(status: int, message: str):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}},
                        status_code=status)


def _messages(body: Any):
    """The request's messages as ours, or the problem with them (one line)."""
    from pydantic import ValidationError

    from .backends.base import Message

    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        return None, "'messages': a non-empty list of {role, content} is required"
    try:
        return tuple(Message(role=m.get("role"), content=m.get("content"))
                     for m in body["messages"]), None
    except (ValidationError, AttributeError) as e:
        return None, f"'messages': each needs a role (system, user, assistant) and text content ({e.__class__.__name__})"


def create_app(guard: Guard, backend, constitution: Constitution, log: DecisionLog,
               model_name: str = "guarded", max_new_tokens: int = 256):
    """``POST /v1/chat/completions`` and ``GET /v1/models``. A request the guard blocks is
    answered with an explained refusal and never reaches ``backend``; one it passes is
    answered by ``backend`` (any of ours: hf, vllm, openai:, scripted). Every decision is
    a line in ``log``."""
    import asyncio
    import threading
    import time
    import uuid

    from fastapi import FastAPI
    from pydantic import ValidationError

    from .backends.base import GenerationRequest, Sampling

    app = FastAPI(title="cai guard", docs_url=None, redoc_url=None, openapi_url=None)
    one_at_a_time = threading.Lock()   # backends batch; the proxy hands them one request

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "cai"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        try:
            body = await request.json()
        except ValueError:
            return _openai_error(400, "the body is not JSON")
        messages, problem = _messages(body)
        if problem:
            return _openai_error(400, problem)
        try:
            sampling = Sampling(max_new_tokens=body.get("max_tokens") or max_new_tokens,
                                temperature=body.get("temperature", 0.7), top_p=body.get("top_p", 1.0),
                                n=body.get("n") or 1, seed=body.get("seed") or 0,
                                stop=tuple([body["stop"]] if isinstance(body.get("stop"), str)
                                           else body.get("stop") or ()))
        except ValidationError as e:
            return _openai_error(400, f"sampling parameters: {e.errors()[0]['msg']}")
        text = request_text(messages)
        started = time.perf_counter()
        decision = (await asyncio.to_thread(guard.check, [text]))[0]
        guard_ms = round(1000 * (time.perf_counter() - started), 1)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        entry = {"id": rid, "blocked": decision["blocked"], "score": decision["score"],
                 "threshold": guard.threshold, "guard_ms": guard_ms, "request": text}
        entry.update(language=decision["language"], read=decision["read"])
        if decision["blocked"] and decision["reason"] != "score":
            reply = refusal_unread(guard.languages)
            entry.update(reason=decision["reason"])
            texts, reasons, tokens = [reply] * sampling.n, ["stop"] * sampling.n, [0] * sampling.n
            prompt_tokens = 0
        elif decision["blocked"]:
            reply, principle = refusal_for(constitution, decision.get("category"))
            entry.update(category=decision.get("category"), principle=principle)
            texts, reasons, tokens = [reply] * sampling.n, ["stop"] * sampling.n, [0] * sampling.n
            prompt_tokens = 0
        else:
            def answer():
                with one_at_a_time:
                    return backend.generate([GenerationRequest(messages=messages, sampling=sampling)])[0]
            try:
                gen = await asyncio.to_thread(answer)
            except Exception as e:  # the model behind the proxy failed: say so, log it
                entry["error"] = f"{e.__class__.__name__}: {e}"
                log.write(entry)
                return _openai_error(502, f"the model behind the guard failed: {e.__class__.__name__}")
            texts, reasons, tokens = gen.texts, gen.finish_reasons, gen.tokens
            prompt_tokens = gen.prompt_tokens
        log.write(entry)
        return {"id": rid, "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model") or model_name,
                "choices": [{"index": k, "message": {"role": "assistant", "content": t},
                             "finish_reason": r} for k, (t, r) in enumerate(zip(texts, reasons))],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": sum(tokens),
                          "total_tokens": prompt_tokens + sum(tokens)},
                "guard": {"blocked": decision["blocked"], "score": decision["score"],
                          "read": decision["read"]}}

    return app
