"""Hostile `targets:`: a regular file (/etc/passwd) or a link to /etc as an adapter or model target is
refused at plan in one located line that names the target (it passed submit's check and failed on the
cluster); submit's preflight names the target too and refuses a file as a model."""

from __future__ import annotations

import os

import pytest

from alignkit.cli.main import main
from alignkit.contract.hub import missing_assets
from alignkit.plan.preflight import spec_assets
from tests.fixtures import spec_fixtures as sf


def _spec(tmp_path, source: str, kind: str) -> dict:
    s = sf.base()
    s["targets"] = {"ext": {"source": source, "type": kind, "base": "m1", "axes": {"method": "dpo"}}}
    return s


@pytest.mark.parametrize("kind,what", [("adapter", "PEFT adapter"), ("model", "Hugging Face model")])
@pytest.mark.parametrize("where", ["file", "link_to_etc"])
def test_a_target_that_is_no_model_folder_is_refused_at_plan(tmp_path, capsys, kind, what, where):
    source = "/etc/passwd"
    if where == "link_to_etc":
        os.symlink("/etc", tmp_path / "weights")
        source = "./weights"
    path = sf.write(tmp_path, _spec(tmp_path, source, kind))
    # a file: refused at plan; a folder without its marker: refused at submit (plan warns, as for a missing path)
    argv = ["plan"] if where == "file" else ["submit", "--executor", "local", "--hold", "--skip-preflight"]
    assert main([*argv, str(path), "-o", str(tmp_path / "out")]) == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if "targets.ext" in ln or "Traceback" in ln]
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert f"{path}:" in err[0] and "targets.ext.source: target ext: local path" in err[0]
    marker = "adapter_config.json" if kind == "adapter" else "config.json"
    expect = (f"is a file, not a {what} folder (one that holds {marker})" if where == "file"
              else f"(/etc) has no {marker}: not a {what} folder")
    assert expect in err[0] and "m1" not in err[0].split("targets.ext.source:")[1]
    assert not (tmp_path / "out").exists()


def test_preflight_refuses_a_file_as_a_model_and_names_the_target(tmp_path):
    job = {"config": {"stage": "eval", "axes": {"model": "m1", "target": "ext"},
                      "model": {"name": "m1", "source": "/etc/passwd", "revision": "main"}, "target": {"kind": "base"}}}
    models, _ = spec_assets([job])
    assert [m["name"] for m in models] == ["target ext"]
    assert missing_assets(models, []) == ["model target ext: local path /etc/passwd is a file, not a Hugging Face "
                                          "model folder"]
    adapter = {"name": "target ext", "source": "/etc/passwd", "adapter": True}
    assert "is a file, not a Hugging Face PEFT adapter folder" in missing_assets([adapter], [])[0]
