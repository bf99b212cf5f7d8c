"""The eval stage: stage.py loads the model once and runs each benchmark type's `run` hook per checkpoint;
generate.py is the shared generator, sources.py reads benchmark files, task_progress.py the per-task progress."""
