"""Builders of the committed offline test assets (docs/collect.md "Test fixtures and asset builders").

    python -m assets.build.smoke_data      --out assets/smoke-data     the smoke preference data
    python -m assets.build.tiny_model      --out assets/tiny-llama     the tiny Llama (trains on the above)
    python -m assets.build.tiny_classifier --out assets/tiny-toxicity  the tiny toxicity classifier

Test fixtures, not product code: nothing under alignkit/ or jobs/ imports them
(tests/test_fixture_layout.py checks it). `make assets` rebuilds whichever asset is missing.
"""
