"""The judge stage: score an eval job's generations for the judged benchmarks, on a CPU node.

Config (docs/contract.md "judge"):
  {"stage": "judge", "target": {"job": "<eval id>"},
   "benchmarks": {"red_instruct": {"type": "red_instruct", ..., "judge": {...}},
                  "alpaca_eval": {"type": "alpaca_eval", "source": ..., "judge": {...}}}}

Reads `<sweep>/jobs/<eval id>/eval.json` and the generations it points to; writes `judge.json`
(same shape as eval.json) and each verdict under `verdicts/<checkpoint>/<benchmark>.jsonl`.
Judge replies are cached in `<sweep>/judge_cache/` (or $ALIGNKIT_JUDGE_CACHE), shared by every
judge job of the sweep, so a rerun or requeue asks the judge nothing it asked before (AlpacaEval:
the alpaca_eval package's own annotation cache, one file per eval job, under `alpaca_eval/`).

Secrets: while the stage runs, the value of every judge's `api_key_env` variable is replaced by
"[redacted]" in every log record (the alpaca_eval package and the openai client log their errors)
and in every error that leaves the stage, traceback included; an endpoint that echoes the key
cannot put it into error.json, the job log, or judge.json.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from alignkit.fsio import atomic_write_json, atomic_write_text, read_json
from jobs.errors import JobFailure, Preempted
from jobs.evaluate import runs_at
from jobs.judges import Judge, make_judge, redact, secrets
from jobs.safety import alpaca_eval, red_instruct

JUDGED_TYPES = ("red_instruct", "alpaca_eval")


def cache_dir(job_dir: Path) -> Path:
    env = os.environ.get("ALIGNKIT_JUDGE_CACHE")
    return Path(env) if env else Path(job_dir).parent.parent / "judge_cache"


def _read_rows(path: Path, where: str) -> list[dict]:
    if not path.is_file():
        raise JobFailure(f"{where}: generations file {path} is missing")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class _Redact(logging.Filter):
    def __init__(self, values: list[str]) -> None:
        super().__init__()
        self.values = values

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info:  # format the traceback now, redacted, instead of at emit time
            text += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = redact(text, self.values), None
        return True


@contextmanager
def _redacting(values: list[str]):
    """Redact secrets from log records and from any error leaving the block."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig()  # what the first logging.warning would do; now the filter has a handler
    filt = _Redact(values)
    handlers = list(root.handlers)
    for h in handlers:
        h.addFilter(filt)
    try:
        yield
    except (Preempted, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        full = "".join(traceback.format_exception(exc))
        if values and redact(full, values) != full:  # the key is in the message or a chained one
            lines = redact(f"{type(exc).__name__}: {exc}" if not isinstance(exc, JobFailure) else str(exc),
                           values).strip().splitlines()
            raise JobFailure(lines[-1] if lines else type(exc).__name__) from None
        raise
    finally:
        for h in handlers:
            h.removeFilter(filt)


def run(job_dir: Path, config: dict, stop: threading.Event) -> None:
    values = secrets([b.get("judge") for b in (config.get("benchmarks") or {}).values() if isinstance(b, dict)])
    with _redacting(values):
        _run(Path(job_dir), config, stop, values)


def _run(job_dir: Path, config: dict, stop: threading.Event, values: list[str]) -> None:
    job_dir = Path(job_dir)
    target = (config.get("target") or {}).get("job")
    if not target:
        raise JobFailure("config.json target.job: missing (the eval job whose generations to judge)")
    eval_dir = job_dir.parent / target
    if not (eval_dir / "DONE").exists() or not (eval_dir / "eval.json").exists():
        raise JobFailure(f"eval job {target} has not finished: {eval_dir / 'eval.json'} is not complete")
    evaluation = read_json(eval_dir / "eval.json")
    benchmarks = config.get("benchmarks") or {}
    for name, b in benchmarks.items():
        if b.get("type") not in JUDGED_TYPES:
            raise JobFailure(f"config.json benchmarks.{name}.type: {b.get('type')!r} is not judged "
                             f"(expected {' or '.join(JUDGED_TYPES)})")

    made: dict[str, Judge] = {}  # one client (and one rate limit, one loaded model) per distinct judge
    judges: dict[str, Judge | None] = {}
    for name, b in benchmarks.items():
        if b["type"] == "alpaca_eval" and (b.get("judge") or {}).get("type") == "openai":
            judges[name] = None  # the alpaca_eval package makes the requests itself
            continue
        key = json.dumps(b.get("judge"), sort_keys=True)
        if key not in made:
            made[key] = make_judge(b.get("judge"), cache_dir(job_dir), f"benchmarks.{name}.judge")
        judges[name] = made[key]
    refs = {name: alpaca_eval.load(b, f"benchmarks.{name}")
            for name, b in benchmarks.items() if b["type"] == "alpaca_eval"}

    result: dict = {"checkpoints": {}, "provenance": {
        "eval_job": target,
        "judges": {n: {"name": j.name if j else f"openai:{b['judge'].get('base_url')}", "key": j.key if j else None,
                       "config_name": (b.get("judge") or {}).get("name")}
                   for (n, j), b in zip(judges.items(), benchmarks.values(), strict=True)},
        "cache_dir": str(cache_dir(job_dir)), "requests_made": 0}}
    package_requests = 0
    for ckpt, entries in evaluation["checkpoints"].items():
        if stop.is_set():
            atomic_write_json(job_dir / "judge.json", result)
            raise Preempted("judge: stopped between checkpoints; verdicts so far are cached")
        out: dict[str, dict] = {}
        for name, b in benchmarks.items():
            if not runs_at(b, ckpt):  # not generated there either
                continue
            where = f"checkpoint {ckpt} benchmark {name}"
            if name not in entries or not entries[name].get("generations"):
                raise JobFailure(f"{where}: eval.json of {target} has no generations for it")
            rows = _read_rows(eval_dir / entries[name]["generations"], where)
            t0 = time.time()
            if b["type"] == "red_instruct":
                entry, verdicts = red_instruct.judge(rows, judges[name])
            else:
                entry, verdicts = alpaca_eval.score(rows, refs[name], b, b.get("judge") or {}, judges[name],
                                                    cache_dir(job_dir), target, f"benchmarks.{name}")
                package_requests += entry["requests_made"] if judges[name] is None else 0
            entry["seconds"] = round(time.time() - t0, 3)
            vpath = job_dir / "verdicts" / ckpt / f"{name}.jsonl"
            atomic_write_text(vpath, redact("".join(json.dumps(v, ensure_ascii=False) + "\n" for v in verdicts),
                                            values))
            entry["verdicts"] = str(vpath.relative_to(job_dir))
            out[name] = entry
        if out:
            result["checkpoints"][ckpt] = out
        result["provenance"]["requests_made"] = sum(j.requests_made for j in made.values()) + package_requests
        atomic_write_json(job_dir / "judge.json", result)
    atomic_write_json(job_dir / "judge.json", result)
