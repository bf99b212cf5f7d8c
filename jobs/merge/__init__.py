"""The merge stage: stage.py folds adapters into full models and merges them; methods.py maps our methods to mergekit."""
