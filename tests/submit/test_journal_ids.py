"""Journal ids are scheduler-neutral (`sched_ids`, `Attempt.sched_id`); a journal written before
the rename (`slurm_ids`) reads the same: a sweep outlives the code that queued it."""

from __future__ import annotations

import json

from alignkit.submit import journal
from alignkit.submit.sweepdir import SweepDir


def _write(sd: SweepDir, records: list[dict]) -> None:
    sd.root.mkdir(parents=True, exist_ok=True)
    sd.journal.write_text("".join(json.dumps({"time": 1.0, **r}) + "\n" for r in records))


def _records(ids_key: str) -> list[dict]:
    sub = {"type": "submission", "token": "tok0000001", "stage": "train", "name": "ak.s.train.tok0000001",
           "executor": "slurm", "array_job_id": "41", "jobs": {"a": 0, "b": 1, "c": 2}, "waits_on": {},
           "hold": True, "folder": "/x/%j"}
    return [sub,
            {"type": "blocked", ids_key: ["41_0"], "reason": "dependency 41_9 FAILED"},
            {"type": "cancel", "jobs": ["b"], ids_key: ["41_1"], "local_jobs": []},
            {"type": "release", ids_key: ["41_2"], "tokens": []}]


def _summary(jr: journal.Journal) -> tuple:
    return jr.blocked, jr.cancelled, jr.released, [a.sched_id for a in jr.attempts.values() for a in a], jr.problems


def test_an_old_journal_with_slurm_ids_reads_like_a_new_one(tmp_path):
    old, new = SweepDir.of(tmp_path / "old"), SweepDir.of(tmp_path / "new")
    _write(old, _records("slurm_ids"))
    _write(new, _records("sched_ids"))
    got = _summary(journal.load(old))
    assert got == _summary(journal.load(new))
    blocked, cancelled, released, ids, problems = got
    assert blocked == {("41", 0): "dependency 41_9 FAILED"} and cancelled == {("41", 1)}
    assert released == {"41_2"} and ids == ["41_0", "41_1", "41_2"] and problems == []


def test_new_records_are_written_with_neutral_ids(tmp_path):
    from alignkit.backends.local import LocalBackend
    sd = SweepDir.of(tmp_path)
    _write(sd, [{"type": "submission", "token": "tok0000002", "stage": "train", "executor": "local",
                 "array_job_id": None, "jobs": {"a": None}, "waits_on": {}, "hold": True}])
    LocalBackend().release(sd, journal.load(sd).attempts["a"])
    last = sd.read_journal()[-1]
    assert last["type"] == "release" and "sched_ids" in last and "slurm_ids" not in last


def test_a_malformed_old_field_is_still_named_and_skipped(tmp_path):
    sd = SweepDir.of(tmp_path)
    _write(sd, [{"type": "blocked", "slurm_ids": "41_0"}, {"type": "cancel", "sched_ids": [3]}])
    jr = journal.load(sd)
    assert jr.records == [] and len(jr.problems) == 2
    assert all("'sched_ids'" in p for p in jr.problems), jr.problems
