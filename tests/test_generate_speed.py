"""The fast generation pipeline: the overlapped in-process stream writes the same bytes as editing each shard's
batches in turn, errors inside the stream stop it cleanly, the generator path is measured once per run, recorded
and reused on resume, threads per worker follow the rule, and --gpus without dask-cuda fails in one line.

Most tests use the labelled TEST STAND-IN editor (tests/standin_editor.py); the path measurement uses the real
LAC-GAN Editor on a smoke-trained checkpoint.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from manifests.aligned import AlignedStore
from pipeline_fixtures import make_store, train_smoke_lacgan
from pipelines import generate as gen
from pipelines import shard_task
from pipelines import synth_store as ss
from pipelines.plan import PlanConfig, build_plan, read_plan
from standin_editor import StandInEditor, write_checkpoint

STANDIN = "standin_editor:StandInEditor"


def cfg(**kw):
    return gen.GenerateConfig(**{"frames_per_shard": 8, "batch_size": 3, "workers": 0, "editor": STANDIN, **kw})


@pytest.fixture()
def setup(tmp_path):
    store = make_store(tmp_path, size=32)
    plan = build_plan(store, tmp_path / "plan.parquet", PlanConfig(policy="balanced", count=10, seed=3))
    return store, plan, write_checkpoint(tmp_path / "ckpt", 32), tmp_path


def edited_shard_by_shard(editor, store, plan, frames_per_shard, batch_size):
    """The reference: each shard's frames edited batch by batch in turn, the seed of each batch's first frame set
    first (what the sequential in-process path did before the stream), with the sources' labels for an editor
    that reads them (as the shard task gives them)."""
    p = read_plan(plan)
    src, lm, labels = AlignedStore.open(store).read(p["source_row"].to_numpy())
    targets = p.filter(like="AU").to_numpy(np.int8)
    out = np.empty_like(src)
    for a, b in ss.shard_ranges(len(p), frames_per_shard):
        for i in range(a, b, batch_size):
            j = min(i + batch_size, b)
            torch.manual_seed(int(p["seed"].iloc[i]))
            extra = {"source_labels": labels[i:j]} if getattr(editor, "uses_source_labels", False) else {}
            out[i:j] = editor.edit(src[i:j], lm[i:j].astype(np.float32), targets[i:j], batch_size=batch_size,
                                   **extra)
    return out


def test_stream_writes_the_bytes_of_the_sequential_path_and_resumes(setup):
    store, plan, ckpt, tmp = setup
    s = gen.generate(plan, store, ckpt, tmp / "out", cfg())
    assert (s.generated, s.shards) == (8, 8)
    ref = edited_shard_by_shard(StandInEditor.load(ckpt), store, plan, 8, 3)
    np.testing.assert_array_equal(ss.open_images(tmp / "out")[:], ref)
    for k in (0, 4, 7):  # as if the run died before committing these shards
        ss.part_path(tmp / "out", k).unlink()
    again = gen.generate(plan, store, ckpt, tmp / "out", cfg())
    assert (again.generated, again.skipped) == (3, 5)
    np.testing.assert_array_equal(ss.open_images(tmp / "out")[:], ref)
    assert gen.synthetic_manifest(tmp / "out")["plan_row"].tolist() == list(range(60))


def test_stream_stops_on_an_unexpected_error_and_keeps_what_was_committed(setup, monkeypatch):
    store, plan, ckpt, tmp = setup
    real = ss.write_part

    def bug(out, shard, part):
        if shard == 2:
            raise ValueError("a bug in shard 2 (injected)")
        return real(out, shard, part)

    monkeypatch.setattr(ss, "write_part", bug)
    with pytest.raises(ValueError, match="injected"):
        gen.generate(plan, store, ckpt, tmp / "out", cfg())
    done = ss.done_shards(tmp / "out", ss.shard_ranges(60, 8))
    assert {0, 1} <= done and 2 not in done and len(done) <= 4  # stopped within the read-ahead
    monkeypatch.setattr(ss, "write_part", real)
    gen.generate(plan, store, ckpt, tmp / "out", cfg())
    np.testing.assert_array_equal(ss.open_images(tmp / "out")[:],
                                  edited_shard_by_shard(StandInEditor.load(ckpt), store, plan, 8, 3))


def test_stream_raises_a_read_error(setup, monkeypatch):
    store, plan, ckpt, tmp = setup
    real = shard_task.read_inputs

    def unreadable(job):
        if job.shard == 1:
            raise OSError("source store unreadable (injected)")
        return real(job)

    monkeypatch.setattr(shard_task, "read_inputs", unreadable)
    with pytest.raises(OSError, match="injected"):
        gen.generate(plan, store, ckpt, tmp / "out", cfg())
    assert ss.done_shards(tmp / "out", ss.shard_ranges(60, 8)) == {0}


def test_dask_workers_write_the_same_bytes_with_their_thread_share(setup):
    store, plan, ckpt, tmp = setup
    s = gen.generate(plan, store, ckpt, tmp / "dask", cfg(workers=2))
    assert s.threads == max(1, gen._cores() // 2)
    assert json.loads((tmp / "dask" / "generation.json").read_text())["threads_per_worker"] == s.threads
    np.testing.assert_array_equal(ss.open_images(tmp / "dask")[:],
                                  edited_shard_by_shard(StandInEditor.load(ckpt), store, plan, 8, 3))


def test_thread_rule():
    assert gen._threads(gen.GenerateConfig(workers=0)) is None  # in-process: the caller's setting
    assert gen._threads(gen.GenerateConfig(workers=1)) == gen._cores()
    assert gen._threads(gen.GenerateConfig(workers=2 * gen._cores())) == 1
    assert gen._threads(gen.GenerateConfig(workers=2, threads=3)) == 3
    assert gen._threads(gen.GenerateConfig(scheduler="tcp://x:1")) is None  # a foreign cluster keeps its own


def test_gpus_without_dask_cuda_is_one_clear_line_and_writes_nothing(setup, monkeypatch, capsys):
    from flows.cli import main

    store, plan, ckpt, tmp = setup
    monkeypatch.setitem(sys.modules, "dask_cuda", None)  # importing it now fails, as when it is not installed
    with pytest.raises(gen.GenerationError, match=r"--gpus 2 needs dask-cuda.*lacgan-augment\[gpu\]"):
        gen.generate(plan, store, ckpt, tmp / "out", cfg(gpus=2))
    rc = main(["generate", "--plan", str(plan), "--store", str(store), "--checkpoint", str(ckpt), "--out",
               str(tmp / "out"), "--gpus", "1", "--editor", STANDIN])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "needs dask-cuda" in err[0] and "Traceback" not in err[0]
    assert not (tmp / "out").exists()


def test_settings_are_refused_for_an_editor_without_configure(setup):
    store, plan, ckpt, tmp = setup
    with pytest.raises(gen.GenerationError, match="no configure"):
        gen.generate(plan, store, ckpt, tmp / "out", cfg(precision="bf16"))
    with pytest.raises(gen.GenerationError, match="path must be"):
        cfg(path="fastest")


@pytest.fixture(scope="module")
def lacgan_run(aligned_store, tmp_path_factory):
    return train_smoke_lacgan(aligned_store, tmp_path_factory.mktemp("speed") / "lacgan")


def test_path_is_measured_once_recorded_and_reused_on_resume(aligned_store, lacgan_run, tmp_path):
    from lacgan.infer import Editor

    plan = build_plan(aligned_store, tmp_path / "plan.parquet", PlanConfig(policy="balanced", count=4, seed=1))
    rule = gen.generate(plan, aligned_store, lacgan_run, tmp_path / "rule", gen.GenerateConfig(workers=0))
    assert rule.settings == {"loop": True}  # the default rule on the CPU
    assert json.loads((tmp_path / "rule" / "generation.json").read_text())["path_measurement"]["rule"] == "cpu: loop"
    c = gen.GenerateConfig(frames_per_shard=8, batch_size=4, workers=0, path="measure")
    s = gen.generate(plan, aligned_store, lacgan_run, tmp_path / "out", c)
    meta = json.loads((tmp_path / "out" / "generation.json").read_text())
    m = meta["path_measurement"]
    assert set(m["frames_per_s"]) == {"grouped", "loop"} and m["choice"] == max(m["frames_per_s"],
                                                                                 key=m["frames_per_s"].get)
    assert meta["editor_settings"] == s.settings == {"loop": m["choice"] == "loop"} and s.tune_s > 0
    # the shards are the frames of the Editor on the recorded path
    editor = Editor.load(lacgan_run, device="cpu").configure(loop=s.settings["loop"])
    out = ss.open_images(tmp_path / "out")[:]
    np.testing.assert_array_equal(out, edited_shard_by_shard(editor, aligned_store, plan, 8, 4))
    # resume: the recorded choice is kept (here forced to the other path, so a re-measurement would show)
    meta["editor_settings"] = {"loop": not s.settings["loop"]}
    ss.write_json(tmp_path / "out" / "generation.json", meta)
    ss.part_path(tmp_path / "out", 1).unlink()
    again = gen.generate(plan, aligned_store, lacgan_run, tmp_path / "out", c)
    assert again.generated == 1 and again.tune_s == 0 and again.settings == {"loop": not s.settings["loop"]}
    # the two paths agree to within one grey level on the re-done shard
    diff = np.abs(ss.open_images(tmp_path / "out")[8:16].astype(int) - out[8:16].astype(int))
    assert diff.max() <= 1


def test_bf16_autocast_stays_within_one_grey_level_and_local(aligned_store, lacgan_run):
    from lacgan.infer import Editor
    from lacgan.regions import attention_maps

    rows = AlignedStore.open(aligned_store).ok_rows()[:12]
    src, lm, _ = AlignedStore.open(aligned_store).read(rows)
    targets = np.random.default_rng(0).integers(-1, 2, (len(rows), 12)).astype(np.int8)
    editor = Editor.load(lacgan_run, device="cpu")
    f32 = editor.edit(src, lm, targets, batch_size=4)
    import torch

    from lacgan.regions import REGION_GROUPS, AU_REGION

    x = torch.rand(2, editor.G.G, 3, *editor.G.window) * 2 - 1
    lab = torch.ones(2, 12, dtype=torch.long)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = editor.G(x, lab).float()
    with torch.no_grad():
        assert not torch.equal(low, editor.G(x, lab))  # bf16 autocast does change the generator's arithmetic
    active = np.zeros((len(rows), 12), bool)  # an AU's region is active when any AU of its group is targeted
    for g, aus in enumerate(REGION_GROUPS):
        members = [i for i in range(12) if AU_REGION[i] == g]
        active[:, members] = (targets[:, members] >= 0).any(axis=1, keepdims=True)
    for loop in (False, True):
        bf16 = editor.configure(precision="bf16", loop=loop).edit(src, lm, targets, batch_size=4)
        diff = np.abs(bf16.astype(int) - f32.astype(int))
        assert diff.max() <= 1  # by one grey level at most
        maps = attention_maps(lm, editor.size, editor.config.net.regions) * active[:, :, None, None]
        outside = (maps == 0).all(axis=1)  # (n, S, S): outside every active region
        assert outside.any() and diff.max(axis=-1)[outside].max() == 0
        assert (bf16.astype(int) - src.astype(int))[outside].max() == 0  # locality: exactly the source there
    editor.configure(precision="float32", loop=False)
    np.testing.assert_array_equal(editor.edit(src, lm, targets, batch_size=4), f32)
    with pytest.raises(ValueError, match="precision"):
        editor.configure(precision="fp8")


def test_edit_strength_scales_edits_stays_local_and_is_recorded(aligned_store, lacgan_run, tmp_path):
    """The editor's strength (None: the checkpoint's, 1): a stronger edit moves the edited regions further from
    the source and leaves every pixel outside them exactly the source; generation records it, writes what the
    editor at that strength writes, and refuses to resume an output with another strength."""
    from lacgan.infer import Editor
    from lacgan.regions import attention_maps

    rows = AlignedStore.open(aligned_store).ok_rows()[:8]
    src, lm, labels = AlignedStore.open(aligned_store).read(rows)
    targets = np.where(labels == 1, 0, 1).astype(np.int8)  # every known AU flipped; unknown ones set present
    editor = Editor.load(lacgan_run, device="cpu")
    assert editor.strength is None and editor.config.net.edit_strength == 1.0
    base = editor.edit(src, lm, targets, batch_size=4, source_labels=labels)
    np.testing.assert_array_equal(editor.configure(strength=1.0).edit(src, lm, targets, 4, labels), base)
    strong = editor.configure(strength=3.0).edit(src, lm, targets, 4, labels)
    change = lambda out: np.abs(out.astype(int) - src.astype(int))  # noqa: E731
    maps = attention_maps(lm, editor.size, editor.config.net.regions)
    inside, outside = (maps > 0).any(axis=1), (maps == 0).all(axis=1)
    assert change(strong).max(axis=-1)[inside].mean() > change(base).max(axis=-1)[inside].mean()
    assert change(strong).max(axis=-1)[outside].max() == 0  # locality holds at any strength
    with pytest.raises(ValueError, match="must be > 0"):
        editor.configure(strength=-1.0)
    editor.configure(strength=1.0)

    plan = build_plan(aligned_store, tmp_path / "plan.parquet", PlanConfig(policy="balanced", count=6, seed=2))
    c = gen.GenerateConfig(frames_per_shard=4, batch_size=4, workers=0, path="loop", strength=3.0)
    s = gen.generate(plan, aligned_store, lacgan_run, tmp_path / "out", c)
    meta = json.loads((tmp_path / "out" / "generation.json").read_text())
    assert s.settings == meta["editor_settings"] == {"strength": 3.0, "loop": True} and meta["edit_strength"] == 3.0
    ref = Editor.load(lacgan_run, device="cpu").configure(loop=True, strength=3.0)
    np.testing.assert_array_equal(ss.open_images(tmp_path / "out")[:], edited_shard_by_shard(ref, aligned_store,
                                                                                             plan, 4, 4))
    with pytest.raises(ss.SynthStoreError, match="edit_strength=3.0, this run has 2.0"):
        gen.generate(plan, aligned_store, lacgan_run, tmp_path / "out", gen.GenerateConfig(
            frames_per_shard=4, batch_size=4, workers=0, path="loop", strength=2.0))
    with pytest.raises(gen.GenerationError, match="strength must be > 0"):
        gen.GenerateConfig(strength=0.0)
