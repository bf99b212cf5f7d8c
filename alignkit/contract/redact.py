"""Key material out of every text a job or collect writes (error.json, logs, the journal, reports).

`redact(text, secrets)` replaces
  - every run of >= KEY_RUN (8) characters of a known secret (a judge's `api_key_env` value), so a
    reply cut to a few hundred bytes, which holds only part of a key, still leaks none of it;
  - common key shapes whatever their value: `sk-...` (OpenAI, Anthropic and most gateways) and the
    token after `Bearer ` (an echoed Authorization header).
Redact first, then truncate: a truncated text redacts its whole key only by luck.

torch-free and stdlib-only: the job side (jobs/judge/judges.py, jobs/entry.py) and the login side
(status, collect) import it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

MASK = "[redacted]"
KEY_RUN = 8  # shorter runs of a key occur in ordinary text; a key leaks nothing in fewer characters
MIN_SECRET_LEN = 4  # shorter values would redact ordinary words; no real API key is that short
# key shapes: `sk-` plus a token of 16+ key characters; `Bearer <token>` of 8+ with a digit (Authorization headers)
_SHAPES = (
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), MASK),
    # a token holds a digit: "Bearer authentication" in an error message is prose, not a key
    (re.compile(r"(?i)\b(bearer\s+)(?!\[redacted\])(?=[A-Za-z._~+/=\-]*\d)[A-Za-z0-9._~+/=\-]{8,}"), r"\1" + MASK),
)


def env_secrets(names: Iterable[str | None]) -> list[str]:
    """The values of the named environment variables that are long enough to be keys."""
    out = {os.environ.get(n) for n in names if isinstance(n, str) and n}
    return sorted((v for v in out if v and len(v) >= MIN_SECRET_LEN), key=len, reverse=True)


def config_secrets(config: object) -> list[str]:
    """The values of every `api_key_env` variable a job's config names, at any depth (a judge's key)."""
    names: list[str] = []
    todo = [config]
    while todo:  # a loop, not recursion: a config is data from disk
        obj = todo.pop()
        if isinstance(obj, dict):
            names.extend(v for k, v in obj.items() if k == "api_key_env" and isinstance(v, str))
            todo.extend(obj.values())
        elif isinstance(obj, list):
            todo.extend(obj)
    return env_secrets(names)


def _key_runs(text: str, secret: str) -> list[tuple[int, int]]:
    """Spans of `text` made of runs of >= KEY_RUN characters that also occur in `secret`."""
    if len(secret) < KEY_RUN:
        return [(m.start(), m.end()) for m in re.finditer(re.escape(secret), text)]
    grams = {secret[i:i + KEY_RUN] for i in range(len(secret) - KEY_RUN + 1)}
    spans: list[tuple[int, int]] = []
    for i in range(len(text) - KEY_RUN + 1):
        if text[i:i + KEY_RUN] in grams:  # every window of a shared run is a window of the key
            if spans and spans[-1][1] >= i:
                spans[-1] = (spans[-1][0], i + KEY_RUN)
            else:
                spans.append((i, i + KEY_RUN))
    return spans


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every >= 8-character run of a secret and every key-shaped token masked."""
    if not isinstance(text, str) or not text:
        return text
    for secret in secrets:
        if not secret:
            continue
        spans = _key_runs(text, secret)
        for start, end in reversed(spans):
            text = text[:start] + MASK + text[end:]
    for pattern, repl in _SHAPES:
        text = pattern.sub(repl, text)
    return text


def redact_obj(obj, secrets: Iterable[str] = ()):
    """`redact` applied to every string of a JSON-like value (keys included)."""
    secrets = list(secrets)
    if isinstance(obj, str):
        return redact(obj, secrets)
    if isinstance(obj, dict):
        return {redact_obj(k, secrets): redact_obj(v, secrets) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v, secrets) for v in obj]
    return obj
