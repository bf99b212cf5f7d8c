"""Cross-field checks of a sweep spec that the types alone cannot express: each problem one
line naming the YAML path (collected in Problems, raised together by load_spec).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from alignkit.plugins.benchmarks import check as check_benchmark
from alignkit.plugins.methods import METHODS
from alignkit.contract.methods import check_common
from alignkit.contract.checkpoints import (FINAL, final_step, fraction_problem, fraction_step, planned_max_steps,
                                          unsaved_reason)
from alignkit.contract.schema import Problems, join
from alignkit.contract.stages import STAGE_NAMES
from alignkit.contract.sections import (DatasetSpec, TrainingSpec,
                                        tracking_store_path)
from alignkit.spec.model import (AXES, BEAVERTAILS_PREFERENCES, MAX_TIME_MIN, MERGE_METHODS, MethodSpec,
                                 RESERVED_PREFERENCES, RESOURCE_LIMITS, ResourceSpec, SEED_LIMIT,
                                 Spec, parse_time)
from alignkit.spec.paths import (DATA_FILE_SUFFIXES, HUB_DATA_DIR, EXPLICIT_LOCAL, resolved_path, checkout_problem,
                                 local_path_issues, output_dir_problem, resolve_source)
from alignkit.spec.axes import (PREFERENCE_NAME, values_of, check_axis_value, check_name, dotted_axis_problem,
                                is_dotted, swept_axes)


def check(spec: Spec, problems: Problems) -> None:
    """Cross-field checks that the types alone cannot express."""
    check_name(spec.name, "sweep name", "name", problems)
    bad_dir = output_dir_problem(spec.output_dir, Path.cwd()) if spec.output_dir is not None else None
    if bad_dir:
        problems.add("output_dir", bad_dir)
    if spec.max_jobs is not None and spec.max_jobs <= 0:
        problems.add("max_jobs", f"must be positive, got {spec.max_jobs}")
    trains = bool(spec.grid or spec.zip or spec.include) or not spec.targets  # a targets-only study trains nothing
    for section in ("models", "datasets", "methods", "peft"):
        mapping = getattr(spec, section)
        if not mapping and (trains or section == "models"):
            problems.add(section, f"'{section}' must define at least one entry")
        for key in mapping:
            check_name(key, "name", join(section, key), problems)
    for at, message in local_path_issues(spec)[0]:
        problems.add(at, message)
    for name, ds in spec.datasets.items():
        _check_dataset(spec, ds, join("datasets", name), problems)
    for name, m in spec.methods.items():
        p = join("methods", name)
        _check_method_entry(spec, name, m, p, problems)
        check_spec = getattr(METHODS.get(m.type)(), "check_spec", None)  # a method's cross-section refusals
        if check_spec is not None:
            check_spec(m, spec, p, problems)
    _check_training(spec, spec.training, "training", problems)
    if spec.training.eval_steps is not None and not any(ds.validation for ds in spec.datasets.values()):
        problems.add("training.eval_steps", "no dataset holds out validation rows (give a dataset "
                                            "validation: {split: ...} or {fraction: ...}), so nothing is evaluated")
    _check_chains(spec, problems)
    _check_grid(spec, problems)
    _check_evals(spec, problems)
    from alignkit.plan import lm_eval_metric  # reads task YAMLs: only when a benchmark is lm_eval

    lm_eval_metric.check(spec, problems)
    _check_merges(spec, problems)
    _check_targets(spec, problems)
    _check_select(spec, problems)
    _check_resources(spec, problems)
    _check_tracking(spec, problems)


def _check_dataset(spec: Spec, ds: DatasetSpec, p: str, problems: Problems) -> None:
    from alignkit.plugins import formats

    if ds.format != formats.AUTO and ds.format not in formats.names():
        problems.add(join(p, "format"), f"unknown data format {ds.format!r} (known: {formats.AUTO}, "
                                        f"{', '.join(formats.names())}; docs/data.md)")
        return
    if ds.limit is not None and ds.limit <= 0:
        problems.add(join(p, "limit"), f"must be positive, got {ds.limit}")
    if ds.subsets is not None:
        for pref in ds.subsets:
            pp = join(join(p, "subsets"), pref)
            if ds.format == "beavertails" and pref not in BEAVERTAILS_PREFERENCES:
                problems.add(pp, f"unknown preference '{pref}' (known: helpful, harmless: BeaverTails derives only "
                                 f"these two; give other preferences their own dataset)")
            else:
                _check_preference_name(pref, pp, problems)
    if ds.files is not None:
        fp = join(p, "files")
        if ds.format != formats.AUTO and not getattr(formats.get(ds.format), "FILES", True):
            problems.add(fp, f"'files' is not for the {ds.format} format (it names its folders in subsets)")
        if ds.subsets is not None:
            problems.add(fp, "give 'files' or 'subsets', not both")
        if not ds.files:
            problems.add(fp, "empty: map each preference to its file or hub data_dir")
        for pref, where in ds.files.items():
            _check_preference_name(pref, join(fp, pref), problems)
            local = where.startswith(EXPLICIT_LOCAL) or where.endswith(DATA_FILE_SUFFIXES)
            if not local and (not HUB_DATA_DIR.fullmatch(where) or ".." in where.split("/")):
                problems.add(join(fp, pref), f"{where!r} is neither a local file (.jsonl, .json, .parquet, .csv, "
                                             f".arrow; relative to the spec file) nor a hub data_dir")
    v = ds.validation
    if v is not None:
        vp = join(p, "validation")
        if (v.split is None) == (v.fraction is None):
            problems.add(vp, "give exactly one of split (the source's own, e.g. test) or fraction (held out, e.g. 0.02)")
        if v.split is not None and not _PLAIN_NAME.match(v.split):
            problems.add(join(vp, "split"), f"{v.split!r} is not a split name (letters, digits, _ . -)")
        if v.split is not None and v.split == ds.split:
            problems.add(join(vp, "split"), f"'{v.split}' is the training split too: validation rows must be held out")
        if v.fraction is not None and not 0 < v.fraction < 1:
            problems.add(join(vp, "fraction"), f"must be in (0, 1), got {v.fraction}")
        elif v.fraction is not None and v.fraction > MAX_VALIDATION_FRACTION:   # issue 23 class 7
            problems.add(join(vp, "fraction"), f"{v.fraction:g} holds out more rows than it trains on (at most "
                                               f"{MAX_VALIDATION_FRACTION:g}; near 1 no training rows are left)")
        if not 0 <= v.seed < SEED_LIMIT:
            problems.add(join(vp, "seed"), f"must be an integer in [0, 2^32), got {v.seed}")


MAX_VALIDATION_FRACTION = 0.5   # validation.fraction: the held-out share never exceeds the trained one


def _check_preference_name(pref: str, path: str, problems: Problems) -> None:
    if not PREFERENCE_NAME.fullmatch(pref):
        problems.add(path, f"preference {pref!r} must start with a letter or digit and be at most 64 letters, "
                           f"digits, '.', '_' or '-' ('+' joins the parts of a mixture)")
    elif pref in RESERVED_PREFERENCES:
        problems.add(path, f"'{pref}' is reserved (the untrained base models' rows)")


def _check_training(spec: Spec, t: TrainingSpec, p: str, problems: Problems) -> None:
    for key in ("max_steps", "save_steps", "logging_steps", "eval_steps", "num_train_epochs"):
        if getattr(t, key) is not None and getattr(t, key) <= 0:
            problems.add(join(p, key), f"must be positive, got {getattr(t, key)}")
    both = "training.max_steps" in spec.lines or (p != "training" and t.max_steps != spec.training.max_steps)
    if t.num_train_epochs is not None and both:
        problems.add(join(p, "num_train_epochs"), "give max_steps or num_train_epochs, not both (with epochs "
                                                  "the job counts the steps from the rows it keeps)")


def _check_dataset_section(spec: Spec, ds: DatasetSpec, p: str, problems: Problems) -> None:
    _check_dataset(spec, ds, p, problems)


def _check_method_section(spec: Spec, m: Any, p: str, problems: Problems) -> None:
    _check_method(m, p, problems)


# The checks a section's entry gets in the spec, re-run on an entry with a dotted axis in place
SECTION_CHECKS = {"dataset": _check_dataset_section, "method": _check_method_section, "training": _check_training}
# MLflow tracking URIs a job may be pointed at: a server, a file store, a database, Databricks.
TRACKING_URI = re.compile(r"(https?|file|sqlite|postgresql|mysql|databricks)://?[^\s]*|databricks")
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+:=/\-]{0,63}")  # W&B refuses tags over 64 characters


def _check_tracking(spec: Spec, problems: Problems) -> None:
    t = spec.tracking
    if t is None:
        return
    for key in ("project", "entity"):
        if getattr(t, key) is not None:
            check_name(getattr(t, key), key, join("tracking", key), problems)
    if t.entity is not None and t.backend != "wandb":
        problems.add("tracking.entity", f"entity is a W&B setting; remove it for backend {t.backend}")
    if t.tracking_uri is not None:
        if t.backend != "mlflow":
            problems.add("tracking.tracking_uri", f"tracking_uri is an MLflow setting; remove it for backend {t.backend}")
        elif not TRACKING_URI.fullmatch(t.tracking_uri):
            problems.add("tracking.tracking_uri", f"{t.tracking_uri!r} is not an MLflow tracking URI (http(s)://, "
                                                  f"file://, sqlite://, postgresql://, mysql:// or databricks)")
        else:  # a named store outside the sweep is the user's choice, but not inside the checkout (as output_dir)
            local = tracking_store_path(t.tracking_uri)
            bad = checkout_problem(t.tracking_uri, Path(resolved_path(spec.path.parent / local))) if local else None
            if bad:
                problems.add("tracking.tracking_uri", f"{bad}, as output_dir would be: name a store outside the "
                                                      f"checkout, or leave tracking_uri null (<sweep>/mlruns)")
    for i, tag in enumerate(t.tags):
        if not TAG.fullmatch(tag):
            problems.add(join("tracking.tags", i), f"tag {tag!r} must start with a letter or digit and be at most 64 "
                                                   f"letters, digits or '_.+:=/-'")


MAX_CHAIN = 32  # stages in one init_from chain: far beyond any study, and no walk over it goes deep


def _check_chains(spec: Spec, problems: Problems) -> None:
    """Chained stages: `init_from.method` names another method (or `init_from.adapter` an adapter that
    exists already), the chain has no cycle nor more than MAX_CHAIN stages, and a `continue` keeps
    training the upstream adapter, so its LoRA shape must be the upstream's."""
    too_long = False
    for name, m in spec.methods.items():
        if m.init_from is None:
            if m.init_mode != "continue":
                problems.add(join(join("methods", name), "init_mode"), "only a chained method (init_from) takes init_mode")
            continue
        ip = join(join("methods", name), "init_from")
        if not _check_init_from(spec, m.init_from, ip, problems):
            if m.init_from.adapter is not None and m.init_mode == "continue":
                _check_adapter_shape(spec, name, m, problems)
            continue
        p = join(ip, "method")
        up = m.init_from.method
        seen, at = [name], up
        while at is not None and at in spec.methods and at not in seen:
            seen.append(at)
            nxt = spec.methods[at].init_from
            at = nxt.method if nxt is not None else None
        if at is not None and at in seen:
            problems.add(p, f"init_from makes a cycle ({' > '.join(reversed(seen + [at]))}): a chain must start "
                            f"from a method without init_from")
            continue
        if len(seen) > MAX_CHAIN:
            if not too_long:  # one line for the whole chain, at its first method past the limit
                problems.add(p, f"init_from makes a chain of {len(seen)} stages ({seen[-1]} > ... > {name}); "
                                f"at most {MAX_CHAIN}")
            too_long = True
            continue
        if m.init_mode == "continue" and m.lora != spec.methods[up].lora:
            problems.add(join(join("methods", name), "lora"), f"init_mode continue keeps training method '{up}''s "
                                                               f"adapter: give it the same lora as '{up}' (or use "
                                                               f"init_mode: merge for a fresh adapter)")


