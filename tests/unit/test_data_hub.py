"""Hub datasets load from the Hugging Face cache offline, through the same adapters and path."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from jobs.data import load_preferences_with_report
from tests.unit.train_configs import typed_dataset
from jobs.errors import JobFailure

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data"
COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


def put_snapshot(cache: Path, repo_id: str, source: Path, revision: str) -> None:
    repo = cache / f"datasets--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / revision).write_text(COMMIT)
    shutil.copytree(source, repo / "snapshots" / COMMIT)


def hub_cfg(source, revision, subsets=None, fmt="hh_rlhf"):
    return typed_dataset({"name": "hub", "format": fmt, "source": source, "revision": revision, "split": "train",
                          "subsets": subsets, "limit": None})


def test_hh_rlhf_from_the_cache_at_its_revision(cache):
    put_snapshot(cache, "Anthropic/hh-rlhf", FIX / "hh-rlhf", revision="v1")
    conf = hub_cfg("Anthropic/hh-rlhf", "v1", {"helpful": "helpful-base", "harmless": "harmless-base"})
    ds, report = load_preferences_with_report(conf, ["helpful", "harmless"], seed=0)
    assert report.total == 5 and report.dropped()["identical"] == 2
    assert report.parts[0].source == "Anthropic/hh-rlhf@v1/helpful-base (train)"
    with pytest.raises(JobFailure, match=r"^dataset hub: Anthropic/hh-rlhf@v2 is not in the Hugging Face cache .*"
                                         r"run `alignkit prefetch`"):
        load_preferences_with_report(replace(conf, revision="v2"), ["helpful"], seed=0)


def test_beavertails_from_the_cache(cache):
    put_snapshot(cache, "PKU-Alignment/PKU-SafeRLHF", FIX / "pku-saferlhf", revision="main")
    ds, report = load_preferences_with_report(hub_cfg("PKU-Alignment/PKU-SafeRLHF", "main", fmt="beavertails"),
                                              ["harmless"], seed=0)
    assert len(ds) == 3 and report.parts[0].rows == 7


def test_bad_row_in_a_hub_dataset_names_it(cache, tmp_path):
    (tmp_path / "src" / "helpful-base").mkdir(parents=True)
    shutil.copy(FIX / "bad" / "hh_missing_field.jsonl", tmp_path / "src" / "helpful-base" / "train.jsonl")
    put_snapshot(cache, "org/broken", tmp_path / "src", revision="main")
    with pytest.raises(JobFailure, match=r"^org/broken@main/helpful-base \(train\) row 2: field 'rejected' missing$"):
        load_preferences_with_report(hub_cfg("org/broken", "main"), ["helpful"], seed=0)
