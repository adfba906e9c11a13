"""A time budget for one request's work, checked between its steps.

Pure: it reads only the monotonic clock. The work checks the budget at points where stopping leaves
nothing half-done (between searches, between geometry steps); a step that started always finishes,
so the first search of a request always runs. `check()` raises BudgetExceeded (the server is busy:
503), `check(param=...)` raises InvalidInput naming the parameter whose size made the work costly (422).
"""

from __future__ import annotations

import time

from geo._errors import BudgetExceeded, InvalidInput


class Budget:
    __slots__ = ("_end", "seconds", "what")

    def __init__(self, seconds: float, *, what: str) -> None:
        self.seconds = float(seconds)
        self.what = what
        self._end = time.monotonic() + self.seconds

    def left_s(self) -> float:
        return self._end - time.monotonic()

    def check(self, *, param: str | None = None) -> None:
        """Raise if the budget is spent: InvalidInput(param) when `param` is given, else BudgetExceeded."""
        if time.monotonic() <= self._end:
            return
        if param is not None:
            raise InvalidInput(
                param,
                f"is too costly: {self.what} did not finish within the {self.seconds:g} s budget of a "
                "request; send a shorter or simpler one",
            )
        raise BudgetExceeded(
            f"{self.what} did not finish within the {self.seconds:g} s budget of a request; "
            "retry shortly or ask for less"
        )