def _check_adapter_shape(spec: Spec, name: str, m: Any, problems: Problems) -> None:
    """init_mode continue trains a local init_from.adapter as it is: its adapter_config.json must
    give the method's `lora` shape (r, alpha, target modules), which the run's config records. A
    folder that is missing or unreadable is the path check's (spec/paths.py); a hub adapter is read
    by the job only."""
    folder = resolve_source(spec.path.parent, m.init_from.adapter)
    try:
        raw = json.loads((Path(folder) / "adapter_config.json").read_text()) if os.path.isabs(folder) else None
    except (OSError, ValueError):
        return
    if not isinstance(raw, dict):
        return
    got = (raw.get("r"), raw.get("lora_alpha"), raw.get("target_modules"))
    targets = got[2] if isinstance(got[2], str) else sorted(got[2]) if isinstance(got[2], list) else got[2]
    if (got[0], got[1], targets) != (m.lora.r, m.lora.alpha, sorted(m.lora.target_modules)):
        problems.add(join(join("methods", name), "lora"),
                     f"init_mode continue trains init_from.adapter {m.init_from.adapter!r} as it is (r {got[0]}, "
                     f"alpha {got[1]}, target_modules {got[2]}): give lora that shape, or use init_mode: merge")


def _check_init_from(spec: Spec, f: Any, ip: str, problems: Problems) -> bool:
    """One `init_from` on its own: `method` or `adapter` (not both), the upstream axes it names
    known; True when it names an upstream method to walk the chain from."""
    named = [a for a in f.AXES if getattr(f, a) is not None]
    if f.adapter is not None:
        if f.method is not None:
            problems.add(join(ip, "adapter"), "init_from takes 'method' (a run of this study) or 'adapter' (one "
                                              "that exists already), not both")
        for a in named:
            problems.add(join(ip, a), f"'{a}' picks the upstream run of init_from.method; an adapter has no run")
        if not f.adapter.strip():
            problems.add(join(ip, "adapter"), "must be a local adapter folder or a hub id")
        if f.revision is not None and not _REVISION.fullmatch(f.revision):
            problems.add(join(ip, "revision"), f"{f.revision!r} is not a revision (a branch, tag or commit)")
        return False
    if f.revision is not None:
        problems.add(join(ip, "revision"), "only an init_from.adapter from the hub takes a revision")
    if f.method is None:
        problems.add(join(ip, "method"), f"init_from needs 'method' (one of: {', '.join(spec.methods)}) or "
                                         f"'adapter' (a local folder or hub id)")
        return False
    ok = True
    if f.method not in spec.methods:
        problems.add(join(ip, "method"), f"unknown method '{f.method}' (known: {', '.join(spec.methods)})")
        ok = False
    if f.dataset is not None and f.dataset not in spec.datasets:
        problems.add(join(ip, "dataset"), f"unknown dataset '{f.dataset}' (known: "
                                          f"{', '.join(spec.datasets) or 'none defined'})")
    for part in (f.preference.split("+") if f.preference is not None else ()):  # '+' joins a mixture's parts
        _check_preference_name(part, join(ip, "preference"), problems)
    if f.seed is not None and not 0 <= f.seed < SEED_LIMIT:
        problems.add(join(ip, "seed"), f"must be in [0, {SEED_LIMIT}), got {f.seed}")
    return ok


