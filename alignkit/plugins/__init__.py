"""Plug-ins: alignment methods (methods/<type>.py) and benchmark types (benchmarks/<type>.py).

Each plug-in is one module registered under the spec's `type:`; its base class and the registry
live in alignkit/contract (methods.py, benchmarks.py, registry.py). The plug-ins are the only code
that may import both halves: their login-side hooks (fields, resolve, check) import the contract;
their compute-side hooks import `jobs/` or a benchmark's `<type>_run.py` module inside the function
(tests/test_import_rules.py enforces it; docs/architecture.md).
"""
