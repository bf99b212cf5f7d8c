"""What every alignment method shares: its spec fields (CommonFields) and the Method interface.

A method is one file in this package (docs/contract.md "Adding a method"): a frozen dataclass of
its spec fields (CommonFields plus its own) and a `Method` subclass registered under the spec's
`type:`. The login node uses `fields`, `resolve` and `check`; the train job uses the rest. torch,
transformers and trl are imported inside the functions that need them, never at import time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields as dc_fields, is_dataclass, make_dataclass
from functools import lru_cache
from typing import Any, ClassVar, Literal, Optional, Union

from alignkit.contract.schema import Problems, join
from alignkit.contract.serial import at_default


# PEFT's shorthand for every linear layer but the output head (peft 0.21.2 utils/constants.py:404
# INCLUDE_LINEAR_LAYERS_SHORTHAND; tuners_utils.py:2432-2441 `_maybe_include_all_linear_layers` expands it
# only when target_modules IS that string, so a list ["all-linear"] is handed over as the string)
ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class LoraFields:
    r: int
    alpha: int
    dropout: float
    target_modules: Union[Literal["all-linear"], tuple[str, ...]]  # module names, or PEFT's all-linear


def peft_target_modules(target_modules: Union[str, tuple[str, ...]]) -> Union[str, list[str]]:
    """target_modules as PEFT takes them: "all-linear" (given as the string or a one-item list) as the
    string PEFT expands, module names as a list."""
    if isinstance(target_modules, str) or list(target_modules) == [ALL_LINEAR]:
        return ALL_LINEAR
    return list(target_modules)


@dataclass(frozen=True)
class InitFrom:
    """Chained stages: start from the result of this method's run with the same other axes, except
    those named here (SFT on a chat dataset, DPO on a preference one), or from an adapter that
    exists already (`adapter`: a local path or hub id, trained on the run's model)."""

    method: Optional[str] = None  # a name in the spec's `methods:`
    # the upstream run's own value of these axes (None: the chained run's value)
    dataset: Optional[str] = None  # a name in `datasets:`
    preference: Optional[str] = None  # a preference ('+' joins a mixture's parts, as in the grid)
    seed: Optional[int] = None
    adapter: Optional[str] = None  # instead of `method`: a PEFT adapter folder or hub id
    revision: Optional[str] = None  # a hub adapter's branch, tag or commit

    AXES: ClassVar[tuple[str, ...]] = ("dataset", "preference", "seed")  # the upstream axes it may name


@dataclass(frozen=True)
class CommonFields:
    """The fields every method takes (today's MethodSpec less the method-specific ones)."""

    type: str  # the method's registered name: picks the fields class and the Method
    learning_rate: float
    lora: LoraFields
    lr_scheduler: Literal["constant", "cosine", "linear", "constant_with_warmup"] = "constant"
    warmup_ratio: float = 0.0
    batch_size: int = 16  # global: per_device_batch_size x grad accumulation x world size
    per_device_batch_size: int = 4
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    optimizer: Literal["paged_adamw_32bit", "paged_adamw_8bit", "adamw_torch"] = "paged_adamw_32bit"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_length: int = 512
    # Chained stages (docs/methods.md "Chained stages"): compile turns these into the run's
    # config["init"] (the upstream run's id and the mode); they never reach the method block.
    init_from: Optional[InitFrom] = None
    init_mode: Literal["continue", "merge"] = "continue"

    def __unwritten__(self) -> tuple[str, ...]:
        """config.json's method block: never the chain (compile writes it as config["init"]), and the
        fields a method lists in `unwritten_at_default` only when set (older configs and ids stay)."""
        return at_default(self, "init_from", "init_mode", *self.unwritten_at_default)

    unwritten_at_default: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __variant__(cls, value: Any, path: str, problems: Problems) -> Optional[tuple[type, Any]]:
        """The strict loader's tagged-union hook (alignkit.contract.schema.convert): a mapping's `type:`
        picks its method's fields class. A key that only other methods take is named as such."""
        from alignkit.plugins.methods import METHODS

        if not isinstance(value, dict):
            return cls, value
        kind = value.get("type")
        if kind is None:
            problems.add(join(path, "type"), f"required key 'type' is missing (known: {', '.join(METHODS.names())})")
            return None
        if not isinstance(kind, str) or kind not in METHODS:
            problems.add(join(path, "type"), f"unknown method type {kind!r} (known: {', '.join(METHODS.names())})")
            return None
        own = METHODS.get(kind).fields
        names = {f.name for f in dc_fields(own)}
        kept = {}
        for key, v in value.items():
            owners = [n for n in METHODS.names() if n != kind and key in {f.name for f in dc_fields(METHODS.get(n).fields)}]
            if key not in names and owners:
                problems.add(join(path, key), f"{key} is not {_article(kind)} {kind.upper()} setting (methods of type "
                                              f"{', '.join(owners)} take it); remove it")
                continue
            kept[key] = v
        return own, kept


def check_common(f: CommonFields, p: str, problems: Problems) -> None:
    """Spec-time checks of the common fields (each method's `check` adds its own)."""
    if f.learning_rate <= 0:
        problems.add(join(p, "learning_rate"), f"must be positive, got {f.learning_rate}")
    for key in ("batch_size", "per_device_batch_size", "max_length"):
        if getattr(f, key) <= 0:
            problems.add(join(p, key), f"must be positive, got {getattr(f, key)}")
    if f.per_device_batch_size > 0 and f.batch_size % f.per_device_batch_size:
        problems.add(join(p, "batch_size"), f"{f.batch_size} is not a multiple of per_device_batch_size "
                                            f"{f.per_device_batch_size}")
    if not 0 <= f.warmup_ratio < 1:
        problems.add(join(p, "warmup_ratio"), f"must be in [0, 1), got {f.warmup_ratio}")
    for key in ("adam_beta1", "adam_beta2"):  # torch.optim.AdamW refuses betas outside [0, 1)
        if not 0 <= getattr(f, key) < 1:
            problems.add(join(p, key), f"must be in [0, 1), got {getattr(f, key)}")
    for key in ("weight_decay", "max_grad_norm"):  # max_grad_norm 0 turns clipping off (transformers)
        if getattr(f, key) < 0:
            problems.add(join(p, key), f"must be zero or more, got {getattr(f, key)}")
    lp = join(p, "lora")
    if f.lora.r <= 0:
        problems.add(join(lp, "r"), f"must be positive, got {f.lora.r}")
    if f.lora.alpha <= 0:
        problems.add(join(lp, "alpha"), f"must be positive, got {f.lora.alpha}")
    if not 0 <= f.lora.dropout < 1:
        problems.add(join(lp, "dropout"), f"must be in [0, 1), got {f.lora.dropout}")
    if not f.lora.target_modules:
        problems.add(join(lp, "target_modules"), "must name at least one module")
    elif not isinstance(f.lora.target_modules, str) and ALL_LINEAR in f.lora.target_modules \
            and len(f.lora.target_modules) > 1:
        problems.add(join(lp, "target_modules"), f"'{ALL_LINEAR}' already names every linear layer: give it alone "
                                                 f"(target_modules: {ALL_LINEAR}) or list module names")


class Method:
    """One alignment method. Subclasses set the class attributes and implement the hooks below;
    hooks with a body here are defaults a method may keep."""

    name: ClassVar[str] = ""  # set by METHODS.register
    fields: ClassVar[type[CommonFields]] = CommonFields
    paired: ClassVar[bool] = True  # rows are chosen/rejected pairs (False: SFT demonstrations)
    reference_model: ClassVar[bool] = False  # needs a reference (PEFT: the base with the adapter off)
    metrics: ClassVar[dict[str, str]] = {}  # TRL log key -> our name, beyond loss/learning_rate/grad_norm
    columns: ClassVar[tuple[str, ...]] = ()  # the trainer-ready columns `examples` makes
    packs: ClassVar[bool] = False  # TRL's trainer for it can pack (training.packing)

    # ---- login node ----
    def check(self, f: CommonFields, path: str, problems: Problems) -> None:
        """Spec-time cross-field checks of this method's own fields, one line per problem."""

    def advice(self, cfg: Any) -> list[str]:
        """`plan`'s warnings for settings that run but fall outside the method's documented
        recommendations (cfg: the run's typed method config); one line each."""
        return []

    # ---- train job ----
    def rows(self, pairs: Any) -> Any:
        """Normalized preference pairs (prompt/chosen/rejected) -> this method's rows."""
        return pairs

    def examples(self, rows: Any, tokenizer: Any, f: CommonFields) -> tuple[Any, Counter, list[int]]:
        """(trainer-ready datasets.Dataset, drops by reason, index in `rows` of each kept example)."""
        raise NotImplementedError

    def trl_args(self, f: CommonFields, common: dict[str, Any]) -> Any:
        """The TRL *Config: `common` (jobs.train.trl_adapter.common_args) plus this method's arguments."""
        raise NotImplementedError

    def trainer(self, f: CommonFields, *, model: Any, tokenizer: Any, train_dataset: Any, eval_dataset: Any,
                peft_config: Any, args: Any, callbacks: list) -> Any:
        raise NotImplementedError

    def decode(self, example: dict, tokenizer: Any, f: CommonFields) -> dict[str, str]:
        """What `alignkit preview` prints for one example: each `*_ids` column decoded."""
        return {c.removesuffix("_ids"): tokenizer.decode(example[c]) for c in self.columns if c.endswith("_ids")}

    def summary(self, curve: list[dict]) -> dict[str, Any]:
        """Extra top-level entries of train_metrics.json from the windowed curve (DPO: "dpo")."""
        return {}

    @classmethod
    def config_class(cls) -> type:
        """The contract type of this method's block in config.json: its fields plus `name`."""
        return _config_class(cls.fields)


def plain(obj: Any) -> Any:
    """Dataclasses/tuples -> JSON-ready dicts/lists (init fields only, in field order)."""
    if is_dataclass(obj):
        return {f.name: plain(getattr(obj, f.name)) for f in dc_fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    return obj


@lru_cache(maxsize=None)
def _config_class(fields_cls: type) -> type:
    return make_dataclass(f"{fields_cls.__name__.removesuffix('Fields')}Config",
                          [("name", str, field(kw_only=True))], bases=(fields_cls,), frozen=True)


def _article(acronym: str) -> str:
    """'an' before a letter read with a vowel sound (an SFT, an ORPO), else 'a' (a DPO, a KTO)."""
    return "an" if acronym[:1].upper() in "AEFHILMNORSX" else "a"
