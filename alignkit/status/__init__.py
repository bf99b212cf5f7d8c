"""`alignkit status`'s side: one state per job from the journal, the backends and the files on disk
(state.py), and what a person sees of it (view.py)."""
