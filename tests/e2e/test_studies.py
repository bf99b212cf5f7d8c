"""The shipped studies' tiny counterparts (sweeps/tiny/) end to end on the local executor:
`alignkit submit --executor local` -> every job COMPLETED -> `alignkit collect` shows the swept
columns (and, for the rank/alpha search, the selection). Each is a few tiny runs of a few steps;
the sweeps they stand for are planned and checked in tests/unit/test_studies_plan.py."""

from __future__ import annotations

import pytest

from tests.e2e import studies

pytestmark = [pytest.mark.slow]


def test_tiny_model_size(sweep):
    studies.build_one_layer(sweep / "tiny-llama-1layer")
    spec = studies.copy_spec("model-size", sweep)
    sd, jobs = studies.run(spec)
    # 2 models x {sft, dpo} = 4 runs, each evaluated, + the 2 untrained models
    assert sorted(j.stage for j in jobs).count("train") == 4 and len(jobs) == 4 + 4 + 2
    rows, _ = studies.collect(sd.root)
    mmlu = [r for r in rows if r["benchmark"] == "mmlu" and r["value"]]
    assert {(r["model"], r["method"] or "original") for r in mmlu} == {
        (m, k) for m in ("tiny-2layer", "tiny-1layer") for k in ("sft", "dpo", "original")}
    # each size kept its own resources (the override per model)
    by_name = {j["name"]: j for j in studies.manifest(sd.root)["jobs"]}
    mem = {n.split("/")[0]: j["resources"]["mem_gb"] for n, j in by_name.items() if j["stage"] == "train"}
    assert mem == {"tiny-2layer": 3, "tiny-1layer": 2}
