"""Sharded generation: output layout, resumption, faults (disk full, a dying worker), bad inputs.

Most tests use `standin_editor.StandInEditor`, a labelled TEST STAND-IN with the Editor's interface (see that
module); `test_real_editor_generates` runs the real `lacgan.infer.Editor` on a smoke-trained checkpoint.
"""

from __future__ import annotations

import errno
import shutil

import numpy as np
import pytest
import zarr

from lacgan.regions import attention_maps
from manifests.aligned import AlignedStore
from pipeline_fixtures import make_store
from pipelines import generate as gen
from pipelines import synth_store as ss
from pipelines.plan import PlanConfig, build_plan, read_plan, write_plan
from standin_editor import write_checkpoint

STANDIN = "standin_editor:StandInEditor"


def cfg(**kw):
    return gen.GenerateConfig(**{"frames_per_shard": 8, "workers": 0, "editor": STANDIN, **kw})


@pytest.fixture()
def setup(tmp_path):
    store = make_store(tmp_path, size=32)
    plan = build_plan(store, tmp_path / "plan.parquet", PlanConfig(policy="balanced", count=10, seed=3))
    ckpt = write_checkpoint(tmp_path / "ckpt", 32)
    return store, plan, ckpt, tmp_path


def images(out):
    return ss.open_images(out)[:]


def test_layout_provenance_and_locality(setup):
    store, plan, ckpt, tmp = setup
    s = gen.generate(plan, store, ckpt, tmp / "out", cfg())
    assert (s.frames, s.shards, s.generated, s.skipped) == (60, 8, 8, 0)
    g = zarr.open_group(str(tmp / "out" / ss.STORE_NAME), mode="r")
    assert g["images"].shards == (8, 32, 32, 3) and g["images"].dtype == np.uint8
    p = read_plan(plan)
    np.testing.assert_array_equal(g["target_labels"][:], p.filter(like="AU").to_numpy())
    np.testing.assert_array_equal(g["source_row"][:], p["source_row"])
    man = gen.synthetic_manifest(tmp / "out")
    assert man["plan_row"].tolist() == list(range(60))
    assert man["checkpoint_sha256"].nunique() == 1 and len(man["checkpoint_sha256"][0]) == 64
    assert (man["package_version"] != "").all() and set(man["shard"]) == set(range(8))
    # edited frames differ from their sources inside the regions only
    src, lm, _ = AlignedStore.open(store).read(p["source_row"].to_numpy())
    out = images(tmp / "out")
    outside = (attention_maps(lm, 32) == 0).all(axis=1)
    diff = np.abs(out.astype(int) - src.astype(int)).max(axis=-1)
    assert diff[outside].max() == 0 and diff[~outside].max() > 0


def test_rerun_regenerates_only_missing_shards(setup):
    store, plan, ckpt, tmp = setup
    gen.generate(plan, store, ckpt, tmp / "full", cfg())
    gen.generate(plan, store, ckpt, tmp / "out", cfg())
    for k in (2, 5):
        ss.part_path(tmp / "out", k).unlink()  # as if the run died before committing these shards
    with pytest.raises(ss.SynthStoreError, match="2 of 8 shards are not done"):
        ss.read_parts(tmp / "out")
    s = gen.generate(plan, store, ckpt, tmp / "out", cfg())
    assert (s.generated, s.skipped) == (2, 6)
    np.testing.assert_array_equal(images(tmp / "out"), images(tmp / "full"))
    assert len(gen.synthetic_manifest(tmp / "out")) == 60


def test_disk_full_leaves_shard_undone_then_resumes(setup, monkeypatch):
    store, plan, ckpt, tmp = setup
    real_write = ss.write_part

    def full_disk(out, shard, part):
        if shard == 3:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return real_write(out, shard, part)

    monkeypatch.setattr(ss, "write_part", full_disk)
    with pytest.raises(gen.GenerationError, match=r"1 shard\(s\) failed.*shard 3.*No space left.*7 of 8 are done"):
        gen.generate(plan, store, ckpt, tmp / "out", cfg())
    assert not ss.part_path(tmp / "out", 3).exists()
    assert not list((tmp / "out" / ss.PARTS_DIR).glob(".*tmp"))
    monkeypatch.setattr(ss, "write_part", real_write)
    s = gen.generate(plan, store, ckpt, tmp / "out", cfg())
    assert (s.generated, s.skipped) == (1, 7)
    gen.generate(plan, store, ckpt, tmp / "ref", cfg())
    np.testing.assert_array_equal(images(tmp / "out"), images(tmp / "ref"))


def test_disk_full_inside_part_write_leaves_no_temp(setup, monkeypatch):
    store, plan, ckpt, tmp = setup
    import pyarrow.parquet as pq

    real = pq.write_table

    def fail_after_partial(table, where, **kw):
        real(table, where, **kw)  # the temp file exists, then the disk fills
        raise OSError(errno.ENOSPC, "No space left on device (injected)")

    monkeypatch.setattr(pq, "write_table", fail_after_partial)
    with pytest.raises(gen.GenerationError, match="8 shard"):
        gen.generate(plan, store, ckpt, tmp / "out", cfg())
    assert list((tmp / "out" / ss.PARTS_DIR).iterdir()) == []


