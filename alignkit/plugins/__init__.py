"""Plug-ins: the only code that may import both halves (the compute side lazily); one package per registry."""