class _Kept(Problems):
    """Problems kept as (path, message, "field: message"), the last as override_section words them."""

    def __init__(self, prefix: str) -> None:
        super().__init__("", {})
        self.prefix, self.found = prefix, []

    def add(self, path: str, message: str) -> None:
        rest = path[len(self.prefix) + 1:] if path.startswith(self.prefix + ".") else ""
        self.found.append((path, message, f"{rest}: {message}" if rest else message))


def _check_method_entry(spec: Spec, name: str, m: MethodSpec, p: str, problems: Problems) -> None:
    """A method entry's own checks; where dotted axes replace some of its fields on every run that
    trains it, a problem that some swept value removes is left to the per-run check
    (spec/override.py), which names the run and value that keep it: `method.loss_type: [robust]`
    over an entry with label_smoothing is valid although the entry's default sigmoid loss is not."""
    kept = _Kept(p)
    _check_method(m, p, kept)
    swept = _swept_on_every_run(spec, "method", name) if kept.found else {}
    if swept:
        from alignkit.spec.override import override_section  # override builds on these checks

        for rest, values in swept.items():
            for value in values:
                _, found = override_section(spec, "method", name, {rest: value})
                kept.found = [one for one in kept.found if one[2] in found]
    for path, message, _ in kept.found:
        problems.add(path, message)


