"""alignkit/plan/chat_render.py renders chat templates as transformers does (the reference: its own
`render_jinja_template`, the function `apply_chat_template(tokenize=False)` calls), and `alignkit plan`
keeps the login node free of the heavy ML libraries while it checks a study's data through them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.contract.chat_templates import TEMPLATES
from alignkit.plan.chat_render import render

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "assets" / "tiny-llama"

# What the check renders (a prompt + response conversation), and what else templates in the wild use:
# generation tags, namespace, loop controls, tojson, a system turn, several turns.
CONVERSATIONS = [
    [{"role": "user", "content": "Hi <b>&</b> \"there\""}, {"role": "assistant", "content": "Hello."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4."}, {"role": "user", "content": "And 3+3?"},
     {"role": "assistant", "content": "6, ünïcode."}],
]
WILD = {
    "namespace_and_loopcontrols": (
        "{% set ns = namespace(n=0) %}{% for m in messages %}{% if m['role'] == 'system' %}{% continue %}{% endif %}"
        "{% set ns.n = ns.n + 1 %}{{ ns.n }}:{{ m['role'] }}={{ m['content'] | tojson }}\n{% endfor %}"),
    "generation_tag": (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}{% generation %}"
        "{{ m['content'] + eos_token }}{% endgeneration %}{% else %}{{ '<' + m['role'] + '>' + m['content'] }}"
        "{% endif %}{% endfor %}"),
    "dict_global": "{% set d = dict(a=1) %}{{ d['a'] }}{% for m in messages %}{{ m.content | tojson(indent=1) }}{% endfor %}",
}


def _templates() -> dict[str, str]:
    return {**TEMPLATES, "tiny-llama": (TINY / "chat_template.jinja").read_text(), **WILD}


@pytest.mark.parametrize("name", list(_templates()))
@pytest.mark.parametrize("conversation", range(len(CONVERSATIONS)))
def test_renders_as_transformers_does(name, conversation):
    from transformers.utils.chat_template_utils import render_jinja_template

    template, messages = _templates()[name], CONVERSATIONS[conversation]
    try:
        expected = render_jinja_template(conversations=[messages], chat_template=template,
                                         bos_token="<s>", eos_token="</s>")[0][0]
    except Exception as exc:  # a template that refuses a role: both refuse with the same message
        with pytest.raises(type(exc), match=str(exc).splitlines()[0][:40].replace("(", r"\(").replace("+", r"\+")):
            render(template, messages, bos_token="<s>", eos_token="</s>")
        return
    assert render(template, messages, bos_token="<s>", eos_token="</s>") == expected


def test_a_refused_role_is_refused_as_transformers_refuses_it():
    from transformers.utils.chat_template_utils import render_jinja_template

    messages = [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}]
    with pytest.raises(Exception) as theirs:
        render_jinja_template(conversations=[messages], chat_template=TEMPLATES["mistral"])
    with pytest.raises(Exception) as ours:
        render(TEMPLATES["mistral"], messages)
    assert type(ours.value) is type(theirs.value) and str(ours.value) == str(theirs.value)


def test_the_sandbox_refuses_underscore_namespace_names():
    import jinja2

    with pytest.raises(jinja2.exceptions.SecurityError):
        render("{% set ns = namespace(_x=1) %}{{ ns }}", [])


def test_plan_imports_no_heavy_ml_library(tmp_path):
    """`alignkit plan` on a study whose data and template it checks (the tiny model's chat template
    and tokenizer, a local JSON-lines file) loads none of the compute stack: a fresh interpreter,
    the CLI's own entry, then sys.modules."""
    from tests.plan.test_datacheck import jsonl, pairs, spec

    study = spec(tmp_path, jsonl(tmp_path / "prefs.jsonl", pairs(8)))
    heavy = ["torch", "transformers", "numpy", "datasets", "peft", "trl", "lm_eval", "pandas", "huggingface_hub"]
    code = ("import sys\nfrom alignkit.cli.main import main\n"
            "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
            f"print('LOADED', [m for m in {heavy!r} if m in sys.modules])\nsys.exit(rc or 0)\n")
    proc = subprocess.run([sys.executable, "-c", code, "plan", str(study)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout, proc.stdout[-300:] + proc.stderr[-500:]
