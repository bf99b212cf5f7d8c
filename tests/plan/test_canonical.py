"""alignkit/plan/canonical.py gives the stdlib's JSON text byte for byte, so job ids do not move.

The compiler encodes each shared sub-config once (issue 22 item 7); an id computed that way must
equal the sha256 of `json.dumps(identity(config), sort_keys=True, separators=(",", ":"))`."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from alignkit.plan.canonical import Encoder
from alignkit.plan.compiler import load_plan
from alignkit.plan.ids import LABEL_KEYS, identity, job_id

ROOT = Path(__file__).resolve().parents[2]
LEAVES = [0, 1, -7, 2**70, 0.1, 5e-06, -0.0, 1e300, True, False, None, "", "a", "é ü", "\u2028", 'q"\\\n\t',
          "\x00\x1f", "😀", "name", "axes"]
KEYS = ["a", "b", "name", "axes", "tracking", "z", "é", "A", "a b", "10", "9", "paper_name", ""]


def tree(rng: random.Random, depth: int = 0):
    if depth > 3 or rng.random() < 0.3:
        return rng.choice(LEAVES)
    if rng.random() < 0.5:
        return [tree(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(KEYS): tree(rng, depth + 1) for _ in range(rng.randrange(5))}


@pytest.mark.parametrize("seed", range(20))
def test_same_text_as_the_stdlib(seed):
    rng = random.Random(seed)
    shared = [tree(rng) for _ in range(5)]
    canonical, plain = Encoder(canonical=True, drop=LABEL_KEYS), Encoder(canonical=False)
    for s in shared:
        canonical.share(s)
        plain.share(s)
    for _ in range(50):
        value = {rng.choice(KEYS): rng.choice(shared + [tree(rng)]) for _ in range(6)}
        want = json.dumps(identity(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        assert canonical.encode(value) == want
        assert plain.encode(value) == json.dumps(value, allow_nan=False)
        assert job_id(value, canonical) == job_id(value)


def test_the_stdlib_edge_cases():
    canonical, plain = Encoder(canonical=True, drop=LABEL_KEYS), Encoder(canonical=False)
    for value in [{"x": math.nan, "y": [math.inf, -math.inf]}, {1: "a", 2: {"name": 1}}, (1, (2, "3"))]:
        want = json.dumps(identity(value), sort_keys=True, separators=(",", ":"))
        assert canonical.encode(value) == want
    with pytest.raises(ValueError):
        plain.encode({"x": math.nan})
    with pytest.raises(TypeError):  # what JSON cannot hold fails as in the stdlib
        canonical.encode({"x": object()})
    with pytest.raises(TypeError):
        canonical.encode({1: "a", "b": 2})


@pytest.mark.parametrize("sweep", sorted(p.name for p in (ROOT / "sweeps").glob("*.yaml")))
def test_compiled_ids_are_the_reference_hash(sweep, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    plan = load_plan(ROOT / "sweeps" / sweep)
    assert plan.jobs
    wrong = [j.name for j in plan.jobs if j.id != job_id(j.config)]
    assert not wrong, f"{len(wrong)} ids differ from job_id(config), e.g. {wrong[:3]}"
