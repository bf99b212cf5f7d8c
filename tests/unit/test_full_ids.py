"""sweeps/full.yaml compiles to the same job ids as before a refactor (issue 13's "Must show").

Job ids are content hashes of the resolved configs: a changed id means a changed job (reruns, and
results no longer comparable). tests/unit/golden/full_ids.tsv holds the ids of the paper study;
regenerate it only for a result-affecting change and name each changed id in the commit."""

from __future__ import annotations

from pathlib import Path

from alignkit.compile import load_plan

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden") / "full_ids.tsv"


def test_full_yaml_job_ids_unchanged():
    want = [line.split("\t") for line in GOLDEN.read_text().splitlines() if not line.startswith("#")]
    plan = load_plan(ROOT / "sweeps" / "full.yaml")
    got = [[j.id, j.stage, j.name] for j in plan.jobs]
    assert len(got) == len(want) == 1388
    changed = [f"{w[2]}: {w[0]} -> {g[0]}" for w, g in zip(sorted(want, key=lambda r: r[2]),
                                                           sorted(got, key=lambda r: r[2])) if w != g]
    assert not changed, f"{len(changed)} job ids changed, e.g. {changed[:3]}"
    assert {tuple(r) for r in got} == {tuple(r) for r in want}
