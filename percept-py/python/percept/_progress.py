"""``progress=True``: a tqdm bar when tqdm is installed, else one updating line on stderr."""

import sys
import time
from typing import Any, Callable, Optional

__all__ = ["make_progress"]


class _Bar:
    """Receives (step, steps) after each denoising step. Several runs (batches, ensemble members)
    may each count from 1 again: the bar counts every step of the call."""

    def __init__(self, desc: str):
        self._desc = desc
        self._last = 0
        self._done = 0
        self._total = 0
        self._tqdm: Optional[Any] = None
        try:
            from tqdm.auto import tqdm  # type: ignore[import-not-found]

            self._tqdm = tqdm(desc=desc, unit="step", leave=False)
        except ImportError:
            self._start = time.monotonic()

    def __call__(self, step: int, steps: int) -> None:
        if step <= self._last:  # a new run started counting
            self._total += steps
        elif self._total == 0:
            self._total = steps
        self._done += step - (self._last if step > self._last else 0)
        self._last = step
        if self._tqdm is not None:
            if self._tqdm.total != self._total:
                self._tqdm.total = self._total
                self._tqdm.refresh()
            self._tqdm.update(self._done - self._tqdm.n)
        else:
            elapsed = time.monotonic() - self._start
            sys.stderr.write(f"\r{self._desc}: step {self._done}/{self._total} ({elapsed:.1f} s)")
            sys.stderr.flush()

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
        elif self._done:
            sys.stderr.write("\n")
            sys.stderr.flush()


def make_progress(progress: Any, desc: str) -> "tuple[Optional[Callable[[int, int], Any]], Callable[[], None]]":
    """(callback for the engine or None, close function) for a task's ``progress`` argument:
    False/None (nothing), True (a bar), or a function ``f(step, steps)``, which may return False
    to stop the call (CancelledError)."""
    if progress is None or progress is False:
        return None, lambda: None
    if progress is True:
        bar = _Bar(desc)
        return bar, bar.close
    if callable(progress):
        return progress, lambda: None
    raise TypeError(f"progress: expected True, False or a function f(step, steps), got {type(progress).__name__}")
