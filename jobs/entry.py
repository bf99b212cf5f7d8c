"""Run one job of a sweep, given only its directory: `python -m jobs.entry <sweep>/jobs/<id>`.

The directory holds `config.json` (the resolved config, see docs/contract.md), read through the
typed contract (alignkit.contract.load: a config that does not match is a one-line error naming
the file and key); the stage module writes its results there. A failure leaves `error.json` with a one-line reason for `alignkit
status`; success leaves `DONE`, written last. `stop` is polled by long stages (training) at step
boundaries: when it is set they save a resumable checkpoint and raise `Preempted`.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
import traceback
from pathlib import Path

from alignkit import contract
from alignkit.contract import ContractError, paths
from alignkit.contract.stages import STAGES
from alignkit.contract.redact import config_secrets, redact
from alignkit.contract.errors import UserError
from alignkit.contract.fsio import atomic_write_json, atomic_write_text, read_json
from jobs.errors import JobFailure, Preempted


def stage_module(stage: str) -> str:
    """Stage S of the contract's table runs jobs/S/stage.py (the compute side names its own modules)."""
    return f"jobs.{stage}.stage"



def _offline_env() -> None:
    # Compute nodes often have no internet: everything was prefetched on the login node.
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[-1] if text else ""
    name = type(exc).__name__
    if "out of memory" in str(exc).lower() and "cuda" in str(exc).lower():
        return f"CUDA out of memory: {msg}"
    if isinstance(exc, UserError):  # a bad config.json (ContractError): the first line names the file and key
        return text[0] if text else name
    return msg if isinstance(exc, JobFailure) else f"{name}: {msg}"


def run_job(job_dir: str | os.PathLike, stop: threading.Event | None = None) -> str:
    """Run the job in `job_dir`; return "done" or "skipped" (already done). Raises on failure."""
    job_dir = Path(job_dir).resolve()
    if (job_dir / paths.DONE).exists():
        return "skipped"
    _offline_env()
    stop = stop or threading.Event()
    (job_dir / paths.ERROR).unlink(missing_ok=True)
    try:
        module, config = _stage(job_dir)
        module.run(job_dir, config, stop)
    except (Preempted, SystemExit, KeyboardInterrupt):
        raise  # requeued or stopped: not a failure of the job
    except BaseException as exc:  # record why, then let the scheduler see the failure
        values = _secrets(job_dir)
        reason, trace = redact(_one_line(exc), values), traceback.format_exc(limit=20)
        if _is_main_rank():
            atomic_write_json(job_dir / paths.ERROR, {
                "reason": reason, "type": type(exc).__name__,
                "time": time.time(), "traceback": redact(trace, values),
            })
        if redact(trace, values) != trace:  # key material in the error: the job log gets the redacted line only
            raise JobFailure(reason) from None
        raise
    if _is_main_rank():
        atomic_write_text(job_dir / paths.DONE, f"{time.time()}\n")
    return "done"


def _secrets(job_dir: Path) -> list[str]:
    """The values of every `api_key_env` variable the job's config names (a judge's key)."""
    try:
        return config_secrets(read_json(job_dir / paths.CONFIG))
    except (OSError, ValueError):
        return []


def _stage(job_dir: Path) -> tuple[object, object]:
    """The stage module and the config it takes: the typed config of its stage (alignkit.contract).
    "stage_module" (tests only, docs/slurm.md) runs a test stage through the real submission path
    with the plain config. This is the one place config.json's dict becomes the stage's typed config."""
    raw = read_json(job_dir / paths.CONFIG)
    if isinstance(raw, dict) and raw.get("stage_module"):
        return importlib.import_module(raw["stage_module"]), raw
    stage = raw.get("stage") if isinstance(raw, dict) else None
    if stage not in STAGES:
        raise ContractError(f"{job_dir / paths.CONFIG}: stage: unknown stage {stage!r} "
                            f"(known: {', '.join(STAGES)})")
    return importlib.import_module(stage_module(stage)), contract.parse(raw, str(job_dir / paths.CONFIG))


def _is_main_rank() -> bool:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m jobs.entry <sweep_dir>/jobs/<job-id>", file=sys.stderr)
        return 2
    try:
        print(run_job(argv[0]))
    except Preempted:
        print("preempted: checkpoint saved; run again to resume", file=sys.stderr)
        return 3
    except UserError as exc:  # bad input (ContractError): the config.json, not the job, is at fault
        print(f"job failed: {redact(_one_line(exc))}", file=sys.stderr)
        return 2
    except BaseException as exc:
        print(f"job failed: {redact(_one_line(exc))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