def _swept_on_every_run(spec: Spec, section: str, entry: str) -> dict[str, tuple]:
    """The fields of `section` entry that a dotted axis of the grid or a zip sets on every run
    training it ({field path: values}); {} where an include block may train it with the entry as
    written (include runs take no grid axis they do not name)."""
    for block in spec.include:
        if not isinstance(block, dict):
            return {}
        wanted = values_of(block.get(section, entry))  # a block naming no entry trains every one
        if entry in wanted and not any(a.startswith(section + ".") for a in block):
            return {}
    swept: dict[str, tuple] = {}
    for mapping in (spec.grid, *spec.zip):
        for axis, values in mapping.items():
            if is_dotted(axis) and axis.startswith(section + ".") and isinstance(values, (list, tuple)):
                swept[axis.partition(".")[2]] = tuple(values)
    return swept


def _check_method(m: MethodSpec, p: str, problems: Problems) -> None:
    check_common(m, p, problems)
    METHODS.get(m.type)().check(m, p, problems)


def _check_axis_list(spec: Spec, axis: str, values: tuple, path: str, problems: Problems,
                     repeats: bool = False) -> None:
    if not is_dotted(axis) and axis not in AXES:
        problems.add(path, f"unknown axis '{axis}' (known: {', '.join(AXES)}, or a dotted path such as method.beta)")
        return
    if is_dotted(axis) and not check_axis_value(spec, axis, None, path, problems):
        return
    if not values:
        problems.add(path, "axis has no values")
    seen: list[Any] = []
    for i, v in enumerate(values):
        if v in seen and not repeats:
            problems.add(join(path, i), f"duplicate value {v!r}")
        seen.append(v)
        if not is_dotted(axis):
            check_axis_value(spec, axis, v, join(path, i), problems)


