"""sweeps/full.yaml compiles to the same jobs as before a refactor (issue 13's "Must show").

Job ids are content hashes of the resolved configs: a changed id means a changed job (reruns, and
results no longer comparable). A config holds absolute local paths (full.yaml's ../data/red-instruct)
and its upstream jobs' ids, so the ids depend on where the checkout sits; the golden list therefore
holds *location-free* ids: the same hash over the config with the checkout's path replaced by
"/checkout" and each upstream id by its own location-free id. In /work/main they were computed
from the real ids' configs; anywhere else (CI's clone) they are the same.
tests/plan/golden/full_ids.tsv: regenerate only for a result-affecting change, naming each job."""

from __future__ import annotations

import json
from pathlib import Path

from alignkit.contract.serial import to_json
from alignkit.plan.compiler import load_plan
from alignkit.plan.ids import job_id

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden") / "full_ids.tsv"


def location_free_ids(jobs) -> dict[str, str]:
    """Real id -> location-free id, upstream jobs first (a plan lists them before their dependents)."""
    free: dict[str, str] = {}
    for j in jobs:
        text = json.dumps(to_json(j.config), sort_keys=True).replace(str(ROOT), "/checkout")
        for up, up_free in free.items():
            if up in text:
                text = text.replace(f'"{up}"', f'"{up_free}"')
        free[j.id] = job_id(json.loads(text))
    return free


def test_full_yaml_jobs_unchanged():
    want = [line.split("\t") for line in GOLDEN.read_text().splitlines() if not line.startswith("#")]
    plan = load_plan(ROOT / "sweeps" / "full.yaml")
    free = location_free_ids(plan.jobs)
    got = [[free[j.id], j.stage, j.name, ",".join(free[d] for d in j.depends_on)] for j in plan.jobs]
    assert len(got) == len(want) == 1388
    by_name = {w[2]: w for w in want}
    changed = [f"{g[2]}: {by_name.get(g[2], ['(new)'])[0]} -> {g[0]}" for g in got if by_name.get(g[2]) != g]
    assert not changed, f"{len(changed)} jobs changed, e.g. {changed[:3]}"
