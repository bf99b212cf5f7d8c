"""The sweep spec: one YAML file describes a whole study (docs/spec.md is the reference).

Strict nested frozen dataclasses: a typo, a wrong type or a dangling reference fails loudly with
one line per problem naming the file, line and YAML path. Defaults are explicit here and in the
reference; `load_spec` returns a validated `Spec` or raises `SpecError`.
"""

from __future__ import annotations

import json
import os
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from alignkit.plugins.benchmarks import check as check_benchmark
from alignkit.plugins.benchmarks import reference_max_new_tokens as benchmark_reference_tokens
from alignkit.plugins.benchmarks import spec_class as benchmark_spec_class
from alignkit.plugins.methods import METHODS
from alignkit.contract.methods import CommonFields, LoraFields, check_common
from alignkit.schema import Problems, from_dict, is_missing, join, plain, read_yaml
from alignkit.datafile import file_problem

AXES = ("model", "dataset", "preference", "method", "peft", "seed")
# The sections of a run's resolved config that a dotted axis (`method.beta`) may path into, and
# the spec mapping each one's entries live in (training: one section for every run).
SECTIONS = {"model": "models", "dataset": "datasets", "method": "methods", "peft": "peft", "training": None}
# What a dataset provides when it lists no subsets/files: BeaverTails' built-in derivations
# (jobs/data/beavertails.py), HH-RLHF's two folders (jobs/data HH_SUBSETS)
BEAVERTAILS_PREFERENCES = ("helpful", "harmless")
HH_DEFAULT_PREFERENCES = ("helpful", "harmless")
RESERVED_PREFERENCES = ("original",)  # the base models' rows in collect
STAGES = ("train", "eval", "merge", "judge")
MERGE_METHODS = ("slerp", "dare_ties", "dare_linear", "ties", "linear")
Scalar = Union[str, int]

# A benchmark's generation length when its `max_new_tokens` is null: each reference's own setting
# (alpaca_eval 0.6.6 models_configs/*/configs.yaml; declare-lab/red-instruct generate_responses.py
# `max_new_tokens=500`; RealToxicityPrompts: 20, not stated in the paper). The jobs and plan's
# judge-cost estimate read it from here.
REFERENCE_MAX_NEW_TOKENS = benchmark_reference_tokens()  # each type's module: alignkit/plugins/benchmarks/<type>.py

# The checkout this code runs from: a sweep directory must never land in (or over) its packages.
CHECKOUT = Path(__file__).resolve().parent.parent
CHECKOUT_DIRS = ("alignkit", "jobs", "tests", "slurm", "docs", "requirements", "sweeps", "assets", "bench",
                 ".git", ".venv")
# Names reach job names, file names and sbatch scripts: a letter or digit first (so never '.',
# '..' or an option), then letters, digits, '.', '_', '+', '-'; fullmatch, so no trailing newline.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+\-]{0,63}")
SEED_LIMIT = 2**32  # numpy's seeds are 32-bit (transformers.set_seed seeds numpy too)
# Per-stage resources: (smallest, largest) accepted; larger values are typos, not requests.
RESOURCE_LIMITS = {"gpus": (0, 64), "cpus": (1, 4096), "mem_gb": (1, 65_536), "nodes": (1, 1024),
                   "array_parallelism": (1, 1_000_000)}
MAX_TIME_MIN = 366 * 24 * 60  # a year


@dataclass(frozen=True)
class ModelSpec:
    source: str  # hub id or local path (relative paths are relative to the spec file)
    revision: str = "main"
    template: Literal["vicuna", "mistral", "chat_template", "plain"] = "chat_template"
    kind: Literal["pretrained", "instruct"] = "instruct"
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    paper_name: Optional[str] = None  # the name the paper's tables use, for side-by-side tables
    # lm-eval benchmarks (MMLU, BBH) apply the tokenizer's chat template only when true: lm-eval
    # had no chat templates at the paper's time, so every model scores on the raw prompt by default
    lm_eval_chat_template: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    format: Literal["hh_rlhf", "beavertails", "normalized"]
    source: str
    revision: str = "main"
    split: str = "train"
    subsets: Optional[dict[str, str]] = None  # preference -> data_dir (HH-RLHF: helpful-base, ...)
    limit: Optional[int] = None  # rows kept after filtering and seeded shuffling; null = all
    # normalized format: preference -> its own file (relative to the spec file) or hub data_dir
    files: Optional[dict[str, str]] = None
    validation: Optional[ValidationSpec] = None  # a held-out split; null = no validation


