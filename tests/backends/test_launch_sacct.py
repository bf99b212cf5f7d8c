"""sacct parsing on recorded output shapes (arrays, pending ranges, requeues, lag)."""

from __future__ import annotations

from alignkit.backends import sacct

# -X -D rows as sacct 22.05 prints them: requeued 5_0 twice, a pending range with a throttle,
# a range row that still lists a task whose own row exists, a raw id (lag), a plain job.
OUT = """\
5_0|ak.s.train.x|PREEMPTED|0:15|12|vm|None
5_0|ak.s.train.x|REQUEUED|0:15|3|vm|None
5_0|ak.s.train.x|RUNNING|0:0|7|vm|None
5_1|ak.s.train.x|FAILED|1:0|2|vm|None
5_[2-4,7%2]|ak.s.train.x|PENDING|0:0|0|None assigned|JobArrayTaskLimit
6_[0-1%2]|ak.s.eval.y|CANCELLED by 0|0:0|0|None assigned|JobHeldUser
6_0|ak.s.eval.y|COMPLETED|0:0|1|vm|JobHeldUser
9|ak.s.merge.z|OUT_OF_MEMORY|0:125|40|vm|None
garbage line
5_1.batch|batch|FAILED|1:0|2|vm|
"""


def test_parse_job_ids():
    assert sacct.parse_job_id("123_4") == [("123", 4)]
    assert sacct.parse_job_id("123") == [("123", None)]
    assert sacct.parse_job_id("123_[1,3-4%2]") == [("123", 1), ("123", 3), ("123", 4)]
    assert sacct.parse_job_id("123_4.batch") == [] and sacct.parse_job_id("") == []


def test_parse_rows():
    recs = sacct.parse(OUT)
    assert recs[("5", 0)].state == "RUNNING" and recs[("5", 0)].restarts == 2 and recs[("5", 0)].elapsed_s == 7
    assert recs[("5", 1)].state == "FAILED" and recs[("5", 1)].exit_code == "1:0"
    assert [recs[("5", i)].reason for i in (2, 3, 4, 7)] == ["JobArrayTaskLimit"] * 4
    assert recs[("5", 2)].node is None and not recs[("5", 2)].exact
    assert recs[("6", 0)].state == "COMPLETED" and recs[("6", 0)].exact  # own row beats the range row
    assert recs[("6", 1)].state == "CANCELLED" and not recs[("6", 1)].exact
    assert recs[("9", None)].state == "OUT_OF_MEMORY"
    assert ("5", 5) not in recs and len(recs) == 9


def test_command_is_one_call_for_all_arrays():
    cmd = sacct.command({"12", "3", "7"})
    assert cmd[:6] == ["sacct", "-n", "-P", "-X", "-D", "-j"] and cmd[6] == "3,7,12"


def test_empty_output_is_lag_not_error():
    assert sacct.parse("") == {}
    assert sacct.query([]) == {}
