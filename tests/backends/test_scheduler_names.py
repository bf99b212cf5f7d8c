"""SLURM's commands (sbatch, squeue, sacct, scontrol, scancel) are named only inside the SLURM
backend (alignkit/backends/slurm*.py, sacct.py): everywhere else in alignkit/ the code goes
through the `Backend` interface, so a new scheduler is one file (issue 24 items 3 and 4).

The check reads code, not prose: every string literal that is not a docstring (messages,
arguments, f-string parts) and every identifier (imports, names, attributes, arguments).
Comments and docstrings may explain what SLURM does. User-facing names that predate the rule
and must keep working are listed in ALLOWED with the reason.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = re.compile(r"(?<![\w-])(sbatch|squeue|sacct|scontrol|scancel)(?![\w-])")
BACKEND = re.compile(r"alignkit/backends/(slurm\w*|sacct)\.py")
# (file, identifier): why it may stay
ALLOWED = {
    ("alignkit/submit/profiles.py", "sbatch"): "a profile's `sbatch:` key (extra options users write in their "
                                               "profile YAML); the SLURM backend validates and renders it",
}


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _identifiers(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.alias):
        return [*(node.name.split(".")), *([node.asname] if node.asname else [])]
    if isinstance(node, ast.ImportFrom) and node.module:
        return node.module.split(".")
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def scheduler_names(path: Path, rel: str) -> list[str]:
    """`file:line: what` for each SLURM command named in `path`'s code."""
    tree = ast.parse(path.read_text(), str(path))
    docs = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            hits += [f"{rel}:{node.lineno}: {m.group()!r} in the string {node.value[:60]!r}"
                     for m in COMMANDS.finditer(node.value)]
        for name in _identifiers(node):
            if COMMANDS.fullmatch(name) and (rel, name) not in ALLOWED:
                hits.append(f"{rel}:{getattr(node, 'lineno', '?')}: the identifier {name!r}")
    return hits


def test_slurm_commands_are_named_only_in_the_slurm_backend():
    hits = []
    for path in sorted((ROOT / "alignkit").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if not BACKEND.fullmatch(rel):
            hits += scheduler_names(path, rel)
    assert not hits, "SLURM commands named outside alignkit/backends/slurm*.py, sacct.py:\n" + "\n".join(hits)


def test_the_check_finds_a_command_in_code_but_not_in_prose(tmp_path):
    src = tmp_path / "m.py"
    src.write_text('"""Runs sacct once."""\nimport subprocess\n# scancel is fine in a comment\n'
                   'def f(x):\n    """scontrol too."""\n    return subprocess.run(["squeue", "-h"]) or f"{x} sbatch call"\n'
                   'from alignkit.backends import sacct\n')
    hits = scheduler_names(src, "m.py")
    assert sorted(hits) == ["m.py:6: 'sbatch' in the string ' sbatch call'", "m.py:6: 'squeue' in the string 'squeue'",
                            "m.py:7: the identifier 'sacct'"], hits