@dataclass(frozen=True)
class ValidationSpec:
    """Validation rows: the source's own split (`split: test`) or a seeded held-out fraction."""

    split: Optional[str] = None
    fraction: Optional[float] = None
    seed: int = 0


# Methods come from the registry (alignkit/plugins/methods/, one file per method): the spec's `methods:`
# entries are parsed by their `type:` into that method's fields class (CommonFields + its own).
LoraSpec = LoraFields
MethodSpec = CommonFields


@dataclass(frozen=True)
class QuantSpec:
    bits: Literal[4] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    storage_dtype: Literal["bfloat16", "float16", "float32", "uint8"] = "bfloat16"


@dataclass(frozen=True)
class PeftSpec:
    quantization: Optional[QuantSpec] = None  # null = LoRA on the base in its dtype


@dataclass(frozen=True)
class TrainingSpec:
    max_steps: int = 700
    save_steps: int = 100
    deepspeed_stage: Literal[0, 1, 2, 3] = 0
    gradient_checkpointing: bool = True
    packing: bool = False
    precompute_ref_log_probs: bool = False
    # Opt-in: on the first H100 run (2026-11-27) the SFT first-step loss with Liger on was 3.5% away
    # from the same float32 job on CPU (0.088786 vs 0.092045) while the DPO loss matched (docs/gpu.md)
    liger: Literal["auto", "on", "off"] = "off"
    logging_steps: int = 10
    eval_steps: Optional[int] = None  # validation every N steps; null = save_steps (with validation only)


@dataclass(frozen=True)
class TrackingSpec:
    """An experiment tracker the training jobs report to (TRL's `report_to`); a label, not part of
    any job id. How each backend is wired: jobs/tracking.py, docs/training.md "Trackers"."""

    backend: Literal["tensorboard", "wandb", "mlflow"]
    project: Optional[str] = None  # W&B project / MLflow experiment; null = the sweep's name
    entity: Optional[str] = None  # W&B only: the team or user the runs are synced to
    tracking_uri: Optional[str] = None  # MLflow only; null = a file store in <sweep>/mlruns
    tags: tuple[str, ...] = ()  # extra tags on every run, beside the axes


@dataclass(frozen=True)
class PriceSpec:
    input: float  # US dollars per million prompt tokens
    output: float  # US dollars per million completion tokens


@dataclass(frozen=True)
class JudgeSpec:
    type: Literal["openai", "hf"]
    base_url: Optional[str] = None
    model: Optional[str] = None
    api_key_env: Optional[str] = None  # the variable's name; the key itself is never written
    source: Optional[str] = None  # hf judges: hub id or local path
    revision: Optional[str] = None  # hf judges: hub revision of `source` (null = main)
    max_retries: int = 5
    timeout_s: float = 60.0
    requests_per_minute: int = 60
    price_per_million_tokens: Optional[PriceSpec] = None  # for `plan`'s cost estimate only


# A benchmark: `type` plus the fields of every type in alignkit/plugins/benchmarks/ (one module per type,
# each with its own fields, defaults and checks); a field its type does not take is an error.
BenchmarkSpec = benchmark_spec_class()


@dataclass(frozen=True)
class GenerationSpec:
    """`evals.generation`: the engine of the generating benchmarks (docs/evaluation.md). Absent: hf,
    and the eval configs (and job ids) are what they were."""
    backend: Literal["hf", "vllm"] = "hf"
    agreement_prompts: int = 16  # vllm: the first prompts both engines answer at each checkpoint
    agreement_threshold: float = 0.9  # vllm: the least exact-match share of greedy answers


@dataclass(frozen=True)
class EvalSpec:
    checkpoints: tuple[Scalar, ...] = ("final",)  # steps (multiples of save_steps) and/or "final"
    base_models: bool = False  # also evaluate each untrained base model (the paper's "Original" rows)
    benchmarks: dict[str, BenchmarkSpec] = field(default_factory=dict)
    judges: dict[str, JudgeSpec] = field(default_factory=dict)
    generation: Optional[GenerationSpec] = None


@dataclass(frozen=True)
class MergeSpec:
    name: str
    method: str  # slerp | dare_ties | dare_linear | ties | linear (checked with a clear message)
    combine: dict[str, tuple[Scalar, ...]]  # axes that vary between inputs, e.g. preference: [harmless, helpful]
    parameters: dict[str, Any] = field(default_factory=dict)
    where: dict[str, Any] = field(default_factory=dict)  # only runs with these axis values
    evaluate: bool = True