def _check_grid(spec: Spec, problems: Problems) -> None:
    for axis, values in spec.grid.items():
        _check_axis_list(spec, axis, values, join("grid", axis), problems)
    zipped: set[str] = set()
    for gi, group in enumerate(spec.zip):
        gp = join("zip", gi)
        if not group:
            problems.add(gp, "an empty zip group (give it axes: axis: [values])")
        lengths = {len(v) for v in group.values()}
        if len(lengths) > 1:
            sizes = ", ".join(f"{a}: {len(v)}" for a, v in group.items())
            problems.add(gp, f"paired axes must have equal lengths ({sizes})")
        for axis, values in group.items():
            if axis in spec.grid or axis in zipped:
                problems.add(join(gp, axis), f"axis '{axis}' is given twice (in grid and zip, or in two zips)")
            zipped.add(axis)
            _check_axis_list(spec, axis, values, join(gp, axis), problems, repeats=True)  # zip pairs may repeat
        if len(lengths) == 1:
            rows = [json.dumps([group[a][i] for a in group], sort_keys=True, default=str) for i in range(lengths.pop())]
            for i, row in enumerate(rows):
                if row in rows[:i]:
                    problems.add(gp, f"row {i} repeats row {rows.index(row)} (the same run twice)")
    if spec.grid or spec.zip or not spec.targets:  # a targets-only study may leave the grid empty
        for axis in AXES:
            if axis not in spec.grid and axis not in zipped:
                problems.add("grid", f"axis '{axis}' has no values (give it in grid or zip)")
    swept = set(swept_axes(spec))
    for section in ("include", "exclude"):
        for i, entry in enumerate(getattr(spec, section)):
            ep = join(section, i)
            if not isinstance(entry, dict) or not entry:
                problems.add(ep, "expected a non-empty mapping of axis: value or [values]")
                continue
            for axis, value in entry.items():
                vals = values_of(value)
                if not vals:
                    problems.add(join(ep, axis), "empty list of values")
                if section == "exclude" and is_dotted(axis) and axis not in swept:
                    problems.add(join(ep, axis), f"axis '{axis}' is not swept (not in grid, zip or include)")
                    continue
                for j, v in enumerate(vals):
                    vp = join(join(ep, axis), j) if isinstance(value, list) else join(ep, axis)
                    if not check_axis_value(spec, axis, v, vp, problems):
                        break


