"""Keep a bitsandbytes paged optimizer paged across a resume.

bitsandbytes allocates the states of a paged optimizer (PagedAdamW32bit, the paper's
`paged_adamw_32bit`) in CUDA unified memory, so they can spill to host memory under pressure. The
HF Trainer resumes by `optimizer.load_state_dict(torch.load(optimizer.pt, map_location=device))`,
and bnb's `Optimizer8bit.load_state_dict` (bitsandbytes 0.50.2, optim/optimizer.py, `cast`) keeps
those tensors as plain device tensors: after a preemption every large state is an ordinary GPU
allocation and the resumed run needs more GPU memory than the uninterrupted one (seen on an H100,
docs/gpu.md; ../shared/docs/gpu-pitfalls.md "Paged AdamW across a resume").

`repage_states` moves each such state back into a buffer from the optimizer's own
`get_state_buffer` (the allocation bnb makes for a fresh state: paged when the parameter has at
least 1e5 elements), copying the values, so the optimizer's arithmetic is unchanged.
`RepageOnResume` does it at `on_train_begin`, which the Trainer calls after loading the optimizer
state (transformers 5.24, trainer.py `_prepare_for_training` then `on_train_begin`).
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback


def _bnb_optimizer(optimizer: Any) -> Any | None:
    # accelerate wraps the optimizer (AcceleratedOptimizer.optimizer); DeepSpeed keeps its own
    opt = getattr(optimizer, "optimizer", optimizer)
    if getattr(opt, "is_paged", False) and hasattr(opt, "get_state_buffer"):
        return opt
    return None


def repage_states(optimizer: Any) -> int:
    """Move a paged bnb optimizer's unpaged per-parameter states into paged buffers; returns how many."""
    import torch

    opt = _bnb_optimizer(optimizer)
    if opt is None:
        return 0
    # bnb lists every buffer it allocated paged in its page manager; a state tensor is paged only
    # if it is one of those (an `is_paged` attribute can survive a copy into ordinary memory)
    paged = {id(t) for t in opt.page_mng.paged_tensors}
    moved = 0
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p)
            if not state:
                continue
            for key, value in list(state.items()):
                if not torch.is_tensor(value) or id(value) in paged or value.shape != p.shape:
                    continue  # step counters, absmax/quantile maps, or already paged
                buf = opt.get_state_buffer(p, dtype=value.dtype)
                if not opt.page_mng.paged_tensors or opt.page_mng.paged_tensors[-1] is not buf:
                    continue  # below bnb's paging threshold, or on CPU: bnb would not page it either
                buf.copy_(value)
                state[key] = buf
                paged.add(id(buf))
                moved += 1
    return moved


class RepageOnResume(TrainerCallback):
    """Re-pages the optimizer's states once the Trainer has loaded them from a checkpoint."""

    def __init__(self) -> None:
        self.moved = 0

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        if optimizer is not None:
            self.moved = repage_states(optimizer)
