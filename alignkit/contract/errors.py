"""Errors a user can fix. The CLI prints each as one line and exits 2, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a spec, a profile, a sweep directory, a command-line argument."""


class SpecError(UserError):
    """One or more problems in a sweep spec; each is one line naming the file, line and key."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