@dataclass(frozen=True)
class ResourceSpec:
    gpus: Optional[int] = None
    cpus: Optional[int] = None
    mem_gb: Optional[int] = None
    time: Optional[Union[str, int]] = None  # "HH:MM:SS", "D-HH:MM:SS", "MM:SS" or minutes
    nodes: Optional[int] = None
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    array_parallelism: Optional[int] = None  # SLURM array throttle (%N)
    estimate: Optional[Union[str, int]] = None  # expected run time, for GPU-hour estimates


@dataclass(frozen=True)
class ResourceOverride:
    stage: Literal["train", "eval", "merge", "judge"]
    where: dict[str, Any] = field(default_factory=dict)
    gpus: Optional[int] = None
    cpus: Optional[int] = None
    mem_gb: Optional[int] = None
    time: Optional[Union[str, int]] = None
    nodes: Optional[int] = None
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    array_parallelism: Optional[int] = None
    estimate: Optional[Union[str, int]] = None


@dataclass(frozen=True)
class ResourcesSpec:
    train: ResourceSpec = ResourceSpec()
    eval: ResourceSpec = ResourceSpec()
    merge: ResourceSpec = ResourceSpec()
    judge: ResourceSpec = ResourceSpec()
    overrides: tuple[ResourceOverride, ...] = ()


@dataclass(frozen=True)
class SelectSpec:
    """Which configuration to pick per group (collect writes selection.csv)."""

    metric: str  # a tidy-table metric, or validation_loss / validation_<metric>
    goal: Literal["min", "max"]
    over: tuple[str, ...]  # the axes chosen among, e.g. [method.lora.r, method.lora.alpha]
    by: tuple[str, ...] = ()  # one choice per group of these axes
    checkpoint: Scalar = "final"


@dataclass(frozen=True)
class TargetSpec:
    """An adapter or full model that exists already: evaluated like a trained run, no training."""

    source: str  # local path (relative to the spec file) or hub id
    type: Literal["adapter", "model"] = "adapter"
    revision: Optional[str] = None
    base: Optional[str] = None  # adapters: the name in `models` they were trained on
    axes: dict[str, Any] = field(default_factory=dict)  # label values, e.g. method: dpo


@dataclass(frozen=True)
class Spec:
    name: str
    models: dict[str, ModelSpec]
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    methods: dict[str, MethodSpec] = field(default_factory=dict)
    # named axes (AXES) and dotted paths into a run's config (`method.beta`): values of any type
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    peft: dict[str, PeftSpec] = field(default_factory=lambda: {"lora": PeftSpec()})
    training: TrainingSpec = TrainingSpec()
    zip: tuple[dict[str, tuple[Any, ...]], ...] = ()  # paired axes, advanced together
    include: tuple[dict[str, Any], ...] = ()  # extra sub-grids (e.g. mixture runs)
    exclude: tuple[dict[str, Any], ...] = ()  # drop grid points matching every key
    evals: EvalSpec = EvalSpec()
    merges: tuple[MergeSpec, ...] = ()
    targets: dict[str, TargetSpec] = field(default_factory=dict)  # evaluated without training
    select: Optional[SelectSpec] = None
    resources: ResourcesSpec = ResourcesSpec()
    tracking: Optional[TrackingSpec] = None  # null: no tracker (train_metrics.json only)
    output_dir: Optional[str] = None  # default runs/<name>, relative to the current directory
    profile: Optional[str] = None  # cluster profile used when --profile is not given
    max_jobs: Optional[int] = None  # refuse a plan beyond this many jobs (null: $ALIGNKIT_MAX_JOBS or 1,000,000)
    description: str = field(default="", metadata={"free_text": True})
    # filled by load_spec, not by the YAML (init=False: a YAML key of that name is an unknown key)
    path: Path = field(default=Path("."), compare=False, init=False)
    text: str = field(default="", compare=False, init=False)
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False, init=False)

    def problems(self) -> Problems:
        return Problems(str(self.path), self.lines)


