"""The compute-node half of alignkit: {train,eval,judge,merge,data}/ per stage, entry.py and runner.py
(what a job runs), errors/progress/tracking shared. Imports torch and friends; imports from alignkit
only alignkit.contract and alignkit.plugins (tests/test_import_rules.py)."""
