"""A `cancel` record names local jobs by id: it stops the attempts journaled before it, never a
resubmit made after it (found by the backend conformance suite: the resubmitted job was cancelled
again at once)."""

from __future__ import annotations

from alignkit.submit import journal
from alignkit.submit.localrun import _cancelled_since
from alignkit.submit.sweepdir import SweepDir


def _submission(token: str) -> dict:
    return {"type": "submission", "token": token, "stage": "train", "name": f"ak.t.local.{token}",
            "executor": "local", "array_job_id": None, "jobs": {"job1": None}, "waits_on": {}, "hold": False}


def test_a_cancel_stops_earlier_local_attempts_only(tmp_path):
    sd = SweepDir.of(tmp_path)
    journal.append(sd, _submission("aaaaaaaaaa"))
    journal.append(sd, {"type": "cancel", "jobs": ["job1"], "sched_ids": [], "local_jobs": ["job1"]})
    journal.append(sd, _submission("bbbbbbbbbb"))
    jr = journal.load(sd)
    first, second = jr.attempts["job1"]
    assert first.key in jr.cancelled and second.key not in jr.cancelled
    records = sd.read_journal()
    assert _cancelled_since(records, "aaaaaaaaaa") == {"job1"}
    assert _cancelled_since(records, "bbbbbbbbbb") == set()
