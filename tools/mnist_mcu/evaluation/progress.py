"""Progress of a long run: a tqdm bar on a terminal, otherwise (CI logs, pipes) one plain
line every few seconds with images done, rate and time left."""

from __future__ import annotations

import sys
import threading
import time


class Progress:
    def __init__(self, total: int, desc: str, enabled: bool | None = None, every: float = 5.0, stream=None):
        self.total, self.desc, self.every = total, desc, every
        self.stream = stream or sys.stderr
        self.done = 0
        self._lock = threading.Lock()
        self._t0 = self._last = time.monotonic()
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._bar = None
        self._lines = False
        if enabled is False:
            return
        if tty:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="img", smoothing=0.1, dynamic_ncols=True,
                             leave=True, file=self.stream)
        else:
            self._lines = True

    def update(self, n: int = 1):
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(n)
            elif self._lines:
                now = time.monotonic()
                if now - self._last >= self.every:
                    self._last = now
                    self._line(now)

    def _line(self, now: float):
        elapsed = max(now - self._t0, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        left_txt = f"{left:.0f} s left" if left != float("inf") else "time left unknown"
        print(f"{self.desc}: {self.done}/{self.total} images, {rate:.0f} images/s, {left_txt}",
              file=self.stream, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()


def eta(start: float, done: int, total: int) -> str:
    """'12 s, 34 s left' after `done` of `total` steps begun at time.perf_counter() `start`."""
    elapsed = time.perf_counter() - start
    return f"{elapsed:.0f} s, {elapsed / max(done, 1) * (total - done):.0f} s left"
