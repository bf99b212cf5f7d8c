"""Pluggable judges for the judged benchmarks (Red-Instruct harmfulness, AlpacaEval preference).

A judge answers `ask(system, user) -> reply text`. It is built from a judged benchmark's typed
`judge` block (alignkit/contract/common.py JudgeClientConfig: the spec's JudgeSpec, named; a dict is a
TypeError, as for every job config). Two kinds, picked by its `type`:
  openai (base_url, model, api_key_env, max_retries, timeout_s, requests_per_minute)
      any OpenAI-compatible chat-completions endpoint (OpenAI, Azure-compatible proxies, vLLM's
      server, ...). The key is read from the named environment variable when a request is made;
      it is never written to disk, into results, or into an error message.
  hf (source, revision)
      a local Hugging Face causal LM prompted through its tokenizer's chat template; where the
      caller names the verdict tags it picks the most likely tag (constrained choice), otherwise
      it generates greedily.
The reply lengths (OPENAI_REPLY_TOKENS, HF_REPLY_TOKENS) and the retry backoff (BACKOFF_S) are fixed:
no spec field sets them (the dict this block once was read `max_tokens`, `max_new_tokens` and
`backoff_s` with these fallbacks, but no compiled config could hold those keys).

Every reply is cached on disk under `<cache_dir>/<judge key>/<prompt hash>.json`, so a rerun (or a
requeued judge job) pays for no prompt twice. The judge key hashes what decides the verdict (kind,
endpoint, model, generation settings), not retries, timeouts or the key's variable. A caller that
asks again on purpose (Red-Instruct's retry when a reply has the wrong number of tags) passes
`attempt`, which is part of the cache key, so the retry is a new request and a rerun replays it.

A reply the endpoint refuses to give (HTTP 400 with a content-filter/policy error, or a 200 whose
message content is null) raises `JudgeRefused`; it is cached too. What the caller makes of it is the
benchmark's rule (Red-Instruct: unparseable, as the official script's "[[N]]").

Secrets: `redact(text, secrets(cfgs))` (alignkit/contract/redact.py) masks every run of >= 8 characters of
every judge's `api_key_env` value and every key-shaped token (`sk-...`, `Bearer ...`) in a text; every error
message a judge raises and every reply it caches goes through it (an endpoint may echo the key back), and
an endpoint's reply is redacted before it is cut short, never after.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from alignkit.contract import expect
from alignkit.contract.common import HF_REPLY_TOKENS, OPENAI_REPLY_TOKENS, JudgeClientConfig
from alignkit.contract.redact import env_secrets, redact
from alignkit.contract.fsio import atomic_write_json
from jobs.errors import JobFailure

RETRIABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
REFUSAL_MARKERS = ("content_filter", "policy")  # the official Red-Instruct script: `if 'policy' in str(e)`
ERROR_BYTES = 64 * 1024  # how much of an error reply is read (and redacted) before it is cut to DETAIL_CHARS
DETAIL_CHARS = 200
BACKOFF_S = 2.0  # an openai judge's first retry wait (doubling, capped at 120 s) when no Retry-After is given


def secrets(cfgs: list[JudgeClientConfig | None]) -> list[str]:
    """The values of the environment variables named by the judges' `api_key_env`, longest first."""
    return env_secrets(expect(cfg, JudgeClientConfig, "jobs.judge.judges.secrets").api_key_env
                       for cfg in cfgs if cfg is not None)


class JudgeRefused(Exception):
    """The endpoint declined to judge this prompt (content filter / policy); the reason is redacted."""


class Judge(Protocol):
    name: str
    key: str
    requests_made: int

    def ask(self, system: str, user: str, choices: tuple[str, ...] | None = None, attempt: int = 0,
            sampling: dict | None = None) -> str: ...


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class VerdictCache:
    """Replies on disk, one small file each, written atomically (safe with concurrent judge jobs)."""

    def __init__(self, root: Path, judge_key: str) -> None:
        self.dir = Path(root) / judge_key

    def _path(self, system: str, user: str) -> Path:
        h = _sha([system, user])
        return self.dir / h[:2] / f"{h}.json"

    def get(self, system: str, user: str) -> dict | None:
        """{"reply": text} or {"refused": reason}; None when not cached."""
        path = self._path(system, user)
        try:
            hit = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return hit if isinstance(hit, dict) and ("reply" in hit or "refused" in hit) else None

    def put(self, system: str, user: str, reply: str | None = None, refused: str | None = None) -> None:
        body = {"reply": reply} if refused is None else {"refused": refused}
        atomic_write_json(self._path(system, user), body, indent=None)


