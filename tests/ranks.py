"""Run a function on N local processes joined in a gloo process group, as torchrun would launch them.

`run_ranks(fn, world, *args)` spawns `world` processes with torchrun's environment (MASTER_ADDR/PORT,
WORLD_SIZE, RANK, LOCAL_RANK; one torch thread each, a short collective timeout so a bug fails instead of
hanging) and returns each rank's return value, in rank order. `fn` must be importable (a module-level function)
and return something picklable; a rank that raises fails the call with that rank's traceback.
"""

from __future__ import annotations

import os
import pickle
import socket
import tempfile
import traceback
from pathlib import Path

import torch.multiprocessing as mp

from lacgan.distributed import TIMEOUT_ENV


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, out: str, fn, args) -> None:
    import torch

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    os.environ.setdefault(TIMEOUT_ENV, "120")
    torch.set_num_threads(1)
    try:
        result = ("ok", fn(*args))
    except BaseException:  # noqa: BLE001 - sent back to the parent, which raises
        result = ("error", traceback.format_exc())
    finally:
        from lacgan import distributed

        distributed.stop()
    Path(out, f"rank-{rank}.pkl").write_bytes(pickle.dumps(result))


def run_ranks(fn, world: int, *args) -> list:
    with tempfile.TemporaryDirectory() as out:
        ctx = mp.get_context("spawn")
        port = free_port()
        procs = [ctx.Process(target=_rank_main, args=(r, world, port, out, fn, args)) for r in range(world)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=600)
        results = []
        for r, p in enumerate(procs):
            path = Path(out, f"rank-{r}.pkl")
            if not path.exists():
                p.kill()
                raise RuntimeError(f"rank {r} exited with {p.exitcode} and no result")
            status, value = pickle.loads(path.read_bytes())
            if status == "error":
                raise RuntimeError(f"rank {r} failed:\n{value}")
            results.append(value)
        return results