_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_time(value: Union[str, int]) -> int:
    """SLURM time formats → minutes (rounded up). Raises ValueError on a malformed value."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("must be positive")
        return value
    m = _TIME.match(str(value).strip())
    if not m:
        raise ValueError(f"malformed time {value!r} (use HH:MM:SS, D-HH:MM:SS or minutes)")
    days, a, b, c = m.groups()
    parts = [int(x) for x in (a, b, c) if x is not None]
    if any(p >= 60 for p in parts[1:]):
        raise ValueError(f"malformed time {value!r}: minutes and seconds must be below 60")
    if days is not None:  # D-HH[:MM[:SS]]
        h, mi, s = parts + [0] * (3 - len(parts))
        seconds = int(days) * 86400 + h * 3600 + mi * 60 + s
    elif len(parts) == 3:  # HH:MM:SS
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    elif len(parts) == 2:  # MM:SS, as SLURM reads it
        seconds = parts[0] * 60 + parts[1]
    else:  # MM
        seconds = parts[0] * 60
    if seconds <= 0:
        raise ValueError(f"time {value!r} must be positive")
    return -(-seconds // 60)


def load_spec(path: str | Path) -> Spec:
    """Read, type-check and cross-check a sweep spec. Raises SpecError with every problem."""
    path = Path(path)
    data, lines, text = read_yaml(path)
    problems = Problems(str(path), lines)
    if data is None:
        problems.add("", "the spec is empty")
        problems.raise_if_any()
    spec = from_dict(Spec, data, "", problems)
    if is_missing(spec):
        problems.raise_if_any()
    object.__setattr__(spec, "path", path.resolve())
    object.__setattr__(spec, "text", text)
    object.__setattr__(spec, "lines", lines)
    check(spec, problems)
    problems.raise_if_any()
    return spec


def axis_values(spec: Spec) -> dict[str, list[Scalar]]:
    """The names each axis may take: the keys of models/datasets/methods/peft, preferences, ints."""
    return {"model": list(spec.models), "dataset": list(spec.datasets), "method": list(spec.methods),
            "peft": list(spec.peft)}


# A dotted axis: a section of the run's config, then field names (`method.lora.r`)
_DOTTED = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+")
# A preference name: a NAME without '+', which joins the parts of a mixture
PREFERENCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def is_dotted(axis: str) -> bool:
    return "." in axis


def dotted_axis_problem(axis: str) -> str | None:
    if not _DOTTED.fullmatch(axis):
        return (f"'{axis}' is not a dotted axis (a section and field names in lower case, e.g. method.beta, "
                f"method.lora.r)")
    section = axis.split(".")[0]
    if section not in SECTIONS:
        return f"dotted axis '{axis}' starts with unknown section '{section}' (known: {', '.join(SECTIONS)})"
    for field_path, why in NOT_AXES.items():
        if axis == field_path or axis.startswith(field_path + "."):
            return why
    return None


# Fields that decide what a section entry is, not a value of it: sweeping them would give a run another
# entry's shape (an sft config labelled dpo); sweep the entries by name instead.
NOT_AXES = {"method.type": "'method.type' is not an axis: a method's type decides its fields; define one method "
                           "per type and sweep them by name (grid: {method: [sft, dpo]})",
            "method.init_from": "'method.init_from' is not an axis: chain methods in methods.NAME.init_from",
            "method.init_mode": "'method.init_mode' is not an axis: set it in methods.NAME.init_mode"}


def method_fields_class(type_name: str) -> type:
    """The dataclass of a method's fields by its type (dotted-axis checks convert with it): the
    registered method's (alignkit/plugins/methods/)."""
    return METHODS.get(type_name).fields


def section_class(spec: Spec, section: str, entry: Optional[str]) -> type:
    if section == "method":
        return method_fields_class(spec.methods[entry].type)
    return {"model": ModelSpec, "dataset": DatasetSpec, "peft": PeftSpec, "training": TrainingSpec}[section]


def section_entry(spec: Spec, section: str, entry: Optional[str]) -> Any:
    return spec.training if SECTIONS[section] is None else getattr(spec, SECTIONS[section])[entry]


class _Capture(Problems):
    """Problems kept as (path, message) pairs, to be re-told at the grid key that caused them."""

    def __init__(self) -> None:
        super().__init__("", {})
        self.found: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.found.append((path, message))


def override_section(spec: Spec, section: str, entry: Optional[str], values: dict[str, Any]) -> tuple[Any, list[str]]:
    """The section entry with `values` ({field path under the section: value}) in place, converted
    and checked exactly like the same fields written in the spec: (new entry, problems)."""
    obj = section_entry(spec, section, entry)
    data = plain(obj)
    for rest, value in values.items():
        node = data
        parts = rest.split(".")
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or parts[-1] not in node:
            return None, [f"{section} '{entry}' has no field '{rest}'" if entry else f"{section} has no field '{rest}'"]
        node[parts[-1]] = value
    capture = _Capture()
    new = from_dict(section_class(spec, section, entry), data, "", capture)
    if not is_missing(new):
        SECTION_CHECKS.get(section, lambda *_: None)(spec, new, "", capture)
    return new, [f"{p}: {m}" if p else m for p, m in capture.found]


