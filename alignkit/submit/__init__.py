"""`alignkit submit`'s side of the login node: profiles (profiles.py), the sweep directory (sweepdir.py),
its crash-safe journal (journal.py), writing and queueing a plan (launch.py) and the local executor's
detached driver (localrun.py). Kept free of imports so that plan/ can read profiles without a cycle."""
