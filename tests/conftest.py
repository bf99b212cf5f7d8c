"""Suite-wide collection rules.

`make test` runs the suite on pytest-xdist workers (`--dist loadgroup`). The tests that drive the one
dev SLURM cluster (tests/slurm, tests/e2e) share its single node, its limits and its accounting, so
they go to one worker, in order, while the other workers run the unit tests beside them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CLUSTER_DIRS = ("slurm", "e2e")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        try:
            top = Path(str(item.fspath)).relative_to(here).parts[0]
        except ValueError:
            continue
        if top in CLUSTER_DIRS:
            item.add_marker(pytest.mark.xdist_group("cluster"))
