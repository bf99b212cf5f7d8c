"""The arrows between the halves (docs/architecture.md "Import rules"), checked on every import.

Every `import` and `from ... import` of every module under alignkit/ and jobs/ is read with ast,
at module level and inside functions alike (relative imports resolved), and each breach is named
as `file:line: rule: the import`. The rules:
  jobs        jobs/ (and a plug-in's compute module, alignkit/plugins/**/<name>_run.py) imports from
              alignkit only alignkit.contract and alignkit.plugins
  contract    alignkit/contract/ imports nothing of alignkit outside contract/ and nothing of jobs/, except
              the plug-in registries (alignkit.plugins.methods, .benchmarks: the typed configs hold
              their fields classes), never a plug-in's own module
  login       alignkit/ outside plugins/ never imports jobs/ or a plug-in's compute module, not even
              inside a function, and names no jobs module by string except alignkit/contract/entry.py
  plugins     a plug-in module imports jobs/ or a compute module only inside a function
  heavy       no module of alignkit/ (compute modules included) imports a heavy ML library (HEAVY) at module
              level: the login node never pays for torch, transformers, numpy, ... at import time; the
              function that needs one imports it
  cycles      no cycle among the module-level imports of alignkit/ and jobs/
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRY = "alignkit/contract/entry.py"  # the one module allowed to name the compute side by string
COMPUTE_SUFFIX = "_run"  # alignkit.contract.registry.COMPUTE_SUFFIX (not imported: this test reads files)
JOBS_MODULE = re.compile(r"^jobs(\.\w+)+$")  # "jobs" alone is the manifest's key, not a module
# the registries that type the configs: the contract's stage configs read their fields classes
REGISTRIES = ("alignkit.plugins", "alignkit.plugins.methods", "alignkit.plugins.benchmarks")
# libraries whose import alone costs the login node seconds or GBs (or pulls one that does)
HEAVY = ("torch", "transformers", "datasets", "trl", "peft", "bitsandbytes", "accelerate", "deepspeed", "vllm",
         "lm_eval", "alpaca_eval", "mergekit", "tokenizers", "safetensors", "huggingface_hub", "numpy", "pandas",
         "scipy", "sklearn", "matplotlib", "pyarrow")


@dataclass(frozen=True)
class Import:
    file: str  # relative to the repository root
    line: int
    module: str  # the absolute module imported (for `from a import b`, also `a.b`: see _targets)
    in_function: bool
    text: str


def module_name(rel: str) -> str:
    parts = list(Path(rel).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def kind(rel: str) -> str:
    """What a module is: jobs, compute (a plug-in's *_run module), plugin, contract or login."""
    if rel.startswith("jobs/"):
        return "jobs"
    if rel.startswith("alignkit/plugins/"):
        return "compute" if Path(rel).stem.endswith(COMPUTE_SUFFIX) else "plugin"
    if rel.startswith("alignkit/contract/"):
        return "contract"
    return "login"


def _is_package(rel: str) -> bool:
    return Path(rel).name == "__init__.py"


def imports_of(root: Path, rel: str) -> list[Import]:
    """Every import statement of the file, with the modules it may load."""
    tree = ast.parse((root / rel).read_text(), filename=rel)
    here = module_name(rel)
    package = here if _is_package(rel) else here.rpartition(".")[0]
    out: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    out.append(Import(rel, child.lineno, alias.name, in_function, f"import {alias.name}"))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                text = f"from {'.' * child.level}{child.module or ''} import {', '.join(a.name for a in child.names)}"
                out.append(Import(rel, child.lineno, base, in_function, text))
                for alias in child.names:  # `from alignkit import spec` loads alignkit.spec
                    if alias.name != "*":
                        out.append(Import(rel, child.lineno, f"{base}.{alias.name}", in_function, text))
            visit(child, inner)

    visit(tree, False)
    return out


def modules(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for top in ("alignkit", "jobs") for p in (root / top).rglob("*.py"))


def existing(root: Path) -> set[str]:
    return {module_name(rel) for rel in modules(root)}


def _resolve(name: str, known: set[str]) -> str | None:
    """The module of ours `name` is (`from a import b`: a.b when that is a module, else a)."""
    return name if name in known else None


def _is_compute(mod: str) -> bool:
    return mod == "jobs" or mod.startswith("jobs.") or (
        mod.startswith("alignkit.plugins.") and mod.rsplit(".", 1)[-1].endswith(COMPUTE_SUFFIX))


def violations(root: Path) -> list[str]:
    known = existing(root)
    out: list[str] = []
    for rel in modules(root):
        k = kind(rel)
        for imp in imports_of(root, rel):
            mod = _resolve(imp.module, known)
            where = f"{imp.file}:{imp.line}"
            if imp.module.split(".")[0] in HEAVY and not imp.in_function and rel.startswith("alignkit/"):
                out.append(f"{where}: heavy: alignkit/ imports a heavy ML library only inside the function "
                           f"that needs it: {imp.text}")
                continue
            if mod is None:
                continue  # another third-party module, or `from a import name` where name is not a module
            ours = mod.split(".")[0] == "alignkit"
            if k in ("jobs", "compute") and ours and mod != "alignkit" and not mod.startswith(
                    ("alignkit.contract", "alignkit.plugins")):
                out.append(f"{where}: jobs: compute code imports only alignkit.contract and alignkit.plugins: "
                           f"{imp.text}")
            elif k == "contract" and ((ours and mod != "alignkit" and not mod.startswith("alignkit.contract")
                                       and mod not in REGISTRIES) or _is_compute(mod)):
                out.append(f"{where}: contract: alignkit/contract imports only itself (never the login side or "
                           f"jobs/): {imp.text}")
            elif k == "login" and _is_compute(mod):
                out.append(f"{where}: login: the login side never imports compute code, not even in a "
                           f"function (name it in {ENTRY}): {imp.text}")
            elif k == "plugin" and _is_compute(mod) and not imp.in_function:
                out.append(f"{where}: plugins: a plug-in imports the compute side only inside a function: {imp.text}")
        if k in ("login", "contract") and rel != ENTRY:
            tree = ast.parse((root / rel).read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and JOBS_MODULE.match(node.value) \
                        and node.value in known:
                    out.append(f"{rel}:{node.lineno}: {k}: names compute module '{node.value}' by string "
                               f"(only {ENTRY} names the compute side)")
    return sorted(set(out), key=lambda v: (v.split(":")[0], int(v.split(":")[1])))


def cycles(root: Path) -> list[list[str]]:
    """Strongly connected components (more than one module) of the module-level import graph."""
    known = existing(root)
    graph: dict[str, set[str]] = {m: set() for m in known}
    for rel in modules(root):
        here = module_name(rel)
        for imp in imports_of(root, rel):
            mod = _resolve(imp.module, known)
            if mod is not None and not imp.in_function and mod != here and not here.startswith(mod + "."):
                graph[here].add(mod)  # a package's own __init__ runs first: importing it is no cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:  # Tarjan; the graph has a few hundred nodes
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


RULES = ("jobs", "contract", "login", "plugins", "heavy")


@pytest.mark.parametrize("rule", RULES)
def test_import_rule(rule):
    broken = [v for v in violations(ROOT) if v.split(": ", 2)[1] == rule]
    assert not broken, f"{len(broken)} import(s) break the '{rule}' rule:\n" + "\n".join(broken)


def test_no_module_level_import_cycle():
    found = cycles(ROOT)
    assert not found, "module-level import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checker_names_each_breach(tmp_path):
    """The rules catch what they promise on a planted tree: each breach named file:line and rule."""
    files = {
        "jobs/__init__.py": "",
        "jobs/train/__init__.py": "",
        "jobs/train/stage.py": "import alignkit.contract\nfrom alignkit import spec\n",
        "alignkit/__init__.py": "",
        "alignkit/spec.py": "",
        "alignkit/contract/__init__.py": "from alignkit.spec import x\n",
        "alignkit/contract/entry.py": "RUNNER = 'jobs.train.stage'\n",
        "alignkit/cli.py": "def f():\n    from jobs.train import stage\n\nNAME = 'jobs.train'\n",
        "alignkit/plugins/__init__.py": "",
        "alignkit/plugins/bench/__init__.py": "",
        "alignkit/plugins/bench/a.py": "from jobs.train import stage\n\ndef run():\n    from . import a_run\n",
        "alignkit/plugins/bench/a_run.py": "import jobs.train.stage\nfrom alignkit import cli\n",
        "alignkit/one.py": "import alignkit.two\n",
        "alignkit/two.py": "def f():\n    pass\nimport alignkit.one\n",
        "alignkit/plot.py": "import numpy as np\ntry:\n    from torch import nn\nexcept ImportError:\n    pass\n"
                            "def f():\n    import matplotlib\n",
        "jobs/train/model.py": "import torch\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    got = violations(tmp_path)
    assert [v.split(": ", 2)[0] + " " + v.split(": ", 2)[1] for v in got] == [
        "alignkit/cli.py:2 login", "alignkit/cli.py:4 login", "alignkit/contract/__init__.py:1 contract",
        "alignkit/plot.py:1 heavy", "alignkit/plot.py:3 heavy",
        "alignkit/plugins/bench/a.py:1 plugins", "alignkit/plugins/bench/a_run.py:2 jobs",
        "jobs/train/stage.py:2 jobs"], got
    assert cycles(tmp_path) == [["alignkit.one", "alignkit.two"]]
