"""Answers whose new-token budget the model's context capped (eval.json entries' `capped`, jobs/eval/generate.py).

A capped answer had fewer than max_new_tokens new tokens available (context - prompt tokens); one
with `no_room` had none (its prompt alone fills the context: an empty answer). collect lists them in
capped.csv and counts them in its digest, so a table built on such answers is never read unawares.
"""

from __future__ import annotations

from typing import Any

from alignkit.contract import paths

COLUMNS = ("job_id", "name", "checkpoint", "benchmark", "n", "capped", "no_room", "context", "max_new_tokens",
           "min_budget")


def rows(study: Any) -> list[dict[str, Any]]:
    """One row per eval entry (job, checkpoint, benchmark) with at least one capped answer."""
    out = []
    for job in study.jobs.values():
        result = job.results.get(paths.EVAL) if job.stage == "eval" else None
        checkpoints = result.get("checkpoints") if isinstance(result, dict) else None
        for ck, entries in (checkpoints or {}).items():
            for bench, e in (entries or {}).items():
                if isinstance(e, dict) and isinstance(e.get("capped"), int) and e["capped"] > 0:
                    out.append({"job_id": job.id, "name": job.name, "checkpoint": ck, "benchmark": bench,
                                **{k: e.get(k) for k in COLUMNS[4:]}})
    return out


def digest(found: list[dict[str, Any]]) -> dict[str, int] | None:
    if not found:
        return None
    return {"entries": len(found), "answers": sum(r["capped"] for r in found),
            "no_room": sum(r.get("no_room") or 0 for r in found), "of": sum(r.get("n") or 0 for r in found)}