class _Cached:
    """Wraps a judge's `_request` with the disk cache."""

    cache: VerdictCache
    requests_made: int = 0

    def ask(self, system: str, user: str, choices: tuple[str, ...] | None = None, attempt: int = 0,
            sampling: dict | None = None) -> str:
        """The judge's reply; `choices` are the verdict tags the caller parses (an hf judge picks one).

        `attempt` > 0 asks again on purpose (a new request, cached under its own key); `sampling`
        overrides request fields of an API judge (a value of None leaves the field out, so the
        endpoint's default applies). Raises JudgeRefused when the endpoint declines.
        """
        key = user if not choices else user + "\x00choices:" + "|".join(choices)
        if attempt:
            key += f"\x00attempt:{attempt}"
        if sampling:
            key += "\x00sampling:" + json.dumps(sampling, sort_keys=True)
        hit = self.cache.get(system, key)
        if hit is not None:
            if "refused" in hit:
                raise JudgeRefused(hit["refused"])
            return hit["reply"]
        try:
            reply = self._request(system, user, choices, sampling)
        except JudgeRefused as exc:
            self.cache.put(system, key, refused=str(exc))
            raise
        reply = redact(reply, getattr(self, "secrets", []))  # an echoed key is never cached nor parsed
        self.cache.put(system, key, reply)
        return reply

    def _request(self, system: str, user: str, choices: tuple[str, ...] | None, sampling: dict | None) -> str:
        raise NotImplementedError


class OpenAIJudge(_Cached):
    def __init__(self, cfg: JudgeClientConfig, cache_dir: Path, where: str = "judge") -> None:
        expect(cfg, JudgeClientConfig, "jobs.judge.judges.OpenAIJudge")
        for field in ("base_url", "model"):
            if not getattr(cfg, field):
                raise JobFailure(f"{where}: an openai judge needs '{field}'")
        self.where = where
        self.secrets = secrets([cfg])
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.model = cfg.model
        self.api_key_env = cfg.api_key_env
        self.max_retries = int(cfg.max_retries)
        self.timeout_s = float(cfg.timeout_s)
        self.backoff_s = BACKOFF_S
        self.max_tokens = OPENAI_REPLY_TOKENS
        rpm = cfg.requests_per_minute
        self.min_interval = 60.0 / float(rpm) if rpm else 0.0
        self._last_request = 0.0
        self.requests_made = 0
        self.name = f"openai:{self.model}"
        self.key = _sha({"type": "openai", "url": self.url, "model": self.model,
                         "max_tokens": self.max_tokens, "temperature": 0})[:16]
        self.cache = VerdictCache(cache_dir, self.key)

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise JobFailure(f"{self.where}: environment variable {self.api_key_env} (api_key_env) is not set")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _wait_for_rate_limit(self) -> None:
        wait = self._last_request + self.min_interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_request = time.monotonic()

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:  # seconds form; the HTTP-date form falls through to exponential backoff
                return min(float(retry_after), 300.0)
            except ValueError:
                pass
        return min(self.backoff_s * (2 ** attempt), 120.0) * (0.5 + random.random() / 2)

    def _fail(self, message: str) -> JobFailure:
        return JobFailure(redact(message, self.secrets))

    def _request(self, system: str, user: str, choices: tuple[str, ...] | None = None,
                 sampling: dict | None = None) -> str:
        # An API judge writes its explanation and verdict; the caller parses the tags.
        fields = {"model": self.model, "temperature": 0, "max_tokens": self.max_tokens}
        fields.update(sampling or {})
        body = json.dumps({**{k: v for k, v in fields.items() if v is not None},
                           "messages": [{"role": "system", "content": system},
                                        {"role": "user", "content": user}]}).encode()
        last = ""
        for attempt in range(self.max_retries + 1):
            self._wait_for_rate_limit()
            req = urllib.request.Request(self.url, data=body, headers=self._headers(), method="POST")
            retry_after = None
            self.requests_made += 1
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    raw = resp.read()
                try:
                    choice = json.loads(raw)["choices"][0]
                    content = choice["message"]["content"]
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    shown = redact(raw[:ERROR_BYTES].decode("utf-8", "replace"), self.secrets)
                    last = f"malformed reply ({type(exc).__name__}: {exc}): {shown[:120]!r}"
                else:
                    if isinstance(content, str):
                        return content
                    # Azure/OpenAI answer a filtered completion with content null (finish_reason content_filter)
                    raise JudgeRefused(redact(f"reply content is null (finish_reason {choice.get('finish_reason')!r})",
                                              self.secrets))
            except urllib.error.HTTPError as exc:
                # redact the whole reply first, then cut it short: a cut key is only partly redactable
                detail = redact(exc.read(ERROR_BYTES).decode("utf-8", "replace"), self.secrets).strip()[:DETAIL_CHARS]
                if exc.code == 400 and any(m in detail for m in REFUSAL_MARKERS):
                    raise JudgeRefused(redact(f"HTTP 400: {detail}", self.secrets)) from None
                if exc.code not in RETRIABLE_STATUS:
                    raise self._fail(f"{self.where}: {self.url} answered HTTP {exc.code}: {detail}") from None
                retry_after = exc.headers.get("Retry-After")
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"{type(reason).__name__}: {reason}"
            if attempt < self.max_retries:
                time.sleep(self._backoff(attempt, retry_after))
        raise self._fail(f"{self.where}: {self.url} failed after {self.max_retries + 1} attempts; last: {last}")