def _check_select(spec: Spec, problems: Problems) -> None:
    s = spec.select
    if s is None:
        return
    swept = swept_axes(spec)
    metric_ok = bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:/\-]{0,127}", s.metric))
    if not metric_ok:
        problems.add("select.metric", f"{s.metric!r} is not a metric name (e.g. validation_loss, mmlu)")
    if not s.over:
        problems.add("select.over", "name the axes to choose among, e.g. [method.lora.r, method.lora.alpha]")
    for key in ("over", "by"):
        for i, axis in enumerate(getattr(s, key)):
            if axis not in swept:
                problems.add(join(join("select", key), i), f"'{axis}' is not an axis of this study "
                                                           f"(axes: {', '.join(swept)})")
        if len(set(getattr(s, key))) != len(getattr(s, key)):
            problems.add(join("select", key), "an axis is named twice")
    both = [a for a in s.over if a in s.by]
    if both:
        problems.add("select.by", f"'{both[0]}' is both chosen over and grouped by")
    if s.checkpoint != "final":
        _check_checkpoints(spec, (s.checkpoint,), "select.checkpoint", problems)
    if metric_ok:   # the metric, goal and loss rules (issue 25)
        from alignkit.plan import select_check

        select_check.check(spec, problems)


def _check_targets(spec: Spec, problems: Problems) -> None:
    for name, t in spec.targets.items():
        tp = join("targets", name)
        check_name(name, "target name", tp, problems)
        if t.base is not None and t.base not in spec.models:
            problems.add(join(tp, "base"), f"unknown model '{t.base}' (known: {', '.join(spec.models) or 'none defined'})")
        elif t.base is None and t.type == "adapter":
            problems.add(join(tp, "base"), "an adapter target needs 'base': the name in models it was trained on")
        if t.revision is not None and not _REVISION.fullmatch(t.revision):
            problems.add(join(tp, "revision"), f"{t.revision!r} is not a revision (a branch, tag or commit)")
        for axis, value in t.axes.items():
            ap = join(join(tp, "axes"), axis)
            if axis in ("model", "target"):
                problems.add(ap, f"'{axis}' is set by the target itself (its base model, its name)")
            elif not is_dotted(axis) and axis not in AXES:
                problems.add(ap, f"unknown axis '{axis}' (known: {', '.join(AXES)}, or a dotted path such as method.beta)")
            elif is_dotted(axis) and dotted_axis_problem(axis):
                problems.add(ap, dotted_axis_problem(axis))
            elif value is not None and not isinstance(value, (str, int, float, bool)):
                problems.add(ap, f"a label value is a string or a number, got {type(value).__name__}")


_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}")


def _check_checkpoints(spec: Spec, values: tuple, path: str, problems: Problems) -> None:
    last = planned_max_steps(spec.training)
    for i, c in enumerate(values):
        cp = join(path, i)
        if c == FINAL:
            continue
        if isinstance(c, float):  # a fraction of training: the step it names must be saved
            if bad := fraction_problem(c, spec.training):
                problems.add(cp, bad)
            elif last != math.inf and (reason := unsaved_reason(fraction_step(c, last), last,
                                                                spec.training.save_steps)):
                problems.add(cp, f"{c!r} of training is step {fraction_step(c, last)}: {reason}")
        elif not isinstance(c, int) or isinstance(c, bool) or c <= 0:
            problems.add(cp, f"a checkpoint is a positive step, a fraction of training in (0, 1) or 'final', got {c!r}")
        elif reason := unsaved_reason(c, last, spec.training.save_steps):
            problems.add(cp, reason)
    # with num_train_epochs a fraction stays a fraction (the job saves its step): compared as given
    steps = [c if fraction_step(c, last) is None else final_step(fraction_step(c, last), last) for c in values]
    if len(set(map(str, steps))) != len(steps):
        problems.add(path, "duplicate checkpoints (a fraction of training names the step it comes to)")


