"""One keyed statistics channel: `stats.report("loss/D_local/adv/AU12", x)`, averaged and written as JSON lines.

Inside `with stats.collecting(writer):` every `report` goes to `writer`; outside it, reports are dropped, so
library code may report unconditionally. `writer.flush(step)` appends one line {"step": k, key: mean, ...}.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

from lacgan.atomic import write_text

_active: "StatsWriter | None" = None


class StatsWriter:
    def __init__(self, path: Path | None = None):
        self.path = None if path is None else Path(path)
        self._sum: dict[str, float] = defaultdict(float)
        self._n: dict[str, int] = defaultdict(int)

    def report(self, key: str, value) -> None:
        v = float(value.detach().float().mean()) if hasattr(value, "detach") else float(value)
        self._sum[key] += v
        self._n[key] += 1

    def flush(self, step: int) -> dict[str, float]:
        """Write the means since the last flush as one JSON line (when a path is set) and return them."""
        line = {"step": int(step), **{k: self._sum[k] / self._n[k] for k in sorted(self._sum)}}
        self._sum.clear()
        self._n.clear()
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                                    for k, v in line.items()}) + "\n")
        return line

    def truncate_after(self, step: int) -> None:
        """Drop lines written after `step` (a resumed run redoes those steps)."""
        if self.path is None or not self.path.exists():
            return
        keep = [ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
        write_text(self.path, "".join(ln + "\n" for ln in keep))


def report(key: str, value) -> None:
    if _active is not None:
        _active.report(key, value)


@contextmanager
def collecting(writer: StatsWriter):
    global _active
    previous, _active = _active, writer
    try:
        yield writer
    finally:
        _active = previous


def read_stats(path) -> list[dict]:
    """All lines of a stats JSON-lines file."""
    return [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]
