"""Numbered progress lines for the converters' long steps."""
import sys
import time
from typing import TextIO


class Progress:
    """Print ``[i/n] message`` as each of ``n`` steps starts, with the time
    the previous one took, flushed at once (conversions of large detectors
    spend minutes building, running and verifying models).

    Args:
        steps (int): How many steps the job has.
        stream (TextIO): Where to print. Default: stdout.
    """

    def __init__(self, steps: int, stream: TextIO = None):
        self.steps, self.index = steps, 0
        self.stream = stream or sys.stdout
        self._last = None

    def __call__(self, message: str) -> None:
        now = time.perf_counter()
        took = '' if self._last is None else \
            f' (previous step {now - self._last:.1f} s)'
        self._last = now
        self.index += 1
        print(f'[{self.index}/{self.steps}] {message}{took}',
              file=self.stream, flush=True)