def check_run(spec: Spec, sections: dict[str, Any], names: dict[str, str]) -> list[str]:
    """The spec-wide rules of a run's method re-checked on the run itself, its dotted axes in place:
    `sections` ({model, dataset, method, peft, training: resolved spec object}), `names` the run's
    entry names. A rule a section obeys applies to every resolved run, however its value arrived
    (e.g. ORPO refuses training.precompute_ref_log_probs whether the section or an axis sets it)."""
    check_spec = getattr(METHODS.get(spec.methods[names["method"]].type)(), "check_spec", None)
    if check_spec is None:
        return []
    one = dataclasses.replace(spec, training=sections["training"], models={names["model"]: sections["model"]},
                              peft={names["peft"]: sections["peft"]})
    capture = _Capture()
    check_spec(sections["method"], one, join("methods", names["method"]), capture)
    return [f"{p}: {m}" if p else m for p, m in capture.found]


def provided_preferences(ds: DatasetSpec) -> Optional[tuple[str, ...]]:
    """The preference names a dataset provides; None: any name (a normalized dataset without
    files or subsets serves its one set of rows to every preference, as before issue 13)."""
    if ds.files is not None:
        return tuple(ds.files)
    if ds.subsets is not None:
        return tuple(ds.subsets)
    if ds.format == "beavertails":
        return BEAVERTAILS_PREFERENCES
    if ds.format == "hh_rlhf":
        return HH_DEFAULT_PREFERENCES
    return None


def known_preferences(spec: Spec) -> Optional[list[str]]:
    """Every preference some dataset provides (None: any name is provided somewhere)."""
    known: dict[str, None] = {}
    for ds in spec.datasets.values():
        names = provided_preferences(ds)
        if names is None:
            return None
        known.update(dict.fromkeys(names))
    return list(known)


def check_axis_value(spec: Spec, axis: str, value: Any, path: str, problems: Problems) -> bool:
    if is_dotted(axis):  # its type is checked per run, against the field it replaces (compile.py)
        bad = dotted_axis_problem(axis)
        if bad:
            problems.add(path, bad)
        return bad is None
    if axis not in AXES:
        problems.add(path, f"unknown axis '{axis}' (known: {', '.join(AXES)}, or a dotted path such as method.beta)")
        return False
    if axis == "seed":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < SEED_LIMIT:
            problems.add(path, f"seed must be an integer in [0, 2^32), got {value!r}")
            return False
        return True
    if axis == "preference":
        known = known_preferences(spec)
        parts = str(value).split("+")
        bad = [p for p in parts if not PREFERENCE_NAME.fullmatch(p) or p in RESERVED_PREFERENCES
               or (known is not None and p not in known)]
        if bad or len(set(parts)) != len(parts) or not isinstance(value, str):
            names = ", ".join(known) if known is not None else "names the datasets provide"
            problems.add(path, f"unknown preference {value!r} (known: {names}, or a mixture of them such as "
                               f"a+b; datasets provide preferences by subsets, files or their format)")
            return False
        return True
    known = axis_values(spec)[axis]
    if value not in known:
        problems.add(path, f"unknown {axis} {value!r} (known: {', '.join(map(str, known)) or 'none defined'})")
        return False
    return True


def _values_of(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_name(value: str, what: str, path: str, problems: Problems) -> None:
    if not NAME.fullmatch(value):
        problems.add(path, f"{what} {value!r} must start with a letter or digit and be at most 64 letters, "
                           f"digits, '.', '_', '+' or '-'")


def checkout_problem(value: str, out: Path) -> str | None:
    """A place jobs write into (a sweep, a tracker's store) is never the checkout or its packages."""
    inside = [d for d in CHECKOUT_DIRS if out == CHECKOUT / d or (CHECKOUT / d) in out.parents]
    if inside:
        return f"{value!r} resolves to {out}, inside this checkout's {inside[0]}/ (refused)"
    if out == CHECKOUT or out in CHECKOUT.parents:
        return f"{value!r} resolves to {out}, which holds this checkout (refused)"
    return None


def output_dir_problem(value: str, base: Path) -> str | None:
    """A sweep directory is written into: never the checkout, its packages, or a regular file."""
    try:
        out = (base / os.path.expanduser(value)).resolve()
    except (RuntimeError, OSError):
        return f"{value!r} is a symlink loop"
    bad = checkout_problem(value, out)
    if bad:
        return bad
    if out.exists() and not out.is_dir():
        return f"{value!r} resolves to {out}, which is not a directory"
    return None


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
        _check_method(m, p, problems)
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
    _check_merges(spec, problems)
    _check_targets(spec, problems)
    _check_select(spec, problems)
    _check_resources(spec, problems)
    _check_tracking(spec, problems)


# a hub data_dir (a folder in the dataset repo): plain path parts, never '..'
_DATA_DIR = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*")
# a `files` value with one of these endings is a local file (missing: plan warns, submit refuses)
DATA_FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".arrow")


