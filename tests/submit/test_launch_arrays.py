"""Arrays that fit the cluster: chunks of at most MaxArraySize with element-wise dependencies
kept across chunks, dependency-closed waves under a queue limit, and the limits read from
recorded `scontrol show config` / `sacctmgr` output (SLURM 22.05 shapes)."""

from __future__ import annotations

import pytest

from alignkit.submit import launch
from alignkit.backends.base import Limits, describe_dependency
from alignkit.backends.slurm import cluster_limits, parse_config, sbatch_dependency
from tests.slurm import fakeplan as fp


def _study(n_train: int, merges: int = 0):
    trains = [fp.job(f"t{i:03d}", steps=1) for i in range(n_train)]
    # eval names sort in the opposite order of their trains: the wiring must realign them
    evals = [fp.job(f"e{n_train - i:03d}", stage="eval", deps=(t.id,), res=fp.resources("eval", time_min=20))
             for i, t in enumerate(trains)]
    ms = [fp.job(f"m{k}", stage="merge", deps=(trains[k].id, trains[-1 - k].id),
                 res=fp.resources("merge", time_min=10)) for k in range(merges)]
    return trains, evals, ms


def _queue(groups, first_id: int = 100):
    """Give each array an id as sbatch would; {job id: (array id, index)}, {array id: size},
    and each job's upstream job ids as SLURM will read its dependency string."""
    ids = {g.placeholder: str(first_id + n) for n, g in enumerate(groups)}
    where, size, members = {}, {}, {}
    for g in groups:
        arr = ids[g.placeholder]
        size[arr] = len(g.jobs)
        members[arr] = [j.id for j in g.jobs]
        for i, j in enumerate(g.jobs):
            where[j.id] = (arr, i if len(g.jobs) > 1 else None)
    waits: dict[str, set[str]] = {}
    for g in groups:
        dep = sbatch_dependency(g) or ""
        for ph, real in ids.items():
            dep = dep.replace(ph, real)
        for i, j in enumerate(g.jobs):
            if not dep:
                waits[j.id] = set()
            elif dep.startswith("aftercorr:"):
                up = dep.split(":", 1)[1]
                assert size[up] == len(g.jobs), "aftercorr needs equal sizes"
                waits[j.id] = {members[up][i]}  # SLURM: task i after task i of the other array
            else:
                got = set()
                for part in dep.split(":", 1)[1].split(":"):
                    arr, _, idx = part.partition("_")
                    got |= set(members[arr]) if not idx else {members[arr][int(idx)]}
                waits[j.id] = got
    return where, size, waits


