"""Loader for the smoke tasks' data files, which sit beside this file.

lm-eval resolves `dataset_kwargs.data_files` against the process's working directory, so a task
directory that ships its own data uses `custom_dataset` instead: lm-eval calls `load(**dataset_kwargs)`.
"""

from pathlib import Path

import datasets

HERE = Path(__file__).resolve().parent


def load(files: dict, **_: object) -> datasets.DatasetDict:
    return datasets.DatasetDict({split: datasets.Dataset.from_json(str(HERE / name)) for split, name in files.items()})