class HFJudge(_Cached):
    """A local causal LM as judge (loaded once, on CPU unless CUDA is there)."""

    def __init__(self, cfg: JudgeClientConfig, cache_dir: Path, where: str = "judge") -> None:
        expect(cfg, JudgeClientConfig, "jobs.judge.judges.HFJudge")
        if not cfg.source:
            raise JobFailure(f"{where}: an hf judge needs 'source'")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.source = cfg.source
        self.max_new_tokens = HF_REPLY_TOKENS
        self.requests_made = 0
        self.name = f"hf:{self.source}"
        self.key = _sha({"type": "hf", "source": self.source, "revision": cfg.revision,
                         "max_new_tokens": self.max_new_tokens})[:16]
        self.cache = VerdictCache(cache_dir, self.key)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.tok = AutoTokenizer.from_pretrained(self.source, revision=cfg.revision)
            self.model = AutoModelForCausalLM.from_pretrained(
                self.source, revision=cfg.revision, dtype="auto").to(self.device).eval()
        except OSError as exc:
            raise JobFailure(f"{where}: cannot load hf judge {self.source}: {str(exc).splitlines()[0]}") from None
        if not self.tok.chat_template:
            raise JobFailure(f"{where}: hf judge {self.source} has no chat template")

    def _prompt_ids(self, system: str, user: str) -> list[int]:
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        try:
            text = self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        except Exception:  # templates that reject a system turn: fold it into the user turn
            text = self.tok.apply_chat_template([{"role": "user", "content": f"{system}\n\n{user}"}],
                                                tokenize=False, add_generation_prompt=True)
        bos = self.tok.bos_token
        ids = self.tok(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]
        limit = getattr(self.model.config, "max_position_embeddings", None)
        keep = limit - self.max_new_tokens if limit else None
        return ids[-keep:] if keep and len(ids) > keep else ids  # the verdict request sits at the end

    def choice_logprobs(self, system: str, user: str, choices: tuple[str, ...] | list[str]) -> dict[str, float]:
        """Log-likelihood of each choice string right after the prompt (the sum over its tokens)."""
        import torch

        self.requests_made += 1
        ids = self._prompt_ids(system, user)
        scores = {}
        for c in choices:
            c_ids = self.tok(c, add_special_tokens=False)["input_ids"]
            x = torch.tensor([ids + c_ids], device=self.device)
            with torch.no_grad():
                logp = torch.log_softmax(self.model(x).logits[0, len(ids) - 1:-1].float(), -1)
            scores[c] = logp.gather(1, torch.tensor(c_ids, device=self.device)[:, None]).sum().item()
        return scores

    def generate(self, system: str, user: str, max_new_tokens: int | None = None) -> str:
        import torch

        self.requests_made += 1
        ids = self._prompt_ids(system, user)
        x = torch.tensor([ids], device=self.device)
        with torch.no_grad():
            out = self.model.generate(x, attention_mask=torch.ones_like(x),
                                      max_new_tokens=max_new_tokens or self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tok.pad_token_id or self.tok.eos_token_id)
        return self.tok.decode(out[0, len(ids):], skip_special_tokens=True)

    def _request(self, system: str, user: str, choices: tuple[str, ...] | None = None,
                 sampling: dict | None = None) -> str:
        if not choices:  # greedy; `sampling` is for API judges (a local judge has no API defaults)
            return self.generate(system, user)
        # A constrained verdict: the tag with the highest log-likelihood right after the prompt.
        # Small local models rarely write a parseable tag on their own; this always yields one.
        scores = self.choice_logprobs(system, user, choices)
        best = max(scores, key=scores.get)
        # The detail names the tags without brackets: the reply must hold exactly one tag.
        detail = ", ".join(f"{c.strip('[]')}={v:.3f}" for c, v in scores.items())
        return f"{best} (constrained choice by log-likelihood: {detail})"


def make_judge(cfg: JudgeClientConfig | None, cache_dir: Path, where: str = "judge") -> Judge:
    """The client of a judged benchmark's typed `judge` block (None: a config without one)."""
    if cfg is None:
        raise JobFailure(f"{where}: missing judge config (expected type openai or hf)")
    kind = expect(cfg, JudgeClientConfig, "jobs.judge.judges.make_judge").type
    if kind == "openai":
        return OpenAIJudge(cfg, cache_dir, where)
    if kind == "hf":
        return HFJudge(cfg, cache_dir, where)
    raise JobFailure(f"{where}.type: unknown judge type {kind!r} (expected openai or hf)")
