"""`plan`'s warning when a benchmark's max_new_tokens leaves no room for its prompts in a model's context.

The eval job never cuts a prompt: each answer gets min(max_new_tokens, context - prompt tokens)
new tokens (jobs/eval/generate.py). When max_new_tokens alone reaches the context, every answer's budget
is capped by its prompt's length, which the spec's author should know (the paper's LLaMA-1 and
Vicuna-7B-v1.3 have 2048 positions, AlpacaEval's model configs ask for 2048 new tokens). The context
comes from the model's config.json, read only where it already is: a local model folder, or the
Hugging Face cache (no download; a model whose config is not there is not checked).
One line per (model, benchmark). Login-node side: json and the cache's layout only (contract/hub.py
`hub_snapshot`: huggingface_hub itself, ~50 ms of imports, is not loaded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from alignkit.plugins import benchmarks as benchmarks_reg
from alignkit.contract.hub import hub_snapshot
from alignkit.contract.sections import CONTEXT_KEYS



def model_context(source: str, revision: str) -> tuple[Optional[int], Optional[str]]:
    """(context, where config.json was read) of a local model folder or a cached hub model; (None, None)."""
    path: Optional[Path] = None
    if Path(source).is_dir():
        path = Path(source) / "config.json"
    else:
        try:
            snap = hub_snapshot(source, revision, "model")
        except (OSError, ValueError):  # not a repo id, an unreadable cache, ...: not checked
            return None, None
        path = snap / "config.json" if snap is not None else None
    if path is None or not path.is_file():
        return None, None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    for key in CONTEXT_KEYS:
        v = config.get(key) if isinstance(config, dict) else None
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v, str(path)
    return None, None


def warnings(jobs: list[Any], spec_path: Any) -> list[str]:
    """One line per (model, generating benchmark) whose max_new_tokens reaches the model's context."""
    seen: dict[tuple[str, str], str] = {}
    contexts: dict[tuple[str, Optional[str]], tuple[Optional[int], Optional[str]]] = {}
    checked: set[tuple[int, int]] = set()  # eval jobs share model and benchmark dicts: check each pair once
    for job in jobs:
        if job.stage != "eval":
            continue
        pair = (id(job.config.model), id(job.config.benchmarks))
        if pair in checked:
            continue
        checked.add(pair)
        model = job.config.model
        key = (str(model.source), model.revision)
        for name, b in job.config.benchmarks.items():
            if not benchmarks_reg.get(b.type).generates:
                continue
            if (model.name, name) in seen:
                continue
            if key not in contexts:
                contexts[key] = model_context(*key)
            context, where = contexts[key]
            max_new = benchmarks_reg.get(b.type).generation_length(b)
            if context is None or not max_new or max_new < context:
                continue
            seen[(model.name, name)] = (
                f"{spec_path}: evals.benchmarks.{name}.max_new_tokens: {max_new} leaves no room for its prompts "
                f"in model {model.name}'s {context}-token context ({where}); each answer gets "
                f"context - prompt tokens instead (docs/evaluation.md \"Generation evals\")")
    return list(seen.values())
