"""The train stage: stage.py runs it (data -> model (LoRA/QLoRA) -> TRL trainer -> save); the rest are its parts."""