def _check_evals(spec: Spec, problems: Problems) -> None:
    ev = spec.evals
    _check_checkpoints(spec, ev.checkpoints, join("evals", "checkpoints"), problems)
    g = ev.generation
    if g is not None and g.agreement_prompts < 1:
        problems.add(join(join("evals", "generation"), "agreement_prompts"), f"must be 1 or more, got {g.agreement_prompts}")
    if g is not None and not 0 < g.agreement_threshold <= 1:
        problems.add(join(join("evals", "generation"), "agreement_threshold"),
                     f"must be in (0, 1], got {g.agreement_threshold}")
    last = planned_max_steps(spec.training)
    evaluated = {final_step(fraction_step(c, last), last) for c in ev.checkpoints}
    for name, j in ev.judges.items():
        jp = join(join("evals", "judges"), name)
        check_name(name, "judge name", jp, problems)
        if j.api_key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", j.api_key_env):
            problems.add(join(jp, "api_key_env"), f"{j.api_key_env!r} is not an environment variable name")
        if j.max_retries < 0:
            problems.add(join(jp, "max_retries"), f"must be zero or more, got {j.max_retries}")
        for key in ("timeout_s", "requests_per_minute"):
            if getattr(j, key) <= 0:
                problems.add(join(jp, key), f"must be positive, got {getattr(j, key)}")
        if j.type == "openai":
            for key in ("base_url", "model", "api_key_env"):
                if not getattr(j, key):
                    problems.add(join(jp, key), f"an openai judge needs '{key}'")
        elif not j.source:
            problems.add(join(jp, "source"), "an hf judge needs 'source' (hub id or local path)")
        if j.type == "openai" and j.revision is not None:
            problems.add(join(jp, "revision"), "'revision' pins an hf judge's model; an openai judge has none")
        price = j.price_per_million_tokens
        if price is not None:
            for key in ("input", "output"):
                if getattr(price, key) < 0:
                    problems.add(join(join(jp, "price_per_million_tokens"), key),
                                 f"must be zero or more, got {getattr(price, key)}")
    for name, b in ev.benchmarks.items():
        bp = join(join("evals", "benchmarks"), name)
        check_name(name, "benchmark name", bp, problems)
        check_benchmark(name, b, bp, ev.judges, problems)  # the type's own fields and checks
        if b.runs == "selected":  # a two-phase study's benchmark
            from alignkit.plan.select_check import check_runs
            check_runs(spec, name, b, bp, problems)
        if b.checkpoints is not None:
            cp = join(bp, "checkpoints")
            if not b.checkpoints:
                problems.add(cp, "empty: list steps and/or 'final', or remove the key to use evals.checkpoints")
            _check_checkpoints(spec, b.checkpoints, cp, problems)
            for i, c in enumerate(b.checkpoints):
                if isinstance(c, float) and any(a in ("training.max_steps", "training.num_train_epochs")
                                                for a in swept_axes(spec)):
                    problems.add(join(cp, i), "a benchmark's checkpoints give steps or 'final' when a dotted axis "
                                              "moves training.max_steps (fractions belong in evals.checkpoints, "
                                              "which each run converts with its own steps)")
                elif (c == "final" or isinstance(c, (int, float))) and fraction_step(c, last) is not None \
                        and final_step(fraction_step(c, last), last) not in evaluated:
                    problems.add(join(cp, i), f"checkpoint {c!r} is not in evals.checkpoints (a benchmark "
                                              f"runs at a subset of the checkpoints the eval jobs load)")


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MERGE_PARAMS = {
    "slerp": {"t"},
    "dare_ties": {"density", "weights", "lambda"},
    "dare_linear": {"density", "weights", "lambda"},
    "ties": {"density", "weights", "lambda"},
    "linear": {"weights"},
}


