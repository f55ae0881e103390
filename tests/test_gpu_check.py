"""bench/gpu_check.sh: the CPU fallback end to end (every row measured), and the pure parts of bench/gpu_check.py
(the device choice, stats parsing, the table, failure lines, the peak-memory plugin)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_check as gc  # noqa: E402

CPU = gc.Setup("cpu", 2, "torch sees no CUDA device")
CUDA = gc.Setup("cuda", 4)


def table_rows(text: str) -> dict[str, list[str]]:
    """{row label: its other cells} of the Markdown table the check prints."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 5 and cells[0] != "row":
            rows[cells[0]] = cells[1:]
    return rows


# ---- end to end ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cpu_fallback_runs_every_row_with_numbers():
    cmd = ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--device", "cpu", "--preset", "smoke", "--steps", "3",
           "--frames", "16", "--frames-per-shard", "8", "--batch-size", "8", "--train-batch-size", "4"]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    took = time.monotonic() - t0
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr[-3000:]}"
    first = r.stdout.splitlines()[0]
    assert first.startswith("GPU check: CPU FALLBACK (--device cpu was given)"), first
    rows = table_rows(r.stdout)
    assert list(rows) == [row.label(CPU) for row in gc.ROWS], rows  # every row, in table order, on the CPU
    for label, (value, memory, device, note) in rows.items():
        unit = "frames/s" if "generation" in label else "s/step"
        number = re.fullmatch(rf"(\S+) {re.escape(unit)}", value)
        assert number and float(number.group(1)) > 0, (label, value)
        assert memory == "n/a (cpu)", (label, memory)
        many = "via Dask" in label or "DDP" in label
        assert device == ("cpu × 2" if many else "cpu"), (label, device)  # one peak record per worker / rank
    ddp = rows["LAC-GAN training, DDP on 2 CPU processes"][3]
    assert "batch 4, 2 per rank; median of steps 2-3" in ddp
    assert "GANimation: its training row's" in r.stdout and "training: preset smoke, 3 steps" in r.stdout
    print(f"CPU fallback check: {took:.0f} s")


# ---- the device and the sizes ---------------------------------------------------------------------------
def test_device_choice():
    assert gc.choose_setup("auto", 0, None) == CPU
    assert gc.choose_setup("cpu", 8, None) == gc.Setup("cpu", 2, "--device cpu was given")
    assert gc.choose_setup("auto", 4, None) == CUDA
    assert gc.choose_setup("cuda", 4, 2) == gc.Setup("cuda", 2)
    for args, msg in ((("cuda", 0, None), "sees no CUDA"), (("auto", 2, 3), "only 2 CUDA"),
                      (("auto", 2, 0), ">= 1"), (("gpu", 2, None), "auto, cuda or cpu")):
        with pytest.raises(ValueError, match=msg):
            gc.choose_setup(*args)


def test_sizes_and_options():
    gpu = gc.default_sizes(CUDA)
    assert (gpu.size, gpu.frames, gpu.train_batch, gpu.steps, gpu.train_preset) == (200, 1152, 16, 20, "paper")
    assert gc.default_sizes(gc.Setup("cuda", 32)).train_batch == 32  # every rank holds at least one face
    cpu = gc.default_sizes(CPU)
    assert (cpu.size, cpu.train_preset, cpu.size_preset, cpu.steps) == (64, "demo", "demo", 20)
    assert gc.check_options(cpu, ["lacgan-gen-1"]) is None
    assert "unknown rows nope" in gc.check_options(cpu, ["nope"])
    assert "--steps must be >= 2" in gc.check_options(gc.Sizes(64, 8, 8, 8, 4, 1), ["lacgan-gen-1"])
    assert "trains 200-px faces" in gc.check_options(gc.Sizes(64, 8, 8, 8, 4, 3, preset="paper"), ["lacgan-gen-1"])
    assert sorted(gc.RUN_ORDER) == sorted(r.key for r in gc.ROWS)
    assert gc.RUN_ORDER.index("ganimation-train-1") < gc.RUN_ORDER.index("ganimation-gen-1")


def test_row_labels():
    labels = [r.label(CUDA) for r in gc.ROWS]
    assert labels[:4] == ["LAC-GAN generation, 1 GPU", "LAC-GAN generation, 4 GPUs via Dask",
                          "LAC-GAN training, 1 GPU", "LAC-GAN training, DDP on 4 GPUs"]
    assert gc.BY_KEY["lacgan-gen-all"].label(CPU) == "LAC-GAN generation, 2 CPU processes via Dask"


