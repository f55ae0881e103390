"""Progress of the long loops a person waits for (training, caching): a tqdm bar on a terminal, or plain lines with
rate, ETA and the latest losses where nobody sees a bar. Inside a flow the trainers run in a child process whose
output reaches Prefect's logger line by line (`flows.tasks.run_cli`), and a bar's carriage returns would arrive
as one line at the end: there the mode is "log".

    bar = progress(range(start, end), total=end, initial=start, desc="lacgan train", mode="log")
    for step in bar:
        ...
        bar.set_postfix(G=f"{g:.3f}")
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

MODES = ("bar", "log", "off")  # a tqdm bar; a line every `every_s` seconds (and at the end); nothing


def progress(iterable, *, total: int, desc: str, initial: int = 0, mode: str | bool = "bar",
             every_s: float = 15.0, leave: bool = True):
    """An iterator over `iterable` that shows progress in `mode` (True = "bar", False = "off")."""
    mode = {True: "bar", False: "off"}.get(mode, mode)
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {MODES}, got {mode!r}")
    if mode == "log":
        return LogProgress(iterable, total=total, desc=desc, initial=initial, every_s=every_s)
    return tqdm(iterable, total=total, initial=initial, desc=desc, disable=mode == "off", dynamic_ncols=True,
                leave=leave)


class LogProgress:
    """tqdm's two methods the trainers use (iteration, `set_postfix`), printed as lines to stdout:
    `lacgan train: 300/1500 (20%), 3.1 it/s, elapsed 1m37s, ETA 6m27s, G=1.234 pix=0.091`."""

    def __init__(self, iterable, *, total: int, desc: str, initial: int = 0, every_s: float = 15.0, out=None):
        self.iterable, self.total, self.desc, self.initial, self.every_s = iterable, total, desc, initial, every_s
        self.out = out or sys.stdout
        self.postfix: dict = {}
        self.n = initial

    def set_postfix(self, **values) -> None:
        self.postfix = values

    def __iter__(self):
        t0 = last = time.monotonic()
        for item in self.iterable:
            yield item
            self.n += 1
            now = time.monotonic()
            if now - last >= self.every_s or self.n == self.total:
                last = now
                print(self.line(now - t0), file=self.out, flush=True)

    def line(self, elapsed: float) -> str:
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 else float("nan")
        left = (self.total - self.n) / rate if rate > 0 else float("nan")
        pct = 100 * self.n / self.total if self.total else 100.0
        tail = "".join(f" {k}={v}" for k, v in self.postfix.items())
        return (f"{self.desc}: {self.n}/{self.total} ({pct:.0f}%), {rate:.2f} it/s, elapsed {_clock(elapsed)}, "
                f"ETA {_clock(left)}{',' if tail else ''}{tail}")


def _clock(seconds: float) -> str:
    if seconds != seconds:  # nan: no rate yet
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
