"""The plan (login side): a loaded spec compiled into jobs with content-hash ids (compiler.py, from
grid.py, runs.py, stages.py, chains.py, resources.py, ids.py), its summary and estimates, its JSON,
the hub preflight check and prefetcher (preflight.py, prefetch.py), and the data check run before
anything queues (datacheck.py)."""
