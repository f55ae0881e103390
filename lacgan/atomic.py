"""Writing a file so that a reader sees the old content or the new, never a part of it: write a temporary file
beside the target, then rename it over the target (`os.replace`, atomic within one filesystem). Every file
writer of lacgan/, detectors/ and pipelines/ goes through here.

    with replacing(path) as tmp:      # any writer: pq.write_table(table, tmp), torch.save(obj, tmp), ...
        write(tmp)
    write_text(path, text); write_bytes(path, data)

The temporary name is hidden and unique to the process and call (`.NAME.PID.RANDOM.tmp`), so two writers of
one path never share it; it is removed when the write raises. It ends in `.tmp`, not in the target's suffix:
writers that pick a format by the suffix are given the format explicitly.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path) -> Iterator[Path]:
    """A temporary path beside `path` to write; renamed onto `path` when the block ends, removed if it raises."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)


def write_bytes(path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)