def _check_dataset(spec: Spec, ds: DatasetSpec, p: str, problems: Problems) -> None:
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
        if ds.format != "normalized":
            problems.add(fp, f"'files' is for the normalized format (a {ds.format} dataset names its folders in subsets)")
        if ds.subsets is not None:
            problems.add(fp, "give 'files' or 'subsets', not both")
        if not ds.files:
            problems.add(fp, "empty: map each preference to its file or hub data_dir")
        for pref, where in ds.files.items():
            _check_preference_name(pref, join(fp, pref), problems)
            local = where.startswith(_EXPLICIT_LOCAL) or where.endswith(DATA_FILE_SUFFIXES)
            if not local and (not _DATA_DIR.fullmatch(where) or ".." in where.split("/")):
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
    for key in ("max_steps", "save_steps", "logging_steps", "eval_steps"):
        if getattr(t, key) is not None and getattr(t, key) <= 0:
            problems.add(join(p, key), f"must be positive, got {getattr(t, key)}")


def _check_dataset_section(spec: Spec, ds: DatasetSpec, p: str, problems: Problems) -> None:
    _check_dataset(spec, ds, p, problems)


def _check_method_section(spec: Spec, m: Any, p: str, problems: Problems) -> None:
    _check_method(m, p, problems)


# The checks a section's entry gets in the spec, re-run on an entry with a dotted axis in place
SECTION_CHECKS = {"dataset": _check_dataset_section, "method": _check_method_section, "training": _check_training}


# MLflow tracking URIs a job may be pointed at: a server, a file store, a database, Databricks.
TRACKING_URI = re.compile(r"(https?|file|sqlite|postgresql|mysql|databricks)://?[^\s]*|databricks")
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+:=/\-]{0,63}")  # W&B refuses tags over 64 characters


def tracking_store_path(uri: str) -> Optional[str]:
    """The local path of an MLflow file store (file:) or SQLite database (sqlite:///rel, sqlite:////abs);
    None for a server or another database."""
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    if uri.startswith("file:"):
        return url2pathname(urlparse(uri).path)
    if uri.startswith("sqlite:///"):
        return uri[len("sqlite:///"):] or None
    return None


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
            bad = checkout_problem(t.tracking_uri, Path(_resolved(spec.path.parent / local))) if local else None
            if bad:
                problems.add("tracking.tracking_uri", f"{bad}, as output_dir would be: name a store outside the "
                                                      f"checkout, or leave tracking_uri null (<sweep>/mlruns)")
    for i, tag in enumerate(t.tags):
        if not TAG.fullmatch(tag):
            problems.add(join("tracking.tags", i), f"tag {tag!r} must start with a letter or digit and be at most 64 "
                                                   f"letters, digits or '_.+:=/-'")


MAX_CHAIN = 32  # stages in one init_from chain: far beyond any study, and no walk over it goes deep


def _check_chains(spec: Spec, problems: Problems) -> None:
    """Chained stages: `init_from.method` names another method, the chain has no cycle nor more than
    MAX_CHAIN stages, and a `continue` keeps training the upstream adapter, so its LoRA shape must be
    the upstream's."""
    too_long = False
    for name, m in spec.methods.items():
        if m.init_from is None:
            if m.init_mode != "continue":
                problems.add(join(join("methods", name), "init_mode"), "only a chained method (init_from) takes init_mode")
            continue
        p = join(join(join("methods", name), "init_from"), "method")
        up = m.init_from.method
        if up not in spec.methods:
            problems.add(p, f"unknown method '{up}' (known: {', '.join(spec.methods)})")
            continue
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


