"""The judge stage: score an eval job's generations for the judged benchmarks, on a CPU node.

Config (alignkit/contract/judge.py JudgeConfig; docs/contract.md "judge"):
  {"stage": "judge", "target": {"job": "<eval id>"},
   "benchmarks": {"red_instruct": {"type": "red_instruct", ..., "judge": {...}},
                  "alpaca_eval": {"type": "alpaca_eval", "source": ..., "judge": {...}}}}
  each "judge" a JudgeClientConfig (alignkit/contract/common.py), typed like the rest.

Reads `<sweep>/jobs/<eval id>/eval.json` and the generations it points to; writes `judge.json`
(same shape as eval.json) and each verdict under `verdicts/<checkpoint>/<benchmark>.jsonl`.
Judge replies are cached in `<sweep>/judge_cache/` (or $ALIGNKIT_JUDGE_CACHE), shared by every
judge job of the sweep, so a rerun or requeue asks the judge nothing it asked before (AlpacaEval:
the alpaca_eval package's own annotation cache, one file per eval job, under `alpaca_eval/`).
Verdicts are also kept in the sweep's result store (<sweep>/results/, alignkit/contract/eval.py),
keyed by the stored eval result they judge and the judge's settings: a judge job whose eval job
reused stored generations reuses their stored verdicts too (docs/evaluation.md "Result store").

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
from typing import Any

from alignkit.plugins import benchmarks as benchmarks_reg
from alignkit.plugins.benchmarks import JudgeContext
from alignkit.contract.eval import ResultStore, StoredResult, judge_key
from alignkit.contract import expect
from alignkit.contract.judge import JudgeConfig
from alignkit.contract.fsio import atomic_write_json, atomic_write_text, read_json
from alignkit.contract import paths as jobfiles
from jobs.errors import JobFailure, Preempted
from jobs.eval.stage import runs_at
from jobs.judge.judges import Judge, make_judge, redact, secrets
from jobs.eval.task_progress import TaskProgress


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


def _judge_field(b: Any, key: str) -> Any:
    """A field of the benchmark's judge block (None without one), for the provenance record."""
    return getattr(b.judge, key) if b.judge is not None else None


def run(job_dir: Path, config: JudgeConfig, stop: threading.Event) -> None:
    # a config the loader refuses never gets here: jobs/entry.py redacts its keys from the raw file
    expect(config, JudgeConfig, "jobs.judge.stage.run")
    values = secrets([b.judge for b in config.benchmarks.values()])
    with _redacting(values):
        _run(Path(job_dir), config, stop, values)


def _run(job_dir: Path, config: JudgeConfig, stop: threading.Event, values: list[str]) -> None:
    target = config.target.job
    eval_dir = job_dir.parent / target
    if not (eval_dir / jobfiles.DONE).exists() or not (eval_dir / jobfiles.EVAL).exists():
        raise JobFailure(f"eval job {target} has not finished: {eval_dir / jobfiles.EVAL} is not complete")
    evaluation = read_json(eval_dir / jobfiles.EVAL)
    benchmarks = config.benchmarks
    types = {name: benchmarks_reg.get(b.type) for name, b in benchmarks.items()}
    for name, b in benchmarks.items():
        if not types[name].judged:
            judged = [n for n in benchmarks_reg.BENCHMARKS.names() if benchmarks_reg.get(n).judged]
            raise JobFailure(f"config.json benchmarks.{name}.type: {b.type!r} is not judged "
                             f"(expected {' or '.join(judged)})")

    made: dict[Any, Judge] = {}  # one client (and one rate limit, one loaded model) per distinct judge block
    judges: dict[str, Judge | None] = {}
    for name, b in benchmarks.items():
        if not types[name].own_judge(b):
            judges[name] = None  # the benchmark's own package makes the requests itself
            continue
        if b.judge not in made:  # frozen: equal blocks hash alike
            made[b.judge] = make_judge(b.judge, cache_dir(job_dir), f"benchmarks.{name}.judge")
        judges[name] = made[b.judge]

    store = ResultStore(job_dir.parent.parent)
    ctx = JudgeContext(cache_dir=cache_dir(job_dir), eval_job=target)
    result: dict = {"checkpoints": {}, "provenance": {
        "eval_job": target,
        "judges": {n: {"name": j.name if j else f"openai:{_judge_field(benchmarks[n], 'base_url')}",
                       "key": j.key if j else None, "config_name": _judge_field(benchmarks[n], "name")}
                   for n, j in judges.items()},
        "cache_dir": str(cache_dir(job_dir)), "result_store": str(store.root), "requests_made": 0}}
    package_requests = 0
    progress = TaskProgress(job_dir, sum(runs_at(b, c) for c in evaluation["checkpoints"] for b in benchmarks.values()))
    for ckpt, entries in evaluation["checkpoints"].items():
        if stop.is_set():
            atomic_write_json(job_dir / jobfiles.JUDGE, result)
            raise Preempted("judge: stopped between checkpoints; verdicts so far are cached")
        out: dict[str, dict] = {}
        for name, b in benchmarks.items():
            if not runs_at(b, ckpt):  # not generated there either
                continue
            where = f"checkpoint {ckpt} benchmark {name}"
            if name not in entries or not entries[name].get("generations"):
                raise JobFailure(f"{where}: eval.json of {target} has no generations for it")
            vpath = job_dir / "verdicts" / ckpt / f"{name}.jsonl"
            progress.start(ckpt, name)
            # verdicts on the same stored generations by the same judge: reused, not asked again
            eval_key = entries[name].get("result_key")
            key, material = judge_key(eval_key, b.judge) if eval_key else (None, None)
            rec = store.get(key) if key else None
            if rec is not None:
                rows_file = store.rows_path(rec)
                text = rows_file.read_text(encoding="utf-8") if rows_file else ""
                atomic_write_text(vpath, text)
                out[name] = dict(rec.entry, verdicts=str(vpath.relative_to(job_dir)), result_key=key, reused=True,
                                 reused_from=rec.job)
                progress.done(sum(1 for line in text.splitlines() if line.strip()))
                continue
            rows = _read_rows(eval_dir / entries[name]["generations"], where)
            t0 = time.time()
            entry, verdicts = types[name].score(ctx, name, b, rows, judges[name])
            if judges[name] is None:
                package_requests += entry.get("requests_made", 0)
            entry["seconds"] = round(time.time() - t0, 3)
            atomic_write_text(vpath, redact("".join(json.dumps(v, ensure_ascii=False) + "\n" for v in verdicts),
                                            values))
            if key:
                store.put(StoredResult(key=key, stage="judge", material=material, job=job_dir.name, benchmark=name,
                                       checkpoint=ckpt, entry=entry), vpath)
            entry["verdicts"] = str(vpath.relative_to(job_dir))
            out[name] = dict(entry, result_key=key) if key else entry
            progress.done(len(verdicts))
        if out:
            result["checkpoints"][ckpt] = out
        result["provenance"]["requests_made"] = sum(j.requests_made for j in made.values()) + package_requests
        atomic_write_json(job_dir / jobfiles.JUDGE, result)
    atomic_write_json(job_dir / jobfiles.JUDGE, result)
