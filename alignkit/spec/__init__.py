"""The sweep spec (login side): its shape (model.py), loading (load.py), paths (paths.py), axes
(axes.py), per-section checks (checks.py) and per-run re-checks (override.py). docs/spec.md is
the reference; the sections the jobs read too are the contract's (alignkit/contract/sections.py)."""
