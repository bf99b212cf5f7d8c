"""Cluster profiles: where and how jobs run (slurm/profiles/*.yaml; docs/slurm.md).

A profile holds what differs between clusters — partition, account, QoS, constraint, setup
lines (module loads, venv activation), the interpreter jobs run (`python:`), the preemption
signal delay, extra scheduler options (`sbatch:`, checked by the SLURM backend) — and default
resources per stage. Every value that reaches a job script is refused here if it holds a control
character (a newline would end the `#SBATCH` line and the rest would run as a command); `setup:`
lines are shell by design. Each registered backend checks the options it owns
(`Backend.check_profile`), whatever the profile's executor: `submit --executor` may pick
another. Precedence for a job's resources: built-in defaults <
profile defaults < the spec's resources < the spec's resource overrides.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from alignkit.contract.errors import SpecError, UserError
from alignkit.contract.schema import Problems, from_dict, is_missing, join, read_yaml
from alignkit.contract.stages import STAGE_NAMES
from alignkit.spec.checks import check_resource_fields
from alignkit.spec.model import ResourceSpec

PROFILE_DIR = Path(__file__).resolve().parents[2] / "slurm" / "profiles"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Profile:
    name: str
    executor: str = "slurm"  # a registered backend's name (alignkit/backends/)
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    setup: tuple[str, ...] = field(default=(), metadata={"free_text": True})  # shell by design
    # the job's interpreter: a path (relative: to this file's folder) or a name found on PATH
    # after `setup`; default python3 as the setup lines leave it (never the login node's path)
    python: Optional[str] = None
    signal_delay_s: int = 120
    max_parallel_local: int = 2
    # per stage, the spec's resource fields (ResourceSpec), below the spec's own `resources:`
    defaults: dict[str, ResourceSpec] = field(default_factory=dict)
    sbatch: dict[str, Union[str, int, bool]] = field(default_factory=dict)
    description: str = field(default="", metadata={"free_text": True})
    path: Optional[Path] = field(default=None, compare=False, init=False)  # set by load_profile


BUILTIN_LOCAL = Profile(name="local", executor="local", signal_delay_s=30,
                        description="built-in: run on this machine through submitit's local executor")


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(name_or_path: str | None) -> Profile:
    """A profile by name (slurm/profiles/<name>.yaml) or path; None gives the local profile."""
    if name_or_path is None:
        name_or_path = "local"
    path = Path(name_or_path)
    if not (name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path):
        path = PROFILE_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            if name_or_path == "local":
                return BUILTIN_LOCAL
            known = ", ".join(available_profiles()) or "none"
            raise UserError(f"unknown profile '{name_or_path}' (known: {known}; or give a path to a YAML file)")
    data, lines, _ = read_yaml(path)
    problems = Problems(str(path), lines)
    if isinstance(data, dict) and "name" not in data:
        data = {**data, "name": path.stem}
    profile = from_dict(Profile, data, "", problems)
    if not is_missing(profile):
        from alignkit import backends  # the executors are the registered backends, not a fixed list
        if profile.executor not in backends.names():
            problems.add("executor", f"unknown executor '{profile.executor}' (known: {', '.join(backends.names())})")
        for name in backends.names():
            backends.get(name).check_profile(profile, problems)
        for stage in profile.defaults:
            if stage not in STAGE_NAMES:
                problems.add(join("defaults", stage), f"unknown stage '{stage}' (known: {', '.join(STAGE_NAMES)})")
        if profile.signal_delay_s < 0:
            problems.add("signal_delay_s", "must be zero or more")
        if profile.max_parallel_local <= 0:
            problems.add("max_parallel_local", "must be positive")
        _check_script_values(profile, problems)
    problems.raise_if_any()
    if is_missing(profile):  # pragma: no cover - problems were raised above
        raise SpecError([f"{path}: invalid profile"])
    object.__setattr__(profile, "path", path.resolve())
    if profile.python and "/" in profile.python and not os.path.isabs(profile.python):
        # not resolve(): a venv's python is a symlink, and only its own path finds the venv
        object.__setattr__(profile, "python", os.path.normpath(path.resolve().parent / profile.python))
    return profile


def _check_script_values(profile: Profile, problems: Problems) -> None:
    for key in ("name", "partition", "account", "qos", "constraint", "python"):
        value = getattr(profile, key)
        if isinstance(value, str) and _CONTROL.search(value):
            problems.add(key, f"contains a control character ({_CONTROL.search(value).group()!r}): refused, "
                              f"it would end a line of the job script")
    for stage, d in profile.defaults.items():
        check_resource_fields(d, join("defaults", stage), problems)
