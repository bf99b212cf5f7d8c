"""The judge stage: stage.py scores stored generations with each benchmark type's `score` hook; judges.py the clients."""
