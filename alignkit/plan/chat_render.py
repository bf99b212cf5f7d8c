"""A chat template rendered as transformers renders it, with jinja2 alone (the login node never
imports transformers: its import pulls numpy and the hub client, ~1 s, into every `alignkit plan`).

The environment copies transformers 5.24.0 `utils/chat_template_utils.py`
(`_cached_compile_jinja_template`, lines 567-670, and `render_jinja_template`, lines 763-891): an
ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the loopcontrols extension, the
`{% generation %}` tag (transformers tracks assistant spans with it; rendering passes its body
through), the `tojson` filter without HTML escaping, and the globals raise_exception, strftime_now,
dict and namespace (no underscore-prefixed names). Only what the plan-time data check passes is
supported: one conversation of {role, content} messages, no tools, documents, masks or
continue_final_message. tests/plan/test_chat_render.py renders every template we ship, and the
tiny model's own, through both and compares the text.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any


@functools.lru_cache(maxsize=32)
def _compiled(chat_template: str) -> Any:
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        """`{% generation %}...{% endgeneration %}`: its body as it renders."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    class TemplateDict:
        def __call__(self, *args: Any, **kwargs: Any) -> dict:
            return dict(*args, **kwargs)

        def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
            return dict.fromkeys(*args, **kwargs)

    class TemplateNamespace(jinja2.utils.Namespace):
        def __init__(*args: Any, **kwargs: Any) -> None:
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name: str, value: Any) -> None:
            TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check_name(name: Any) -> None:
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"Chat templates cannot store underscore-prefixed attributes on a namespace, but got {name!r}.")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.globals["dict"] = TemplateDict()
    env.globals["namespace"] = TemplateNamespace
    return env.from_string(chat_template)


def render(chat_template: str, messages: list[dict], bos_token: str = "", eos_token: str = "",
           add_generation_prompt: bool = False) -> str:
    """The text `tokenizer.apply_chat_template(messages, tokenize=False)` gives for this template."""
    return _compiled(chat_template).render(messages=[dict(m) for m in messages], tools=None, documents=None,
                                           add_generation_prompt=add_generation_prompt,
                                           bos_token=bos_token, eos_token=eos_token)