def test_worker_dying_mid_shard_is_rescheduled(setup):
    store, plan, ckpt, tmp = setup
    (ckpt / "die-once").write_text("the first worker process that edits exits abruptly")
    s = gen.generate(plan, store, ckpt, tmp / "out", cfg(workers=2))
    assert not (ckpt / "die-once").exists()  # a worker really died
    assert s.generated == 8
    gen.generate(plan, store, ckpt, tmp / "ref", cfg())
    np.testing.assert_array_equal(images(tmp / "out"), images(tmp / "ref"))
    assert len(gen.synthetic_manifest(tmp / "out")) == 60


def test_bad_inputs(setup):
    store, plan, ckpt, tmp = setup
    with pytest.raises(gen.GenerationError, match="no LAC-GAN checkpoint"):
        gen.generate(plan, store, tmp / "nope", tmp / "out", cfg())
    p = read_plan(plan)
    p.loc[4, "source_row"] = 10_000
    write_plan(p, tmp / "bad.parquet")
    with pytest.raises(ValueError, match="source_row values \\[10000\\] are not aligned frames"):
        gen.generate(tmp / "bad.parquet", store, ckpt, tmp / "out", cfg())
    other = write_checkpoint(tmp / "ck64", 64)
    with pytest.raises(gen.GenerationError, match="edits 64px faces"):
        gen.generate(plan, store, other, tmp / "out", cfg())
    gen.generate(plan, store, ckpt, tmp / "out", cfg())
    other_plan = build_plan(store, tmp / "plan2.parquet", PlanConfig(policy="balanced", count=10, seed=4))
    with pytest.raises(ss.SynthStoreError, match="plan_sha256"):
        gen.generate(other_plan, store, ckpt, tmp / "out", cfg())


def test_failed_alignment_rows_are_rejected(tmp_path):
    store = make_store(tmp_path, size=32)
    plan = build_plan(store, tmp_path / "plan.parquet", PlanConfig(policy="balanced", count=4))
    shutil.rmtree(store)
    store = make_store(tmp_path, size=32, failed=tuple(read_plan(plan)["source_row"][:1]))
    with pytest.raises(ValueError, match="not aligned frames"):
        gen.generate(plan, store, write_checkpoint(tmp_path / "c", 32), tmp_path / "out", cfg())


@pytest.mark.slow
def test_real_editor_generates(aligned_store, tmp_path):
    """The real path: LAC-GAN's Editor (smoke-trained checkpoint) on the cohort's aligned store, on Dask."""
    from lacgan.infer import Editor
    from pipeline_fixtures import train_smoke_lacgan

    run = train_smoke_lacgan(aligned_store, tmp_path / "lacgan")
    plan = build_plan(aligned_store, tmp_path / "plan.parquet", PlanConfig(policy="match-test", test_fold=3))
    s = gen.generate(plan, aligned_store, run, tmp_path / "out", gen.GenerateConfig(frames_per_shard=16, workers=1))
    p = read_plan(plan)
    assert s.generated == s.shards == -(-len(p) // 16)
    man = gen.synthetic_manifest(tmp_path / "out")
    editor = Editor.load(run)
    assert set(man["checkpoint_sha256"]) == {editor.checkpoint_sha256}
    assert set(man["config_hash"]) == {editor.config_hash}
    src, lm, labels = AlignedStore.open(aligned_store).read(p["source_row"].to_numpy())
    out = images(tmp_path / "out")
    outside = (attention_maps(lm, editor.size, editor.config.net.regions) == 0).all(axis=1)
    diff = np.abs(out.astype(int) - src.astype(int)).max(axis=-1)
    assert diff[outside].max() == 0
    # the same frames as editing directly with the Editor, given the sources' labels as generation does
    np.testing.assert_array_equal(out[:8], editor.edit(src[:8], lm[:8], p.filter(like="AU").to_numpy()[:8],
                                                       source_labels=labels[:8]))


def test_a_dask_run_leaves_this_process_environment_as_it_was(setup, monkeypatch):
    """Dask's LocalCluster sets OMP_NUM_THREADS=1 (and MKL's, OpenBLAS's) in the calling process for its workers;
    generation restores the environment, or every later training child of the flow would run torch on one thread
    (measured: a second run of the same job trained on 1 thread instead of 2 and gave other weights)."""
    import os

    store, plan, ckpt, tmp = setup
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = dict(os.environ)
    gen.generate(plan, store, ckpt, tmp / "out", cfg(workers=1))
    assert dict(os.environ) == before and "OMP_NUM_THREADS" not in os.environ


def test_local_dask_workers_keep_glibc_malloc_tuning(monkeypatch):
    """Dask's nanny would start workers with MALLOC_TRIM_THRESHOLD_=65536, which made torch on the CPU 2.3-2.8x
    slower there than in-process (docs/pipeline.md); the local clusters generation starts leave it unset."""
    import os

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    client, cluster = gen._client(cfg(workers=2))
    try:
        seen = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_", "unset"))
    finally:
        client.close()
        cluster.close()
    assert list(seen.values()) == ["unset", "unset"]