def swept_axes(spec: Spec) -> list[str]:
    """Named axes (canonical order), then the dotted axes of grid, zip, include and targets in
    the order the spec first gives them."""
    dotted: dict[str, None] = {}
    for mapping in (spec.grid, *spec.zip, *spec.include, *(t.axes for t in spec.targets.values())):
        if isinstance(mapping, dict):
            dotted.update((a, None) for a in mapping if is_dotted(a))
    return list(AXES) + list(dotted)


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
                vals = _values_of(value)
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
        from alignkit import select_check

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
    for i, c in enumerate(values):
        cp = join(path, i)
        if c == "final":
            continue
        if not isinstance(c, int) or isinstance(c, bool) or c <= 0:
            problems.add(cp, f"a checkpoint is a positive step or 'final', got {c!r}")
        elif c > spec.training.max_steps:
            problems.add(cp, f"step {c} is beyond training.max_steps {spec.training.max_steps}")
        elif c % spec.training.save_steps and c != spec.training.max_steps:
            problems.add(cp, f"step {c} is not a multiple of training.save_steps {spec.training.save_steps}, "
                             f"so no adapter is saved there")
    if len(set(values)) != len(values):
        problems.add(path, "duplicate checkpoints")


def _final_step(spec: Spec, c: Scalar) -> Scalar:
    return "final" if c == spec.training.max_steps else c


def _check_evals(spec: Spec, problems: Problems) -> None:
    ev = spec.evals
    _check_checkpoints(spec, ev.checkpoints, join("evals", "checkpoints"), problems)
    g = ev.generation
    if g is not None and g.agreement_prompts < 1:
        problems.add(join(join("evals", "generation"), "agreement_prompts"), f"must be 1 or more, got {g.agreement_prompts}")
    if g is not None and not 0 < g.agreement_threshold <= 1:
        problems.add(join(join("evals", "generation"), "agreement_threshold"),
                     f"must be in (0, 1], got {g.agreement_threshold}")
    evaluated = {_final_step(spec, c) for c in ev.checkpoints}
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
        if b.checkpoints is not None:
            cp = join(bp, "checkpoints")
            if not b.checkpoints:
                problems.add(cp, "empty: list steps and/or 'final', or remove the key to use evals.checkpoints")
            _check_checkpoints(spec, b.checkpoints, cp, problems)
            for i, c in enumerate(b.checkpoints):
                if (c == "final" or isinstance(c, int)) and _final_step(spec, c) not in evaluated:
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
            vals = _values_of(value)
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


def _check_resource_fields(r: Union[ResourceSpec, ResourceOverride], rp: str, problems: Problems) -> None:
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

# Fields that hold a hub id or a local path (relative paths are relative to the spec file); a
# mapping field (dataset `files`) holds one per key.
PATH_FIELDS = {"models": ("source",), "datasets": ("source", "files"),
               "evals.benchmarks": ("source", "include_path", "classifier"), "evals.judges": ("source",),
               "targets": ("source",)}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?")
_EXPLICIT_LOCAL = ("/", "./", "../", "~")


def resolve_source(spec_dir: Path, source: str) -> str:
    """Local paths become absolute (relative ones are relative to the spec file); hub ids stay."""
    if source.startswith(_EXPLICIT_LOCAL):
        return _resolved(spec_dir / os.path.expanduser(source))
    candidate = spec_dir / source
    if candidate.exists() or candidate.is_symlink():
        return _resolved(candidate)
    return source


def _resolved(path: Path) -> str:
    """The absolute path; a symlink loop (which resolve() raises on) stays as written, made absolute,
    for local_path_issues to name."""
    try:
        return str(path.resolve())
    except (RuntimeError, OSError):
        return os.path.abspath(path)