# ---- parsing and the table ----------------------------------------------------------------------------------
def test_step_time_skips_the_warm_up_and_refuses_two_writers():
    lines = [{"step": k, "time/step_s": t} for k, t in zip(range(1, 6), (9.0, 0.2, 0.4, 0.3, 0.1))]
    assert gc.step_time(lines, 5) == pytest.approx(0.25)  # median of steps 2-5; step 1's 9 s left out
    with pytest.raises(ValueError, match=r"steps \[1, 2\] were written more than once"):
        gc.step_time(lines[:2] + lines[:2], 2)  # e.g. two ranks that each trained alone
    with pytest.raises(ValueError, match=r"steps \[3\] are missing"):
        gc.step_time(lines[:2] + lines[3:], 5)


def test_memory_and_device_cells():
    peaks = [{"device": "cuda:0", "name": "A100", "peak_mb": 1500.4}, {"device": "cuda:0", "name": "A100",
                                                                       "peak_mb": 1700.6}]
    assert gc.memory_cell(peaks, "cuda") == "1701 (max of 2: 1500, 1701)"
    assert gc.memory_cell(peaks[:1], "cuda") == "1500"
    assert gc.memory_cell(peaks, "cpu") == "n/a (cpu)"
    assert gc.device_cell(peaks, "cuda") == "2 × A100" and gc.device_cell(peaks[:1], "cuda") == "A100"
    assert gc.device_cell([{"device": "cpu"}] * 2, "cpu") == "cpu × 2"


def test_table_failures_and_exit_code():
    results = {"lacgan-gen-1": gc.Result("ok", 123.456, "frames/s", [{"device": "cuda:0", "name": "T4",
                                                                      "peak_mb": 900.0}], "256 frames"),
               "lacgan-gen-all": gc.Result("n/a", note="--gpus 4 needs dask-cuda, which is not installed"),
               "lacgan-train-ddp": gc.Result("failed", note="RuntimeError: NCCL error | bad")}
    rows = table_rows(gc.format_table(results, CUDA))
    assert rows == {"LAC-GAN generation, 1 GPU": ["123.5 frames/s", "900", "T4", "256 frames"],
                    "LAC-GAN generation, 4 GPUs via Dask": ["n/a", "-", "-",
                                                            "--gpus 4 needs dask-cuda, which is not installed"],
                    "LAC-GAN training, DDP on 4 GPUs": ["failed: RuntimeError: NCCL error / bad", "-", "-", ""]}
    assert gc.value_cell(gc.Result("ok", 0.012345, "s/step")) == "0.0123 s/step"
    assert gc.exit_code(results) == 1  # a failed row fails the check...
    del results["lacgan-train-ddp"]
    assert gc.exit_code(results) == 0  # ...a row not measurable here (n/a) does not
    first = gc.header(CPU, gc.default_sizes(CPU))[0]
    assert first.startswith("GPU check: CPU FALLBACK (torch sees no CUDA device)")
    assert not gc.header(CUDA, gc.default_sizes(CUDA))[0].startswith("GPU check: CPU")


def test_failure_reason_is_the_error_line():
    tb = ("lacgan train: LAC-GAN preset demo\nTraceback (most recent call last):\n  File \"x.py\", line 3, in f\n"
          "    g()\nRuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
          "W0101 12:00:00.000 torch/distributed/elastic: sending SIGTERM\n")
    assert gc.failure_reason(tb, 1) == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert gc.failure_reason("lacgan train: error: store.zarr: no such store\n", 2) == \
        "lacgan train: error: store.zarr: no such store"
    torchrun = ("lacgan train: error: ganimation trains in one process\n"
                "E1201 19:58:35.496000 13264 api.py:1002] failed (exitcode: 2) local_rank: 0\n"
                "Traceback (most recent call last):\n    raise ChildFailedError(\n"
                "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n=====\n"
                "  traceback : Signal 15 (SIGTERM) received by PID 13270\n=====\n")
    assert gc.failure_reason(torchrun, 1) == "lacgan train: error: ganimation trains in one process"  # the rank's
    assert gc.failure_reason("", 3) == "exit code 3"
    assert gc.failure_reason("anything", None) == "timed out"


def test_commands_are_argument_lists(tmp_path):
    one = gc.train_command("lacgan", "S.zarr", tmp_path / "run", tmp_path / "c.json", "cuda", "auto",
                           tmp_path / "peaks", None)
    ddp = gc.train_command("lacgan", "S.zarr", tmp_path / "run", tmp_path / "c.json", "cuda", "auto",
                           tmp_path / "peaks", 4)
    assert one[0] == sys.executable and one[2:4] == ["--train-rank", str(tmp_path / "peaks")]
    assert ddp[:6] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4"]
    assert ddp[6:] == one[1:] and one[4:7] == ["--", "train", "--model"]
    cfg = json.loads(gc.train_config("ganimation", gc.Sizes(64, 8, 8, 8, 4, 7), tmp_path / "g.json").read_text())
    assert cfg["train"].items() >= {"steps": 7, "batch_size": 4, "log_every": 1, "checkpoint_every": 7}.items()


