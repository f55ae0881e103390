"""CPU training smoke tests: the loss goes down, resume is exact, checkpoints round-trip, bad states fail clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lacgan import checkpoint as ckpt
from lacgan.config import config_hash, preset
from lacgan.data import RIGID_LANDMARKS, FaceData, register, resolve_fitted, rigid_similarity
from lacgan.networks import build_models
from lacgan.train import NonFiniteLossError, train
from manifests.aligned import StoreError
from test_lacgan_helpers import make_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("lacgan") / "aligned.zarr"
    make_store(path, n=24, size=64)
    return path


def _setup(store, **train):
    cfg = preset("smoke").replace(train=train)
    data = FaceData.open(store, cfg.net.size, cfg.train.test_fold)
    cfg = resolve_fitted(cfg, data)
    return build_models(cfg.net, cfg.train.seed), data, cfg


def test_training_lowers_reconstruction_loss(store, tmp_path):
    models, data, cfg = _setup(store, steps=60, batch_size=8, sample_every=1000, checkpoint_every=1000)
    cfg = cfg.replace(optim={"lr": 2e-3})
    res = train(models, data, cfg, tmp_path / "run", progress=False)
    pix = [h["pixel"] for h in res.history]
    assert np.mean(pix[-10:]) < 0.9 * np.mean(pix[:10]), (pix[:10], pix[-10:])
    assert res.step == 60 and (res.checkpoint / ckpt.MODELS).exists()
    lines = [json.loads(x) for x in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 60 and "loss/D_local/adv/AU12+AU14+AU15" in lines[-1] and "loss/G/pixel" in lines[-1]
    assert (tmp_path / "run" / "samples" / "fig3-latest.png").exists()
    assert (tmp_path / "run" / "samples" / "fig5-latest.png").exists()


def test_resume_is_exact(store, tmp_path):
    models, data, cfg = _setup(store, steps=8, checkpoint_every=4, sample_every=100)
    whole = train(models, data, cfg, tmp_path / "a", progress=False).history

    models, data, cfg = _setup(store, steps=8, checkpoint_every=4, sample_every=100)
    first = train(models, data, cfg, tmp_path / "b", stop_after=5, progress=False).history
    assert [h["step"] for h in first] == [1, 2, 3, 4, 5]
    fresh, _, _ = _setup(store, steps=8, checkpoint_every=4, sample_every=100)  # new objects, as a new process
    second = train(fresh, data, cfg, tmp_path / "b", progress=False).history
    assert [h["step"] for h in second] == [6, 7, 8]
    assert first + second == whole  # identical floats, step by step
    a = ckpt.load_checkpoint(tmp_path / "a", with_optim=False).models["G"]
    b = ckpt.load_checkpoint(tmp_path / "b", with_optim=False).models["G"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(x)["step"] for x in (tmp_path / "b" / "stats.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # lines past the checkpoint were dropped, not duplicated


def test_checkpoint_round_trip_weights_only(store, tmp_path):
    models, data, cfg = _setup(store, steps=2, checkpoint_every=2, sample_every=100)
    res = train(models, data, cfg, tmp_path / "run", progress=False)
    ck = ckpt.load_checkpoint(tmp_path / "run")  # run dir -> latest; optimizer file read with weights_only=True
    assert ck.step == 2 and ck.config == cfg and ck.path == res.checkpoint
    state = json.loads((ck.path / ckpt.STATE).read_text())
    assert state["config_hash"] == config_hash(cfg) and state["models_sha256"] == ck.sha256
    again = build_models(cfg.net, seed=99)
    ckpt.load_modules(ck, again.named())
    for name, m in models.named().items():
        for k, v in m.state_dict().items():
            assert torch.equal(v.cpu(), again.named()[name].state_dict()[k]), (name, k)
    assert set(ck.optim) >= {"G", "D_z", "D_local", "D_global", "scaler", "rng"}
    torch.load(ck.path / ckpt.OPTIM, weights_only=True)  # no pickled code inside


def test_checkpoint_write_is_atomic_and_pruned(store, tmp_path):
    models, data, cfg = _setup(store, steps=6, checkpoint_every=1, sample_every=100, keep_checkpoints=2)
    train(models, data, cfg, tmp_path / "run", progress=False)
    root = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000005", "step-00000006"]
    # a crash in the middle of the next save: its temp dir exists, latest still names a complete checkpoint
    (root / ".tmp-step-00000007").mkdir()
    (root / ".tmp-step-00000007" / ckpt.MODELS).write_bytes(b"garbage")
    assert ckpt.load_checkpoint(tmp_path / "run").step == 6


def test_checkpoint_from_another_config_is_refused(store, tmp_path):
    models, data, cfg = _setup(store, steps=2, checkpoint_every=2, sample_every=100)
    train(models, data, cfg, tmp_path / "run", progress=False)
    other = cfg.replace(loss={"lambda_1": 0.5})
    with pytest.raises(ckpt.CheckpointError, match="lambda_1"):
        train(build_models(other.net), data, other, tmp_path / "run", progress=False)
    longer = cfg.replace(train={"steps": 3})  # more steps is a resume, not another config
    assert train(build_models(cfg.net), data, longer, tmp_path / "run", progress=False).step == 3


def test_nan_loss_stops_and_keeps_last_good_checkpoint(store, tmp_path):
    """A feature extractor (test stand-in) that turns NaN from its 5th call on: the identity term of step 3's
    G phase is NaN (each step calls it twice: real, fake)."""
    calls = {"n": 0}

    def poisoned(x):
        calls["n"] += 1
        bad = float("nan") if calls["n"] >= 5 else 0.0
        return [x.mean((1, 2, 3)) + bad] * 5

    models, data, cfg = _setup(store, steps=4, checkpoint_every=2, sample_every=100)
    with pytest.raises(NonFiniteLossError, match=r"G/id is nan at step 3.*step-00000002"):
        train(models, data, cfg, tmp_path / "run", id_features=poisoned, progress=False)
    ck = ckpt.load_checkpoint(tmp_path / "run")
    assert ck.step == 2 and torch.isfinite(ck.models["G"]["enc.0.weight"]).all()
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["latest", "step-00000002"]


def test_store_of_wrong_size_or_no_training_rows(store, tmp_path):
    with pytest.raises(StoreError, match="64 px but the config wants 200"):
        FaceData.open(store, 200, 3)
    one_fold = tmp_path / "f.zarr"
    make_store(one_fold, n=8, folds=(3,))
    with pytest.raises(StoreError, match="no aligned rows outside test fold 3"):
        FaceData.open(one_fold, 64, 3)


def test_real_identity_network_in_training(store, tmp_path):
    """The dlib ResNet (lacgan.identity) as Eq. 4's φ: the G phase reports a positive identity term."""
    from lacgan.run import identity_network

    feats = identity_network("dlib", torch.device("cpu"))
    models, data, cfg = _setup(store, steps=1, checkpoint_every=100, sample_every=100)
    train(models, data, cfg, tmp_path / "run", id_features=feats, progress=False)
    line = json.loads((tmp_path / "run" / "stats.jsonl").read_text().splitlines()[-1])
    assert line["loss/G/id"] > 0


