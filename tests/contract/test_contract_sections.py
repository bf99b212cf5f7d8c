"""The contract's copy of the benchmark types' reference generation lengths agrees with the types
themselves (the compute side and plan's checks read the contract's; the plug-ins declare theirs)."""

from alignkit.plugins import benchmarks
from alignkit.contract.sections import REFERENCE_MAX_NEW_TOKENS


def test_reference_max_new_tokens_match_every_registered_benchmark_type():
    declared = {n: benchmarks.get(n).reference_max_new_tokens for n in benchmarks.BENCHMARKS.names()
                if benchmarks.get(n).reference_max_new_tokens is not None}
    assert declared and REFERENCE_MAX_NEW_TOKENS == declared
