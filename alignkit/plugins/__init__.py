"""Plug-ins: alignment methods (methods/<type>.py), benchmark types (benchmarks/<type>.py) and data
formats (formats/<name>.py: pure-python row converters, docs/data.md).

Each plug-in is one module registered under the spec's `type:` (a format: its module name, the spec's
`format:`; its registry is alignkit/plugins/formats/__init__.py); a method's or benchmark's base class and registry
live in alignkit/contract (methods.py, benchmarks.py, registry.py). The plug-ins are the only code
that may import both halves: their login-side hooks (fields, resolve, check) import the contract;
their compute-side hooks import `jobs/` or a benchmark's `<type>_run.py` module inside the function
(tests/test_import_rules.py enforces it; docs/architecture.md).
"""