def test_batches_are_a_function_of_seed_and_step(store):
    cached = FaceData.open(store, 64, 3)
    direct = FaceData.open(store, 64, 3, cache=False)  # reads the store per batch (large datasets)
    assert set(cached.train_rows) & set(cached.held_rows) == set()
    a, b = cached.batch(7, 12, seed=1, flip=0.5), direct.batch(7, 12, seed=1, flip=0.5)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    c = cached.batch(8, 12, seed=1, flip=0.5)
    assert not np.array_equal(a[3], c[3])


def test_smoke_training_on_the_embedded_cohort(aligned_store, tmp_path):
    """The real path: cohort writer -> aligner -> LAC-GAN training -> Editor, at 64 px."""
    from lacgan.infer import Editor
    from manifests.aligned import AlignedStore

    cfg = preset("smoke").replace(train={"steps": 3, "checkpoint_every": 3, "sample_every": 3})
    data = FaceData.open(aligned_store, cfg.net.size, cfg.train.test_fold)
    cfg = resolve_fitted(cfg, data)
    res = train(build_models(cfg.net), data, cfg, tmp_path / "run", progress=False)
    assert res.step == 3 and all(np.isfinite(list(h.values())).all() for h in res.history)
    store = AlignedStore.open(aligned_store)
    imgs, lm, labels = store.read(store.ok_rows()[:3])
    ed = Editor.load(tmp_path / "run")
    out = ed.edit(imgs, lm, np.where(labels < 0, 0, 1 - labels).astype(np.int8), source_labels=labels)
    assert out.shape == imgs.shape and out.dtype == np.uint8
    assert np.array_equal(ed.edit(imgs, lm, labels, source_labels=labels), imgs)  # own labels: unchanged


def test_pairs_come_from_the_same_sequence(aligned_store):
    from detectors.frames import store_sequences
    from manifests.aligned import AlignedStore

    data = FaceData.open(aligned_store, 64, 3)
    imgs, lm, labels, targets, partner, paired = data.batch(3, 16, seed=2, flip=0.5, pair_prob=0.5)
    assert paired.any() and (~paired).any() and partner.shape == imgs.shape
    seqs = store_sequences(AlignedStore.open(aligned_store))[data.train_rows]
    rng = np.random.default_rng([2, 3])
    idx = rng.integers(0, len(data), 16)
    pair_rng = np.random.default_rng([2, 3, 2])
    pair_rng.random(16)
    mates = data.partners(idx, pair_rng)
    assert (seqs[idx] == seqs[mates]).all() and (idx != mates).all()
    assert np.array_equal(partner, data.read_train(mates)[0])
    np.testing.assert_array_equal(targets[paired], data.read_train(mates)[2][paired])  # a partner's labels
    again = data.batch(3, 16, seed=2, flip=0.5, pair_prob=0.5)  # still a function of (seed, step)
    assert all(np.array_equal(x, y) for x, y in zip(again, (imgs, lm, labels, targets, partner, paired)))
    unpaired = data.batch(3, 16, seed=2, flip=0.5)
    assert np.array_equal(unpaired[3][~paired], targets[~paired])  # pairing leaves the other rows' targets alone


