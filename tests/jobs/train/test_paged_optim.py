"""jobs.train.paged_optim: a resumed bitsandbytes paged optimizer gets paged states back, values unchanged.

Paging needs CUDA (bnb allocates unified memory); here the one CUDA-only piece, the allocation in
`get_state_buffer`, is replaced by a plain tensor flagged `is_paged` as bnb flags its paged tensors.
The optimizer, its state_dict/load_state_dict round trip and its step are bnb's real ones (CPU
backend). The GPU check (bench/gpu_pitfalls.py) runs the same on CUDA with real paging."""

from __future__ import annotations

import io

import pytest

torch = pytest.importorskip("torch")
bnb = pytest.importorskip("bitsandbytes")

from jobs.train.paged_optim import RepageOnResume, repage_states  # noqa: E402


class _FakePaging(bnb.optim.PagedAdamW32bit):
    def get_state_buffer(self, p, dtype=torch.float32):
        buf = torch.zeros_like(p, dtype=dtype)
        if p.numel() >= 1e5:  # bnb's threshold; it registers each paged buffer with its page manager
            self.page_mng.paged_tensors.append(buf)
        return buf

    def prefetch_state(self, p):
        pass  # a CUDA prefetch hint for paged tensors (cudaMemPrefetchAsync); nothing to do on CPU


def _paged(opt, t) -> bool:
    return any(t is x for x in opt.page_mng.paged_tensors)


def _run(steps_before: int, resume: bool):
    torch.manual_seed(0)
    big = torch.nn.Parameter(torch.randn(400, 300))  # 120k elements: over bnb's paging threshold
    small = torch.nn.Parameter(torch.randn(10, 10))
    opt = _FakePaging([big, small], lr=1e-2)

    def step(i):
        big.grad = torch.full_like(big, 1e-3 * (i + 1))
        small.grad = torch.full_like(small, 1e-3 * (i + 1))
        opt.step()

    for i in range(steps_before):
        step(i)
    if resume:
        buf = io.BytesIO()  # as the Trainer does: optimizer.pt written, then torch.load-ed
        torch.save(opt.state_dict(), buf)
        buf.seek(0)
        saved = torch.load(buf, weights_only=True)
        opt = _FakePaging([big, small], lr=1e-2)
        opt.load_state_dict(saved)
    return big, small, opt, step


def test_load_state_dict_unpages_and_repage_restores_it():
    big, small, opt, step = _run(2, resume=True)
    assert not _paged(opt, opt.state[big]["state1"])  # bnb's load_state_dict: copies, not paged buffers
    before = {k: v.clone() for k, v in opt.state[big].items() if torch.is_tensor(v)}
    assert repage_states(opt) == 2  # state1 and state2 of the big parameter; the small one stays
    assert all(_paged(opt, opt.state[big][k]) for k in ("state1", "state2"))
    assert not _paged(opt, opt.state[small]["state1"])
    for k, v in before.items():
        assert torch.equal(opt.state[big][k], v)
    assert repage_states(opt) == 0  # idempotent


def test_resumed_and_repaged_step_equals_uninterrupted():
    big_a, small_a, opt_a, step_a = _run(2, resume=False)
    step_a(2)
    big_b, small_b, opt_b, step_b = _run(2, resume=True)
    cb = RepageOnResume()
    cb.on_train_begin(None, None, None, optimizer=opt_b)
    assert cb.moved == 2
    step_b(2)
    assert torch.equal(big_a, big_b) and torch.equal(small_a, small_b)


def test_not_a_paged_optimizer_is_left_alone():
    p = torch.nn.Parameter(torch.randn(400, 300))
    opt = torch.optim.AdamW([p])
    p.grad = torch.ones_like(p)
    opt.step()
    assert repage_states(opt) == 0
    unpaged = bnb.optim.AdamW32bit([p])
    assert repage_states(unpaged) == 0
