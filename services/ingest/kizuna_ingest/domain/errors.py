from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    field: str
    problem: str

    def at(self, index: int) -> Problem:
        return Problem(f"batch[{index}].{self.field}", self.problem)


class InvalidCall(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.detail = Problem(field, problem)


class TooLarge(Exception):
    """Over a size limit: answered with 413."""