def test_rigid_similarity_recovers_a_known_rotation_scale_and_shift():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 64, (20, 2))
    a, k, t = 0.3, 1.2, np.array([3.0, -5.0])
    rot = k * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    m = rigid_similarity(src, src @ rot.T + t)
    np.testing.assert_allclose(m, np.c_[rot, t], atol=1e-9)
    mirrored = rigid_similarity(src, src * [-1, 1])  # a reflection is not a similarity: the best rotation instead
    assert np.linalg.det(mirrored[:, :2]) > 0


def test_register_puts_a_shifted_partner_back_on_its_source():
    """A partner moved 3 px right (landmarks with it) is warped back onto the source: pixel for pixel inside."""
    rng = np.random.default_rng(1)
    src = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    partner = np.roll(src, 3, axis=2)
    lm = rng.uniform(10, 50, (1, 68, 2))
    back = register(partner, lm + [3.0, 0.0], lm)
    assert np.array_equal(back[0, :, 4:60], src[0, :, 4:60])
    assert not np.array_equal(partner[0, :, 4:60], src[0, :, 4:60])
    assert len(set(RIGID_LANDMARKS)) == len(RIGID_LANDMARKS) and max(RIGID_LANDMARKS) < 48  # no mouth points


def test_registered_pairs_are_the_partners_warped_onto_their_sources(aligned_store):
    data = FaceData.open(aligned_store, 64, 3)
    plain = data.batch(3, 8, seed=2, flip=0.5, pair_prob=1.0)
    reg = data.batch(3, 8, seed=2, flip=0.5, pair_prob=1.0, pair_register=True)
    for k in (0, 1, 2, 3, 5):  # everything but the partner images is unchanged
        assert np.array_equal(plain[k], reg[k])
    rng = np.random.default_rng([2, 3])
    idx = rng.integers(0, len(data), 8)
    pair_rng = np.random.default_rng([2, 3, 2])
    pair_rng.random(8)
    _, mate_lm, _ = data.read_train(data.partners(idx, pair_rng))
    assert np.array_equal(reg[4], register(plain[4], mate_lm, plain[1]))


def test_ema_beta_halves_the_old_share_every_half_life():
    from lacgan.train import ema_beta, update_ema

    h = 8
    assert ema_beta(h, 100) ** h == pytest.approx(0.5)  # past 2·h steps: the configured half-life
    assert ema_beta(h, 0) == pytest.approx(0.25) and ema_beta(h, 5) ** 3 == pytest.approx(0.5)  # ramp: (step+1)/2
    ema, model = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    torch.nn.init.zeros_(ema.weight), torch.nn.init.ones_(model.weight)
    for step in range(100, 100 + h):
        update_ema(ema, model, ema_beta(h, step))
    assert torch.allclose(ema.weight, torch.full_like(ema.weight, 0.5))


def test_ema_generator_is_checkpointed_resumed_and_used_for_inference(store, tmp_path):
    from lacgan.infer import Editor

    kw = dict(steps=8, checkpoint_every=4, sample_every=100, ema_half_life=3.0)
    models, data, cfg = _setup(store, **kw)
    train(models, data, cfg, tmp_path / "a", progress=False)
    a = ckpt.load_checkpoint(tmp_path / "a", with_optim=False).models
    assert set(a) >= {"G", "G_ema"} and any(not torch.equal(a["G"][k], a["G_ema"][k]) for k in a["G"])

    models, data, plain = _setup(store, **{**kw, "ema_half_life": 0.0})
    train(models, data, plain, tmp_path / "plain", progress=False)
    p = ckpt.load_checkpoint(tmp_path / "plain", with_optim=False).models
    assert "G_ema" not in p and all(torch.equal(a["G"][k], p["G"][k]) for k in p["G"])  # training itself unchanged

    models, data, cfg = _setup(store, **kw)
    train(models, data, cfg, tmp_path / "b", stop_after=5, progress=False)  # stops with a checkpoint at step 5
    fresh, _, _ = _setup(store, **kw)
    train(fresh, data, cfg, tmp_path / "b", progress=False)
    b = ckpt.load_checkpoint(tmp_path / "b", with_optim=False).models
    assert all(torch.equal(a["G_ema"][k], b["G_ema"][k]) for k in a["G_ema"])  # the average resumes exactly

    editor = Editor.load(tmp_path / "a", device="cpu")
    assert editor.G.state_dict().keys() == a["G_ema"].keys()
    for k, v in editor.G.state_dict().items():
        assert torch.equal(v, a["G_ema"][k]), k
    assert Editor._networks(plain)[1].keys() == {"G", "D_local"}
    with pytest.raises(ValueError, match="ema_half_life must be >= 0"):
        preset("smoke").replace(train={"ema_half_life": -1.0})