@pytest.mark.parametrize("n,max_array", [(5, 2), (7, 3), (101, 101), (102, 101), (250, 101), (6, 1), (4, None)])
def test_chunks_fit_and_every_job_waits_on_exactly_its_inputs(tmp_path, n, max_array):
    trains, evals, merges = _study(n, merges=2 if n > 3 else 0)
    plan = fp.plan(tmp_path, [*evals, *merges, *trains])
    groups = launch.layout(plan, list(plan.jobs), {}, max_array)
    where, size, waits = _queue(groups)
    assert sorted(j.id for g in groups for j in g.jobs) == sorted(j.id for j in plan.jobs)  # each once
    assert all(s <= (max_array or n) for s in size.values())
    for j in plan.jobs:  # a union array dependency is narrowed later (scontrol update), never narrower
        assert set(j.depends_on) <= waits[j.id], j.name
        if j.stage == "eval":
            assert waits[j.id] == set(j.depends_on), j.name  # element-wise, across chunks
    n_chunks = -(-n // (max_array or n))
    corr = [g for g in groups if g.stage == "eval" and (sbatch_dependency(g) or "").startswith("aftercorr:")]
    # every eval chunk of more than one element uses aftercorr on the train chunk of equal size
    assert len(corr) == sum(1 for g in groups if g.stage == "eval" and len(g.jobs) > 1)
    assert len([g for g in groups if g.stage == "train"]) == n_chunks


def test_chunk_placeholders_and_names_are_unique(tmp_path):
    trains, evals, _ = _study(7)
    groups = launch.layout(fp.plan(tmp_path, trains + evals), trains + evals, {}, 3)
    assert [g.placeholder for g in groups] == [f"${{ARRAY_{i}}}" for i in range(6)]
    assert len({g.name for g in groups}) == len({g.token for g in groups}) == 6
    assert [len(g.jobs) for g in groups] == [3, 3, 1, 3, 3, 1]
    assert [sbatch_dependency(g) for g in groups[3:]] == ["aftercorr:${ARRAY_0}", "aftercorr:${ARRAY_1}", "afterok:${ARRAY_2}"]


def test_pending_inputs_from_an_earlier_submit_keep_their_task_ids(tmp_path):
    trains, evals, _ = _study(4)
    pending = {t.id: ("77", i) for i, t in enumerate(trains)}
    groups = launch.layout(fp.plan(tmp_path, evals), evals, pending, 2)
    deps = sorted(sbatch_dependency(g) for g in groups)
    assert deps == ["afterok:77_0:77_1", "afterok:77_2:77_3"] or deps == ["afterok:77_0:77_3", "afterok:77_1:77_2"]
    for g in groups:
        for j in g.jobs:
            assert g.waits_on[j.id] == [pending[j.depends_on[0]]]


def test_waves_take_whole_dependency_chains_up_to_the_budget(tmp_path):
    trains, evals, merges = _study(10, merges=3)
    plan = fp.plan(tmp_path, trains + evals + merges)
    now, later = launch.take_wave(plan, list(plan.jobs), 12)
    assert len(now) == 12 and len(later) == len(plan.jobs) - 12
    taken = {j.id for j in now}
    for j in now:
        assert all(d in taken for d in j.depends_on), f"{j.name} queued without its input"
    everything, none = launch.take_wave(plan, list(plan.jobs), None)
    assert len(everything) == len(plan.jobs) and not none
    # waves until done: each job exactly once, never before its inputs
    seen: set[str] = set()
    todo = list(plan.jobs)
    while todo:
        now, todo = launch.take_wave(plan, todo, 7)
        assert now and all(d in seen or d in {x.id for x in now} for j in now for d in j.depends_on)
        seen |= {j.id for j in now}
    assert seen == {j.id for j in plan.jobs}


CONFIG = """\
Configuration data as of 2026-11-27T11:00:00
AccountingStorageEnforce = associations,limits,qos
MaxArraySize            = 101
MaxJobCount             = 10000
MinJobAge               = 300
"""
ASSOC = "root|root|normal,small|normal||\nroot|root|small|normal|400|40\n"
QOS = "normal||||\nsmall|150|20|1000|\n"


def _count(mine_qos: int, mine: int, everyone: int):
    return lambda mine_only, qos: (mine_qos if qos else mine) if mine_only else everyone


def test_cluster_limits_from_recorded_output():
    cfg = parse_config(CONFIG)
    assert cfg["MaxArraySize"] == "101" and cfg["AccountingStorageEnforce"] == "associations,limits,qos"
    lim = cluster_limits(cfg, ASSOC, QOS, _count(30, 60, 500), want_qos="small")
    assert lim.max_array_size == 101
    assert lim.max_queued == 150 - 30  # QOS MaxSubmitJobsPerUser minus this user's jobs in that QOS
    assert lim.max_running == 20
    assert any("QOS small: MaxSubmitJobsPerUser=150" in n for n in lim.notes)
    lim = cluster_limits(cfg, ASSOC, QOS, _count(30, 380, 500), want_qos="small")
    assert lim.max_queued == 400 - 380  # the association's MaxSubmit is tighter now
    # default QOS (normal): only the association's MaxSubmit=400 and MaxJobCount apply
    lim = cluster_limits(cfg, ASSOC, QOS, _count(0, 30, 9800), want_qos=None)
    assert lim.max_queued == 10000 - 9800 and lim.max_running == 40
    # not enforced: SLURM ignores association/QOS limits, so do we; MaxArraySize still holds
    lax = parse_config(CONFIG.replace("associations,limits,qos", "none"))
    lim = cluster_limits(lax, ASSOC, QOS, _count(30, 30, 500), want_qos="small")
    assert lim.max_queued == 10000 - 500 and lim.max_array_size == 101 and lim.max_running is None
    assert cluster_limits({}, "", "", _count(0, 0, 0), None) == Limits()


def test_describe_limits_says_arrays_split_and_waves(tmp_path):
    trains, evals, _ = _study(250)
    plan = fp.plan(tmp_path, trains + evals)
    lines = launch.describe_limits(plan, Limits(max_array_size=101, max_queued=150, notes=("QOS small: x",)))
    text = "\n".join(lines)
    assert "2 group(s) exceed MaxArraySize=101: 6 arrays, each queued on its own" in text
    assert "500 jobs exceed the 150 you may queue now" in text and "waves of at most 150" in text
    assert launch.describe_limits(plan, Limits()) == []


def test_submit_names_dependencies_in_words(tmp_path):
    """issue 22 item 5: `submit` says "after train array 00 (element-wise)", never `${ARRAY_0}_50:...`."""
    trains, evals, ms = _study(150, merges=2)
    plan = fp.plan(tmp_path, trains + evals + ms)
    groups = launch.layout(plan, plan.jobs, {}, max_array=101)
    words = {g.placeholder: describe_dependency(g, groups) for g in groups}
    assert all("${" not in w and "afterok" not in w for w in words.values())
    evs = [g for g in groups if g.stage == "eval"]
    assert [words[g.placeholder] for g in evs] == ["after train array 00 (element-wise)",
                                                   "after train array 01 (element-wise)"]
    merge = next(g for g in groups if g.stage == "merge")
    assert words[merge.placeholder] == "after 2 tasks of train array 00, 2 tasks of train array 01"
    for n, g in enumerate(groups):  # once queued: by SLURM id
        g.array_job_id = str(500 + n)
    evs[0].resolve({g.placeholder: g.array_job_id for g in groups})
    assert describe_dependency(evs[0], groups) == "after train #500 (element-wise)"
    evs[0].elementwise, evs[0].after = None, [("500", None), ("77", [3, 4])]
    assert sbatch_dependency(evs[0]) == "afterok:500:77_3:77_4"
    assert describe_dependency(evs[0], groups) == "after all of train #500, 2 tasks of earlier array #77"
    evs[0].after = [(str(a), [0, 1, 2]) for a in range(600, 610)]
    assert describe_dependency(evs[0], groups) == "after 30 tasks of 10 arrays (earlier)"
