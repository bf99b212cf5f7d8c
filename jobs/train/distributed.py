"""The distributed environment of a training job: one process per GPU (or per CPU rank), no torchrun.

SLURM starts every task itself (`srun`, one task per GPU); submitit's
`TorchDistributedEnvironment().export()` turns the SLURM variables into the ones torch reads
(RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT). A job started by
hand or by a test sets those variables directly. With none of them set the job is one process.

On a GPU-less machine the same code runs over gloo, with the fixes the ml-stack notes found:
  * accelerate finds no backend when DeepSpeed is asked for without CUDA and reports one process
    while DeepSpeed runs N ("train_batch_size ... 4 != 4 * 1 * 2"). We build
    `PartialState(backend="gloo")` ourselves (with ACCELERATE_USE_DEEPSPEED set when DeepSpeed is
    on) and the trainer reuses it (`accelerator_config={"use_configured_state": True}`); this
    works for ZeRO 0-3 ("Fix A").
  * DeepSpeed JIT-compiles a shared-memory all-reduce op on CPU (30-40 s, needs g++); we skip it
    and gloo does the collectives (DS_SKIP_SHM, on by default on CPU).
  * every process would otherwise start one OpenMP thread per core: OMP threads are split.
"""

from __future__ import annotations

import importlib
import os
import socket
from dataclasses import dataclass

_DIST_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    master_addr: str
    master_port: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def multi_process(self) -> bool:
        return self.world_size > 1


def read_env(env: dict[str, str] | None = None) -> DistEnv:
    """The distributed layout from torch-style variables, else SLURM's, else a single process."""
    env = dict(os.environ if env is None else env)
    if "WORLD_SIZE" in env or "RANK" in env:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
        local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)))
        return DistEnv(rank, local_rank, world, local_world, env.get("MASTER_ADDR", "127.0.0.1"),
                       int(env.get("MASTER_PORT", "29500")))
    ntasks = int(env.get("SLURM_NTASKS", "1"))
    if ntasks > 1 and "SLURM_JOB_ID" in env:
        # Inside an srun step without the exported variables: let submitit derive them (it parses
        # the node list for MASTER_ADDR and hashes the job id into MASTER_PORT, same on every task).
        from submitit.helpers import TorchDistributedEnvironment

        t = TorchDistributedEnvironment()
        return DistEnv(t.rank, t.local_rank, t.world_size, t.local_world_size, t.master_addr,
                       int(t.master_port))
    return DistEnv(0, 0, 1, 1, "127.0.0.1", 0)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup(dist: DistEnv, *, cuda: bool, deepspeed: bool) -> dict:
    """Export the variables torch/accelerate/DeepSpeed read, set thread counts, build the CPU
    process group when needed. Returns extra TrainingArguments for the trainer (maybe empty).

    Call before any TrainingArguments (TRL config) is built and before the model is loaded.
    """
    if not dist.multi_process and not deepspeed:
        _set_threads(dist, cuda)
        return {}  # nothing to export: accelerate would otherwise start a needless world-1 group
    port = dist.master_port or _free_port()
    local_rank = dist.local_rank
    if cuda:
        import torch

        # submitit's export(set_cuda_visible_devices=True) leaves each task one visible GPU while
        # LOCAL_RANK stays e.g. 3; DeepSpeed would then ask for cuda:3. Map onto what is visible.
        n = torch.cuda.device_count()
        if n and local_rank >= n:
            local_rank = local_rank % n
    os.environ.update({
        "RANK": str(dist.rank), "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(dist.world_size),
        "LOCAL_WORLD_SIZE": str(dist.local_world_size), "MASTER_ADDR": dist.master_addr,
        "MASTER_PORT": str(port),
    })
    _set_threads(dist, cuda)
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        if deepspeed and os.environ.get("DS_SKIP_SHM", "1") == "1":
            # `import deepspeed.comm.torch as m` would bind torch itself (name shadowing).
            importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
    if cuda or not dist.multi_process:
        return {}  # accelerate sets itself up from the variables (nccl on GPUs)
    from accelerate import PartialState

    # Fix A: a pre-built gloo state that reports the true world size, for DDP and ZeRO 0-3 alike.
    if deepspeed:
        os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    try:
        PartialState(backend="gloo")
    finally:
        os.environ.pop("ACCELERATE_USE_DEEPSPEED", None)
    return {"accelerator_config": {"use_configured_state": True}}


def _set_threads(dist: DistEnv, cuda: bool) -> None:
    # Unset, each of N processes on a node starts one OpenMP thread per core: a 2-process run on 2
    # cores took 45 s instead of 10 s. GPUs need few CPU threads per process.
    if "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        per_proc = max(1, cores // max(1, dist.local_world_size))
        os.environ["OMP_NUM_THREADS"] = str(min(per_proc, 8) if cuda else per_proc)
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def any_rank(flag: bool) -> bool:
    """True on every rank if `flag` is true on any rank (so all ranks stop at the same step)."""
    import torch
    import torch.distributed as tdist

    if not (tdist.is_available() and tdist.is_initialized()) or tdist.get_world_size() == 1:
        return flag
    device = "cuda" if tdist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return bool(t.item())


def barrier() -> None:
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1:
        tdist.barrier()


def teardown(clean: bool = True) -> None:
    """Leave the process group: without it rank 1 sometimes aborted at exit after a QLoRA + ZeRO-3
    run ("terminate called without an active exception"). After a failure we skip the barrier: the
    other ranks may never reach it."""
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized():
        try:
            if clean and tdist.get_world_size() > 1:
                tdist.barrier()
        finally:
            tdist.destroy_process_group()
        try:
            from accelerate.state import AcceleratorState

            AcceleratorState._reset_state(reset_partial_state=True)
        except Exception:  # accelerate missing or changed: nothing left to reset
            pass