def _check_merges(spec: Spec, problems: Problems) -> None:
    names = set()
    for i, m in enumerate(spec.merges):
        mp = join("merges", i)
        check_name(m.name, "merge name", join(mp, "name"), problems)
        if m.name in names:
            problems.add(join(mp, "name"), f"duplicate merge name '{m.name}'")
        names.add(m.name)
        if m.method not in MERGE_METHODS:
            problems.add(join(mp, "method"), f"unknown merge method '{m.method}' (known: {', '.join(MERGE_METHODS)})")
            continue
        if not m.combine:
            problems.add(join(mp, "combine"), "name the axes whose values are merged, e.g. preference: [harmless, helpful]")
        n_inputs = 1
        for axis, values in m.combine.items():
            ap = join(join(mp, "combine"), axis)
            if axis == "model":
                problems.add(ap, "cannot combine across 'model': merged runs must share a base model")
                continue
            if is_dotted(axis):
                problems.add(ap, "combine names axes among preference, dataset, method, peft, seed (a dotted "
                                 "axis is kept apart: each of its values gets its own merges)")
                continue
            if len(values) < 2:
                problems.add(ap, "combine at least two values")
            _check_axis_list(spec, axis, values, ap, problems)
            n_inputs *= len(values)
        for axis, value in m.where.items():
            vals = values_of(value)
            for j, v in enumerate(vals):
                vp = join(join(join(mp, "where"), axis), j) if isinstance(value, list) else join(join(mp, "where"), axis)
                check_axis_value(spec, axis, v, vp, problems)
            if axis in m.combine:
                problems.add(join(join(mp, "where"), axis), f"axis '{axis}' is both combined and filtered")
        allowed = _MERGE_PARAMS[m.method]
        for key, value in m.parameters.items():
            pp = join(join(mp, "parameters"), key)
            if key not in allowed:
                problems.add(pp, f"unknown parameter '{key}' for {m.method} (known: {', '.join(sorted(allowed))})")
            elif key == "weights":
                if not isinstance(value, list) or len(value) != n_inputs or not all(
                        isinstance(w, (int, float)) and not isinstance(w, bool) for w in value):
                    problems.add(pp, f"weights must be a list of {n_inputs} numbers, one per input")
            elif not isinstance(value, (int, float)) or isinstance(value, bool):
                problems.add(pp, f"expected a number, got {value!r}")
            elif key in ("t", "density") and not (0 <= value <= 1 and (key == "t" or value > 0)):
                problems.add(pp, f"{key} must be in {'[0, 1]' if key == 't' else '(0, 1]'}, got {value}")
        if m.method == "slerp":
            if n_inputs != 2:
                problems.add(join(mp, "combine"), f"slerp merges exactly two models, this combines {n_inputs}")
            if "t" not in m.parameters:
                problems.add(join(mp, "parameters"), "slerp needs parameter 't' in [0, 1]")
        elif m.method != "linear" and "density" not in m.parameters:
            problems.add(join(mp, "parameters"), f"{m.method} needs parameter 'density' in (0, 1]")


def check_resource_fields(r: ResourceSpec, rp: str, problems: Problems) -> None:
    """One layer of resources: the spec's stages and overrides, and a profile's `defaults:`."""
    for key, (low, high) in RESOURCE_LIMITS.items():
        v = getattr(r, key)
        if v is not None and v < low:
            problems.add(join(rp, key), f"must be {'zero or more' if low == 0 else 'positive'}, got {v}")
        elif v is not None and v > high:
            problems.add(join(rp, key), f"{v} is beyond the largest accepted value {high} (a typo?)")
    for key in ("partition", "account", "qos"):
        if getattr(r, key) is not None:
            check_name(getattr(r, key), key, join(rp, key), problems)
    if r.constraint is not None and not CONSTRAINT.fullmatch(r.constraint):
        problems.add(join(rp, "constraint"), f"{r.constraint!r} is not a SLURM constraint (features joined by "
                                             f"& | , with [ ] * allowed; no spaces, quotes or $)")
    for key in ("time", "estimate"):
        v = getattr(r, key)
        if v is not None:
            try:
                minutes = parse_time(v)
            except ValueError as exc:
                problems.add(join(rp, key), str(exc))
                continue
            if minutes > MAX_TIME_MIN:
                problems.add(join(rp, key), f"{v!r} is more than a year ({MAX_TIME_MIN} minutes; a typo?)")


# A SLURM --constraint: feature names and its operators (& | , [ ] * and counts); it is written
# only into an `#SBATCH` line, yet spaces, quotes, '$', ';' and backquotes are refused all the same.
CONSTRAINT = re.compile(r"[A-Za-z0-9_.\-&|,\[\]*:]{1,256}")


def _check_resources(spec: Spec, problems: Problems) -> None:
    for stage in STAGE_NAMES:
        check_resource_fields(getattr(spec.resources, stage), join("resources", stage), problems)
    for i, o in enumerate(spec.resources.overrides):
        op = join(join("resources", "overrides"), i)
        check_resource_fields(o, op, problems)
        for axis, value in o.where.items():
            for v in values_of(value):
                check_axis_value(spec, axis, v, join(join(op, "where"), axis), problems)