# ---- peak memory from Dask workers ----------------------------------------------------------------------
def test_peak_plugin_writes_after_finished_tasks_only(tmp_path):
    class Worker:  # what the plugin reads of a Dask worker: the results it holds
        data = {"shard-0-a": {"frames": 8, "load_s": 2.5, "model_s": 1.0}, "shard-1-b": {"frames": 6, "load_s": 0.0},
                "device_rule-c": {"choice": "loop"}}

    plugin = gc.PeakMemory(str(tmp_path / "peaks"))
    plugin.setup(Worker())
    plugin.transition("shard-0-a", "executing", "error")
    assert list((tmp_path / "peaks").iterdir()) == []
    for key in Worker.data:
        plugin.transition(key, "executing", "memory")
    (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "peaks").iterdir()]
    assert rec["device"] == "cpu" and rec["peak_mb"] is None and rec["host_mb"] > 0
    assert (rec["frames"], rec["load_s"]) == (14, 2.5)  # every shard's frames, its longest checkpoint load


def test_rate_leaves_out_the_checkpoint_loads():
    assert gc.loaded_rate(100, 5.0, [0.0]) == (20.0, 0.0)  # in-process: loaded before the shards
    assert gc.loaded_rate(100, 5.0, [1.0, 0.0, 3.0]) == (50.0, 3.0)  # workers load in parallel: the longest
    assert gc.loaded_rate(100, 5.0, [6.0]) == (20.0, 0.0)  # nonsense load: the library's rate as it is
    assert gc.loaded_rate(0, 0.0, []) == (0.0, 0.0)


def test_gpus_without_dask_cuda_is_the_librarys_line(tmp_path, monkeypatch):
    """On CUDA without dask-cuda the Dask row is n/a with generate's own one-line error, not a failed check."""
    monkeypatch.setitem(sys.modules, "dask_cuda", None)  # importing it fails, as when it is not installed
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "dask_cuda" else object())
    inputs = {"plan": "p.parquet", "store": "s.zarr", "checkpoints": {"lacgan": "ck"}}  # never read: it stops first
    r = gc.measure_generation(gc.BY_KEY["lacgan-gen-all"], gc.Setup("cuda", 2), gc.default_sizes(CPU), inputs,
                              tmp_path)
    assert r["status"] == "n/a" and "--gpus 2 needs dask-cuda, which is not installed" in r["note"]
    assert not (tmp_path / "out-lacgan-gen-all").exists()


def test_rank_share():
    assert gc.rank_share(16, 4) == "4" and gc.rank_share(16, 3) == "5-6" and gc.rank_share(8, 16) == "0-1"


def test_training_result_from_what_the_ranks_wrote(tmp_path):
    sizes = gc.Sizes(64, 12, 6, 6, 4, 3)
    out, peaks = tmp_path / "run", tmp_path / "peaks"
    out.mkdir(), peaks.mkdir()

    def write(ranks, steps, world=2):
        for p in peaks.iterdir():
            p.unlink()
        for k in ranks:
            (peaks / f"rank-{k}.json").write_text(json.dumps({"device": "cpu", "peak_mb": None, "world": world}))
        (out / "stats.jsonl").write_text("".join(json.dumps({"step": k, "time/step_s": 0.1 * k}) + "\n"
                                                 for k in steps))
        return gc.train_result(out, peaks, 2, sizes, "lacgan train: ..., identity loss off")

    r = write([0, 1], [1, 2, 3])
    assert (r.status, r.value, len(r.peaks)) == ("ok", pytest.approx(0.25), 2)
    assert r.note == "3 steps, batch 4, 2 per rank; median of steps 2-3; identity loss off"
    assert write([0, 1], [1, 2, 3], world=None).status == "ok"  # the group was already gone: stats decide
    assert write([0], [1, 2, 3]).note == "1 of 2 processes recorded their peak memory"
    assert "world size seen: 1" in write([0, 1], [1, 2, 3], world=1).note
    assert "written more than once" in write([0, 1], [1, 1, 2, 2, 3, 3], world=None).note  # each trained alone


def test_cpu_processes_share_the_cores():
    assert gc.cpu_threads(2, cores=2) == 1 and gc.cpu_threads(2, cores=8) == 4 and gc.cpu_threads(4, cores=2) == 1
    assert gc.child_env(CPU)["OMP_NUM_THREADS"] == str(gc.cpu_threads(2))
    assert gc.child_env(CUDA).get("OMP_NUM_THREADS") == os.environ.get("OMP_NUM_THREADS")  # GPUs: left alone
    assert gc.child_env(CUDA)["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT / "bench")
