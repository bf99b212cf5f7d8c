"""training.num_train_epochs (issue 21 item 4): the steps are transformers' own count (checked against
its Trainer.set_initial_training_values on real DataLoaders), plan plans `num_train_epochs: 1`, shows
the steps where it can read the data, and refuses max_steps beside it; checkpoints stay in steps."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest

from alignkit.cli.main import main
from alignkit.contract.errors import SpecError
from alignkit.contract.sections import steps_for_epochs
from alignkit.plan.compiler import load_plan
from tests.fixtures.spec_fixtures import base, write
from tests.fixtures.written import written


def _transformers_steps(rows: int, per_device: int, grad_accum: int, epochs: float) -> int:
    torch = pytest.importorskip("torch")
    from transformers import Trainer, TrainingArguments

    loader = torch.utils.data.DataLoader(list(range(rows)), batch_size=per_device)  # drop_last False, as TRL's
    args = TrainingArguments(output_dir="unused", max_steps=-1, num_train_epochs=epochs,
                             per_device_train_batch_size=per_device, gradient_accumulation_steps=grad_accum,
                             report_to="none")
    stub = SimpleNamespace(get_total_train_batch_size=lambda a: per_device * grad_accum, get_sp_size=lambda: 1,
                           num_examples=lambda d: len(d.dataset))
    return Trainer.set_initial_training_values(stub, args, loader)[-1]  # its max_steps


@pytest.mark.parametrize("rows,per_device,grad_accum,epochs",
                         list(itertools.product([1, 7, 12, 100], [1, 3, 8], [1, 2, 4], [1, 2.5])))
def test_steps_are_transformers_count(rows, per_device, grad_accum, epochs):
    assert steps_for_epochs(rows, per_device * grad_accum, epochs) == _transformers_steps(rows, per_device,
                                                                                        grad_accum, epochs)


def test_steps_in_several_processes_are_the_same_rule():
    # accelerate shards each global batch over the ranks: ceil(rows / (per_device x world)) batches per rank
    rows, per_device, world, grad_accum = 1000, 4, 8, 2
    per_rank = math.ceil(rows / (per_device * world))
    assert steps_for_epochs(rows, per_device * world * grad_accum, 3) == 3 * math.ceil(per_rank / grad_accum)


def _spec(tmp_path, rows: int = 12, **training) -> dict:
    d = base()
    d.pop("merges")
    data = tmp_path / "helpful.jsonl"
    data.write_text("".join('{"prompt": "p%d", "chosen": "a", "rejected": "b"}\n' % i for i in range(rows)))
    d["datasets"] = {"mine": {"format": "normalized", "source": str(tmp_path), "files": {"helpful": str(data)}}}
    d["methods"]["dpo"].update(batch_size=8, per_device_batch_size=8)
    d["training"] = {"save_steps": 1, **training}
    d["evals"]["checkpoints"] = [2, "final"]
    d["grid"] = {"model": ["m1"], "dataset": ["mine"], "preference": ["helpful"], "method": ["dpo"],
                 "peft": ["lora"], "seed": [0]}
    return d


def test_num_train_epochs_plans_and_shows_the_steps(tmp_path, capsys):
    path = write(tmp_path, _spec(tmp_path, num_train_epochs=1))
    plan = load_plan(path)
    train = [j for j in plan.jobs if j.stage == "train"]
    assert len(train) == 1 and written(train[0])["training"]["num_train_epochs"] == 1
    assert "max_steps" not in written(train[0])["training"]  # the job counts them
    evals = [j for j in plan.jobs if j.stage == "eval"]
    assert evals and written(evals[0])["checkpoints"] == [2, "final"]
    assert main(["plan", str(path), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "1 epochs of 12 rows at batch 8 = at most 2 steps" in out


def test_max_steps_beside_epochs_is_refused_in_one_line(tmp_path):
    with pytest.raises(SpecError) as exc:
        load_plan(write(tmp_path, _spec(tmp_path, num_train_epochs=1, max_steps=10)))
    lines = str(exc.value).splitlines()
    assert len(lines) == 1 and "training.num_train_epochs: give max_steps or num_train_epochs, not both" in lines[0]


def test_epochs_must_be_positive(tmp_path):
    with pytest.raises(SpecError, match=r"training\.num_train_epochs: must be positive, got 0"):
        load_plan(write(tmp_path, _spec(tmp_path, num_train_epochs=0)))


def test_without_epochs_the_config_is_unchanged(tmp_path):
    plan = load_plan(write(tmp_path, _spec(tmp_path, max_steps=20)))
    cfg = written(next(j for j in plan.jobs if j.stage == "train"))["training"]
    assert cfg["max_steps"] == 20 and "num_train_epochs" not in cfg


def test_a_step_checkpoint_must_still_be_saved(tmp_path):
    with pytest.raises(SpecError, match=r"evals\.checkpoints\[0\]: step 3 is not a multiple of training\.save_steps 2"):
        d = _spec(tmp_path, num_train_epochs=2, save_steps=2)
        d["evals"]["checkpoints"] = [3, "final"]
        load_plan(write(tmp_path, d))


def test_epochs_sweep_as_a_dotted_axis(tmp_path):
    d = _spec(tmp_path)
    d["grid"]["training.num_train_epochs"] = [1, 2]
    trains = [j for j in load_plan(write(tmp_path, d)).jobs if j.stage == "train"]
    assert sorted(written(j)["training"]["num_train_epochs"] for j in trains) == [1, 2]
    assert all("max_steps" not in written(j)["training"] for j in trains)


def _eval_checkpoints(plan) -> list:
    return [written(j)["checkpoints"] for j in plan.jobs if j.stage == "eval"]


def test_fractions_of_training_are_the_steps_they_name(tmp_path):
    d = _spec(tmp_path, max_steps=20, save_steps=5)
    d["evals"]["checkpoints"] = [0.25, 0.5, "final"]
    as_fractions = load_plan(write(tmp_path, d))
    assert _eval_checkpoints(as_fractions) == [[5, 10, "final"]]
    d["evals"]["checkpoints"] = [5, 10, "final"]
    as_steps = load_plan(write(tmp_path, d))
    assert [j.id for j in as_fractions.jobs] == [j.id for j in as_steps.jobs]  # the same configs, the same ids


def test_fractions_follow_a_dotted_max_steps(tmp_path):
    d = _spec(tmp_path, max_steps=20, save_steps=5)
    d["evals"]["checkpoints"] = [0.5, "final"]
    d["grid"]["training.max_steps"] = [20, 40]
    assert sorted(_eval_checkpoints(load_plan(write(tmp_path, d)))) == [[10, "final"], [20, "final"]]


@pytest.mark.parametrize("checkpoints,training,message", [
    ([0.3, "final"], {"max_steps": 20, "save_steps": 5},
     "evals.checkpoints[0]: 0.3 of training is step 6: step 6 is not a multiple of training.save_steps 5"),
    ([0.33, "final"], {"max_steps": 20, "save_steps": 5},
     "evals.checkpoints[0]: 0.33 of training.max_steps 20 is not a whole step"),
    ([1.5], {"max_steps": 20, "save_steps": 5}, "evals.checkpoints[0]: a fraction of training is in (0, 1), got 1.5"),
    ([0.25, 5, "final"], {"max_steps": 20, "save_steps": 5}, "evals.checkpoints: duplicate checkpoints"),
    ([1.5], {"num_train_epochs": 1, "save_steps": 5}, "evals.checkpoints[0]: a fraction of training is in (0, 1)"),
    ([0.5, 0.5], {"num_train_epochs": 1, "save_steps": 5}, "evals.checkpoints: duplicate checkpoints"),
])
def test_a_fraction_that_names_no_saved_step_is_refused_in_one_line(tmp_path, checkpoints, training, message):
    d = _spec(tmp_path, **training)
    d["evals"]["checkpoints"] = checkpoints
    with pytest.raises(SpecError) as exc:
        load_plan(write(tmp_path, d))
    lines = str(exc.value).splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_with_epochs_a_fraction_stays_a_fraction_and_the_train_job_saves_its_step(tmp_path):
    d = _spec(tmp_path, num_train_epochs=1, save_steps=5)
    d["evals"]["checkpoints"] = [0.5, 5, "final"]
    jobs = load_plan(write(tmp_path, d)).jobs
    assert [written(j)["checkpoints"] for j in jobs if j.stage == "eval"] == [[0.5, 5, "final"]]  # the eval job maps it
    (train,) = [j for j in jobs if j.stage == "train"]
    assert written(train)["save_fractions"] == [0.5]


def test_fraction_free_studies_keep_their_ids(tmp_path):
    d = _spec(tmp_path, num_train_epochs=1, save_steps=5)
    d["evals"]["checkpoints"] = [5, "final"]
    jobs = load_plan(write(tmp_path, d)).jobs
    assert all("save_fractions" not in written(j) for j in jobs)
    d["evals"]["checkpoints"] = [0.5, 5, "final"]
    with_fraction = {j.stage: j.id for j in load_plan(write(tmp_path, d)).jobs}
    assert with_fraction["train"] != {j.stage: j.id for j in jobs}["train"]  # a new config, so a new id


@pytest.mark.parametrize("fraction,max_steps,step", [(0.5, 3, 2), (0.5, 4, 2), (0.1, 3, 1), (0.01, 50, 1),
                                                     (0.9, 2, 2), (0.25, 10, 3)])
def test_a_fraction_is_the_nearest_step_at_least_one(fraction, max_steps, step):
    from alignkit.contract.checkpoints import epoch_fraction_step

    assert epoch_fraction_step(fraction, max_steps) == step
