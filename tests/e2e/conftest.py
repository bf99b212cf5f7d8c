"""The end-to-end tests use the real dev cluster, like tests/slurm."""

from tests.slurm.conftest import cluster, sweep  # noqa: F401  (pytest fixtures)
