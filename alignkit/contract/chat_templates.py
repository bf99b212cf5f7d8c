"""Our prompt templates as Jinja chat templates (the text; jobs/data/templates.py applies them).

The login side renders a study's first rows through them before anything queues
(alignkit/plan/datacheck.py) and the train, eval and generate jobs set them on the tokenizer, so
both read the one text. What each template renders and why: jobs/data/templates.py.
"""

from __future__ import annotations

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions."
)

# A leading system message replaces the default system prompt; otherwise the paper's is used.
VICUNA = (
    "{{ bos_token }}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] %}{% set turns = messages[1:] %}"
    "{% else %}"
    "{% set system = '" + VICUNA_SYSTEM.replace("'", "\\'") + "' %}{% set turns = messages %}"
    "{% endif %}"
    "{{ system }}"
    "{% for message in turns %}"
    "{% if message['role'] == 'user' %}"
    "{{ (' ' if loop.first else '') + 'USER: ' + message['content'] + ' ASSISTANT:' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% generation %}{{ ' ' + message['content'] + eos_token }}{% endgeneration %}"
    "{% else %}"
    "{{ raise_exception('vicuna template: unsupported role ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
)

MISTRAL = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% generation %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endgeneration %}"
    "{% else %}"
    "{{ raise_exception('mistral template: unsupported role ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
)

PLAIN = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{{ ('' if loop.first else '\\n\\n') + 'Human: ' + message['content'] + '\\n\\nAssistant:' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% generation %}{{ ' ' + message['content'] + eos_token }}{% endgeneration %}"
    "{% elif message['role'] == 'system' %}"
    "{{ message['content'] + '\\n\\n' }}"
    "{% else %}"
    "{{ raise_exception('plain template: unsupported role ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
)

TEMPLATES: dict[str, str] = {"vicuna": VICUNA, "mistral": MISTRAL, "plain": PLAIN}
FAMILIES = ("vicuna", "mistral", "chat_template", "plain")
