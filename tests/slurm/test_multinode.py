"""Two nodes × one process: the real training stage (tiny model, LoRA, DeepSpeed ZeRO-2 over gloo on
CPU) submitted with nodes=2 runs through sbatch → srun → the runner's distributed init (rank, world
size, MASTER_ADDR from SLURM's variables via submitit), one rank per node of the dev cluster's
`multinode` partition (slurm/dev-cluster/start.sh: the second node is a slurmd in its own network
and UTS namespace). Preempted by the urgent partition, it saves, is requeued and resumes from its
checkpoint to the result of an uninterrupted 2-node run (the tolerances of the unit resume tests).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from alignkit.plan.ids import job_id
from alignkit.plan.model import Job
from alignkit.plan.resources import Resources
from alignkit.submit.launch import submit
from alignkit.status.state import refresh
from alignkit.submit.sweepdir import SweepDir
from tests.slurm import fakeplan as fp
from tests.slurm.conftest import _required, wait_for
from tests.fixtures.train_configs import train_config

pytestmark = pytest.mark.slurm

PARTITION = "multinode"
STEPS = 300  # ~0.07 s a step on 2 idle cores: the preemption (1-3 s after sbatch) lands mid-training


@pytest.fixture(scope="module")
def two_nodes(cluster) -> list[str]:
    out = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-N", "-o", "%N"], capture_output=True, text=True).stdout
    nodes = sorted(set(out.split()))
    if len(nodes) < 2:
        msg = f"no 2-node partition {PARTITION!r} (slurm/dev-cluster/start.sh with SLURM_SECOND_NODE unset)"
        if _required():
            pytest.fail(msg)
        pytest.skip(msg)
    return nodes


def _train_job() -> Job:
    config = train_config("sft", "lora", max_steps=STEPS, save_steps=STEPS, deepspeed_stage=2, logging_steps=10)
    res = Resources(gpus=0, cpus=1, mem_gb=2, time_min=30, nodes=2, partition=PARTITION,
                    array_parallelism=1, estimate_min=2.0)
    return Job(id=job_id(config), name="mn", stage="train", depends_on=(), config=config, resources=res)


def _submit(sweep: Path) -> tuple[SweepDir, Path]:
    job = _train_job()
    submit(fp.plan(sweep, [job]))
    return SweepDir.of(sweep), sweep / "jobs" / job.id


def _final(sd: SweepDir, timeout: float):
    def ended():
        st = refresh(sd)
        return st if st.jobs[0].state not in ("PENDING", "RUNNING", "REQUEUED", "PREEMPTED") else None
    return wait_for(ended, timeout, "the 2-node job to end", every=2.0).jobs[0]


def _step(jd: Path) -> int:
    try:
        return int(json.loads((jd / "progress.json").read_text()).get("step") or 0)
    except (OSError, ValueError):
        return 0


def _task_logs(sweep: Path) -> list[Path]:
    """submitit's per-task stdout of every attempt (<sweep>/slurm/<job id>/<job id>_<rank>_log.out)."""
    return sorted((sweep / "slurm").glob("*/*_log.out"))


def _ranks(sweep: Path) -> dict[int, set[tuple[str, str]]]:
    """global rank -> {(hostname, node index)}, from the line submitit logs when each task starts."""
    seen: dict[int, set[tuple[str, str]]] = {}
    pat = re.compile(r"hostname=(\S+), local_rank=\d+\(1\), node=(\d+)\(2\), global_rank=(\d+)\(2\)")
    for out in _task_logs(sweep):
        for host, node, rank in pat.findall(out.read_text(errors="replace")):
            seen.setdefault(int(rank), set()).add((host, node))
    return seen


def _step_nodes(sweep: Path) -> set[str]:
    """NodeList of the 2-task srun steps SLURM ran for this sweep's job (every attempt), from sacct."""
    ids = {p.parent.name for p in _task_logs(sweep)}
    out = subprocess.run(["sacct", "-n", "-P", "-D", "-j", ",".join(sorted(ids)), "-o", "JobID,NodeList,NTasks"],
                         capture_output=True, text=True).stdout
    return {row.split("|")[1] for row in out.splitlines() if re.match(r"[\d_]+\.0\|", row) and row.split("|")[2] == "2"}


def _adapter(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path / "adapter_model.safetensors")


def test_two_node_zero2_training_is_preempted_requeued_and_resumes(two_nodes, sweep):
    pre_sd, pre = _submit(sweep / "preempted")
    wait_for(lambda: _step(pre) >= 2, 240, "2 training steps on 2 nodes", every=0.5)
    cpus = subprocess.check_output(["sinfo", "-h", "-p", "urgent", "-N", "-o", "%c"], text=True).split()[0]
    subprocess.check_call(["sbatch", "--parsable", "-p", "urgent", "-c", cpus, "-o", "/dev/null",
                           "--job-name", "ak-test-urgent", "--wrap", "sleep 2"], stdout=subprocess.DEVNULL)
    # the reference: the same job, uninterrupted, once the urgent job no longer preempts
    wait_for(lambda: (pre / "checkpoints" / ".resume").exists(), 120, "the preemption checkpoint", every=0.5)
    wait_for(lambda: not subprocess.check_output(["squeue", "-h", "-n", "ak-test-urgent"], text=True).strip(),
             120, "the urgent job to end")
    whole_sd, whole = _submit(sweep / "whole")
    for sd, jd in ((pre_sd, pre), (whole_sd, whole)):
        st = _final(sd, 420)
        assert st.state == "COMPLETED", (st, [p.read_text()[-2000:] for p in _task_logs(jd.parent.parent)])

    for jd in (pre, whole):  # one rank per node, on two different nodes, world size 2
        ranks = _ranks(jd.parent.parent)
        assert sorted(ranks) == [0, 1], ranks
        hosts = {host for r in ranks.values() for host, _ in r}
        assert {node for r in ranks.values() for _, node in r} == {"0", "1"}, ranks
        assert hosts == set(two_nodes) and all(len({h for h, _ in ranks[r]}) == 1 for r in ranks), ranks
        assert _step_nodes(jd.parent.parent) == {",".join(two_nodes)}
        m = json.loads((jd / "train_metrics.json").read_text())
        assert m["world_size"] == 2 and m["engine"] == "DeepSpeedEngine" and m["deepspeed_stage"] == 2, m

    resumed, ref = (json.loads((d / "train_metrics.json").read_text()) for d in (pre, whole))
    assert resumed["attempts"] == 2 and ref["attempts"] == 1, (resumed["attempts"], ref["attempts"])
    assert resumed["steps"] == ref["steps"] == STEPS
    assert 2 <= (resumed["resumed_from_step"] or 0) < STEPS and not ref["resumed_from_step"], resumed
    assert refresh(pre_sd).jobs[0].restarts >= 1  # sacct -D shows the preempted attempt
    assert [p["step"] for p in resumed["loss_curve"]] == [p["step"] for p in ref["loss_curve"]]
    assert [p["loss"] for p in resumed["loss_curve"]] == pytest.approx([p["loss"] for p in ref["loss_curve"]],
                                                                       rel=1e-5)
    ta, tb = _adapter(whole / "adapter"), _adapter(pre / "adapter")
    assert ta.keys() == tb.keys()
    assert max((ta[k].float() - tb[k].float()).abs().max().item() for k in ta) <= 1e-6