def local_path_issues(spec: Spec) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(errors, missing) as (YAML path, message). An error is a relative path that exists, but
    relative to the current directory or the checkout instead of the spec file's folder: known
    now, not when the job fails. Missing is a local path that exists nowhere yet (data cloned
    before submit, for instance): `plan` warns, `submit` refuses."""
    errors: list[tuple[str, str]] = []
    missing: list[tuple[str, str]] = []
    spec_dir = spec.path.parent
    targets = {join(join("targets", n), "source"): n for n in spec.targets}  # YAML path -> target name
    for section, keys in PATH_FIELDS.items():
        entries: Any = spec
        for part in section.split("."):
            entries = getattr(entries, part)
        values = [v for name, entry in entries.items() for v in _path_values(section, name, entry, keys)]
        if section in _DOTTED_PATH_SECTIONS:  # a swept `dataset.source` is a source like any other
            values += [(key, at, v) for key, at, v in _dotted_path_values(spec, _DOTTED_PATH_SECTIONS[section], keys)]
        for key, at, source in values:
            resolved = resolve_source(spec_dir, source)
            explicit = source.startswith(_EXPLICIT_LOCAL)
            bad = file_problem(resolved) if os.path.lexists(resolved) else None
            if bad:  # there, but no file or folder to read (a loop, a FIFO, a device, NUL bytes): refused now
                errors.append((at, f"local path {source!r} ({resolved}): {bad}"))
                continue
            target = targets.get(at) if section == "targets" else None
            if target is not None and os.path.lexists(resolved):
                bad = target_folder_problem(resolved, spec.targets[target].type)
                if bad:  # a file is refused now; a folder without its marker may be filled before submit
                    into = errors if not os.path.isdir(resolved) else missing
                    into.append((at, f"target {target}: local path {source!r} ({resolved}) {bad}"))
                    continue
            if (explicit and os.path.exists(resolved)) or (not explicit and resolved != source):
                continue  # a local path, found where the spec file says
            elsewhere = _found_elsewhere(source)
            hub = (_DATA_DIR.fullmatch(source) and not source.endswith(DATA_FILE_SUFFIXES) if key == "files"
                   else _HUB_ID.fullmatch(source))
            if not explicit and not elsewhere and hub:
                continue  # a hub id (or a hub data_dir, for `files`)
            message = (f"local path {source!r} not found in {spec_dir} (the spec file's folder: relative paths "
                       f"are resolved against it)")
            if elsewhere:
                fix = os.path.relpath(os.path.join(elsewhere, os.path.expanduser(source)), spec_dir)
                errors.append((at, f"{message}; it exists relative to {elsewhere}: write {fix!r}"))
            else:
                missing.append((at, message))
    return errors, missing


_DOTTED_PATH_SECTIONS = {"models": "model", "datasets": "dataset"}  # spec section -> its dotted-axis prefix


def _dotted_path_values(spec: Spec, prefix: str, keys: tuple[str, ...]):
    """(field, YAML path, value) of each string value a dotted axis gives a path field
    (`dataset.source`, `dataset.files.honest`, `model.source`) in grid, zip or include."""
    places = [(join("grid", a), a, v) for a, v in spec.grid.items()]
    places += [(join(join("zip", i), a), a, v) for i, g in enumerate(spec.zip) for a, v in g.items()]
    places += [(join(join("include", i), a), a, v) for i, e in enumerate(spec.include) for a, v in e.items()]
    for at, axis, value in places:
        section, _, rest = axis.partition(".")
        if section != prefix or rest.split(".")[0] not in keys:
            continue
        for i, v in enumerate(value) if isinstance(value, (list, tuple)) else [(None, value)]:
            if isinstance(v, str):
                yield rest.split(".")[0], at if i is None else join(at, i), v


def target_folder_problem(path: str, kind: str) -> str | None:
    """What makes a local target no PEFT adapter folder (adapter_config.json) or model folder
    (config.json): a regular file such as /etc/passwd, or a folder without the marker."""
    marker, what = ("adapter_config.json", "PEFT adapter") if kind == "adapter" else ("config.json", "Hugging Face model")
    if not os.path.isdir(path):
        return f"is a file, not a {what} folder (one that holds {marker})"
    if not os.path.isfile(os.path.join(path, marker)):
        return f"has no {marker}: not a {what} folder"
    return None


def _path_values(section: str, name: str, entry: Any, keys: tuple[str, ...]):
    """(field, YAML path, value) of each path-holding field that is set, mapping fields expanded."""
    for key in keys:
        value = getattr(entry, key, None)
        if isinstance(value, dict):
            for k, v in value.items():
                yield key, join(join(join(section, name), key), k), v
        elif value:
            yield key, join(join(section, name), key), value


def _found_elsewhere(source: str) -> str | None:
    """The folder (current directory or checkout) a relative path exists in, if it does."""
    if os.path.isabs(os.path.expanduser(source)):
        return None
    for base in dict.fromkeys((Path.cwd(), CHECKOUT)):
        if (base / source).exists():
            return str(base)
    return None


def _check_resources(spec: Spec, problems: Problems) -> None:
    for stage in STAGES:
        _check_resource_fields(getattr(spec.resources, stage), join("resources", stage), problems)
    for i, o in enumerate(spec.resources.overrides):
        op = join(join("resources", "overrides"), i)
        _check_resource_fields(o, op, problems)
        for axis, value in o.where.items():
            for v in _values_of(value):
                check_axis_value(spec, axis, v, join(join(op, "where"), axis), problems)
