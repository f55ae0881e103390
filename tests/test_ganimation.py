"""GANimation: network shapes, each loss on a hand-computed case, the attention composition, CPU smoke training,
checkpoints and exact resume, and the Editor through the CLI and sharded generation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lacgan import checkpoint as ckpt
from lacgan.config import config_hash
from lacgan.data import FaceData
from lacgan.ganimation import losses as L
from lacgan.ganimation.config import GanimationConfig, NetConfig, preset
from lacgan.ganimation.infer import Editor, generate, render
from lacgan.ganimation.networks import attend, build_models, fill_unknown
from lacgan.ganimation.train import learning_rate, train
from test_lacgan_helpers import faces, make_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("ganimation") / "aligned.zarr"
    make_store(path, n=24, size=64)
    return path


def _setup(store, name="smoke", **train_fields):
    cfg = preset(name).replace(train=train_fields)
    return build_models(cfg.net, cfg.train.seed), FaceData.open(store, cfg.net.size, cfg.train.test_fold), cfg


# ---- networks ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, size, patches", [("smoke", 64, 16), ("demo", 64, 4), ("paper", 200, 9)])
def test_generator_and_critic_shapes(name, size, patches):
    cfg = preset(name).net
    assert cfg.size == size
    m = build_models(cfg)
    x = torch.rand(2, 3, size, size) * 2 - 1
    with torch.no_grad():
        colour, a = m.G(x, torch.tensor([[1.0, -1.0] * 6] * 2))
        scores, aus = m.D(x)
    assert colour.shape == (2, 3, size, size) and a.shape == (2, 1, size, size)
    assert colour.abs().max() <= 1 and 0 <= a.min() and a.max() <= 1
    assert scores.shape == (2, patches) and aus.shape == (2, 12)
    # the reference's trunk: 7x7 conv, 2 downsamplings, residual blocks, 2 upsamplings, no conv biases
    convs = [mod for mod in m.G.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert convs[0].kernel_size == (7, 7) and convs[0].in_channels == 3 + 12 and all(c.bias is None for c in convs)
    assert sum(isinstance(mod, torch.nn.ConvTranspose2d) for mod in m.G.modules()) == 2
    assert len(m.G.trunk) == 3 + 2 * 3 + cfg.res_blocks + 2 * 3


def test_paper_preset_is_the_reference():
    c = GanimationConfig()
    assert (c.net.conv_dim, c.net.res_blocks, c.net.critic_dim, c.net.critic_layers) == (64, 6, 64, 6)
    assert (c.loss.lambda_D_prob, c.loss.lambda_D_cond, c.loss.lambda_cyc) == (1, 4000, 10)
    assert (c.loss.lambda_mask, c.loss.lambda_mask_smooth, c.loss.lambda_D_gp) == (0.1, 1e-5, 10)
    assert (c.optim.lr_G, c.optim.lr_D, c.optim.betas_G, c.optim.critic_steps) == (1e-4, 1e-4, (0.5, 0.999), 5)
    assert c.train.batch_size == 25 and c.net.size == 200
    assert GanimationConfig.from_json(c.to_json()) == c
    with pytest.raises(ValueError, match="divisible by 4"):
        NetConfig(size=66)


def test_attention_composition():
    src, colour = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    assert torch.equal(attend(src, colour, torch.ones(2, 1, 4, 4)), src)
    assert torch.equal(attend(src, colour, torch.zeros(2, 1, 4, 4)), colour)
    half = attend(src, colour, torch.full((2, 1, 4, 4), 0.25))
    assert torch.allclose(half, 0.25 * src + 0.75 * colour)


def test_saturated_masks_through_the_editor_path():
    """A forced to 1 (huge positive attention weights) returns the source bytes; A forced to 0 returns C."""
    m = build_models(preset("smoke").net).eval()
    imgs, _, _ = faces(3, 64, seed=2)
    targets = np.ones((3, 12), np.int8)
    with torch.no_grad():
        m.G.attention.weight.fill_(1e4)
        assert np.array_equal(generate(m, imgs, targets, "cpu"), imgs)
        m.G.attention.weight.fill_(-1e4)
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
        edited, colour, a = render(m, x, torch.from_numpy(targets.astype(np.int64)))
    assert (a == 0).all() and torch.equal(edited, colour)


# ---- losses, by hand -----------------------------------------------------------------------------------------
def test_adversarial_losses():
    real, fake = torch.tensor([[1.0, 3.0]]), torch.tensor([[0.5, 1.5]])
    assert L.critic_adv_loss(real, fake).item() == pytest.approx(-2.0 + 1.0)
    assert L.generator_adv_loss(torch.tensor([[2.0, 4.0]])).item() == pytest.approx(-3.0)


def test_au_regression_loss_masks_unknown_and_divides_by_batch():
    pred = torch.tensor([[0.5, 1.0], [0.0, 0.2]])
    labels = torch.tensor([[1, -1], [0, 1]])
    # known: (0.5-1)^2 = 0.25, (0-0)^2 = 0, (0.2-1)^2 = 0.64 -> mean 0.89/3, then / B = 2 (the reference's / B)
    assert L.au_regression_loss(pred, labels).item() == pytest.approx(0.89 / 3 / 2)


def test_gradient_penalty_by_hand():
    # linear critic D(x) = c * sum(x): gradient c everywhere, norm c * sqrt(12) for a (3, 2, 2) face
    c = torch.tensor(1.0, requires_grad=True)
    real, fake = torch.rand(2, 3, 2, 2), torch.rand(2, 3, 2, 2)
    alpha = torch.tensor([0.3, 0.9]).view(2, 1, 1, 1)
    gp = L.gradient_penalty(lambda x: c * x.flatten(1).sum(1, keepdim=True), real, fake, alpha)
    assert gp.item() == pytest.approx((math.sqrt(12) - 1) ** 2, rel=1e-6)
    (dc,) = torch.autograd.grad(gp, c)  # differentiable in the critic's weights (create_graph)
    assert dc.item() == pytest.approx(2 * (math.sqrt(12) - 1) * math.sqrt(12), rel=1e-5)
    # quadratic critic D(x) = sum(x^2): gradient 2x at x = a*real + (1-a)*fake
    real, fake = torch.ones(2, 1, 1, 2), torch.zeros(2, 1, 1, 2)
    alpha = torch.tensor([0.25, 1.0]).view(2, 1, 1, 1)
    gp = L.gradient_penalty(lambda x: (x ** 2).flatten(1).sum(1), real, fake, alpha)
    expected = ((2 * 0.25 * math.sqrt(2) - 1) ** 2 + (2 * math.sqrt(2) - 1) ** 2) / 2
    assert gp.item() == pytest.approx(expected, rel=1e-6)


def test_cycle_and_attention_terms():
    rec, src = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]]), torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]]])
    assert L.cycle_loss(rec, src).item() == pytest.approx((1 + 0 + 1 + 2) / 4)
    a = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])
    assert L.attention_saturation(a).item() == pytest.approx(0.75)
    assert L.attention_tv(a).item() == pytest.approx(2.0)  # |1-0| + |1-1| across, |1-0| + |1-1| down
    assert L.attention_tv(torch.cat([a, a])).item() == pytest.approx(4.0)  # summed over faces, as the reference


def test_learning_rate_and_unknown_labels():
    assert [learning_rate(1.0, s, 30, 2 / 3) for s in (0, 19, 20, 25, 29)] == pytest.approx([1, 1, 1, 0.5, 0.1])
    labels = torch.tensor([[1, 0, -1, -1]])
    assert fill_unknown(labels, torch.tensor([[0.0, 1.0, 0.7, 0.2]])).tolist() == [[1, 0, 1, 0]]


# ---- training --------------------------------------------------------------------------------------------------
def test_smoke_training_lowers_its_losses(store, tmp_path):
    """50 steps (10 generator steps) of the smoke preset at its own learning rates: the critic's AU regression
    on real faces falls from its initial ~0.5 error, and the generator's total (dominated by its AU term) and
    cycle loss fall. Deterministic: every draw comes from (seed, step)."""
    models, data, cfg = _setup(store, steps=50, batch_size=8, log_every=1, sample_every=50, checkpoint_every=50)
    res = train(models, data, cfg, tmp_path / "run", progress=False)
    lines = [json.loads(x) for x in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    au = [ln["loss/D/au_mse"] for ln in lines]
    cyc = [ln["loss/G/cycle"] for ln in lines if "loss/G/cycle" in ln]
    g = [h["G"] for h in res.history if "G" in h]
    assert len(g) == 10 and [h["step"] for h in res.history if "G" in h][:2] == [5, 10]
    assert np.mean(au[-10:]) < 0.8 * np.mean(au[:10]), au
    assert np.mean(g[-3:]) < 0.8 * np.mean(g[:3]), g
    assert np.mean(cyc[-3:]) < np.mean(cyc[:3]), cyc
    assert "loss/D_gp/gp" in lines[-1] and "loss/D/au_mse/AU12" in lines[-1]
    for name in ("fig3", "fig5", "attention"):
        assert (tmp_path / "run" / "samples" / f"{name}-latest.png").exists()


def test_checkpoint_round_trip(store, tmp_path):
    models, data, cfg = _setup(store, steps=5, checkpoint_every=5, sample_every=100)
    res = train(models, data, cfg, tmp_path / "run", progress=False)
    ck = ckpt.load_checkpoint(tmp_path / "run")
    assert ck.step == 5 and ck.model == "ganimation" and ck.config == cfg and ck.path == res.checkpoint
    state = json.loads((ck.path / ckpt.STATE).read_text())
    assert state["model"] == "ganimation" and state["config_hash"] == config_hash(cfg)
    assert ckpt.model_kind(tmp_path / "run") == "ganimation"
    again = build_models(cfg.net, seed=99)
    ckpt.load_modules(ck, again.named())
    for name, m in models.named().items():
        for k, v in m.state_dict().items():
            assert torch.equal(v.cpu(), again.named()[name].state_dict()[k]), (name, k)
    assert set(ck.optim) == {"G", "D", "rng"}
    torch.load(ck.path / ckpt.OPTIM, weights_only=True)  # no pickled code inside
    # another model kind cannot load or resume it
    from lacgan.infer import Editor as LacganEditor

    with pytest.raises(ckpt.CheckpointError, match="holds a ganimation model, not lacgan"):
        LacganEditor.load(tmp_path / "run")
    lac = ckpt.CONFIGS["lacgan"]()
    with pytest.raises(ckpt.CheckpointError, match="holds a ganimation model, this run trains lacgan"):
        ckpt.check_compatible(ck, lac)


def test_resume_is_exact(store, tmp_path):
    """12 steps (generator at 5 and 10, rates decaying from step 8) straight vs stopped after 7 and resumed."""
    kw = dict(steps=12, checkpoint_every=4, sample_every=100)
    models, data, cfg = _setup(store, **kw)
    whole = train(models, data, cfg, tmp_path / "a", progress=False).history
    models, data, cfg = _setup(store, **kw)
    first = train(models, data, cfg, tmp_path / "b", stop_after=7, progress=False).history
    fresh, _, _ = _setup(store, **kw)  # new objects, as a new process
    second = train(fresh, data, cfg, tmp_path / "b", progress=False).history
    assert [h["step"] for h in second] == list(range(8, 13))
    assert first + second == whole  # identical floats, step by step
    a = ckpt.load_checkpoint(tmp_path / "a", with_optim=False).models
    b = ckpt.load_checkpoint(tmp_path / "b", with_optim=False).models
    assert all(torch.equal(a[n][k], b[n][k]) for n in a for k in a[n])


# ---- the Editor: CLI, registry, sharded generation -------------------------------------------------------------
@pytest.fixture(scope="module")
def run(store, tmp_path_factory):
    """A GANimation smoke run trained through the CLI."""
    from flows.cli import main

    out = tmp_path_factory.mktemp("gan-run") / "run"
    rc = main(["train", "--model", "ganimation", "--preset", "smoke", "--store", str(store), "--out", str(out),
               "--steps", "10", "--device", "cpu", "--no-progress"])
    assert rc == 0
    return out


def test_editor_interface_and_unknown_targets(run):
    ed = Editor.load(run, device="cpu")
    ck = ckpt.find_checkpoint(run)
    assert ed.size == 64 and ed.path == ck and ed.config_hash == config_hash(ed.config)
    assert ed.checkpoint_sha256 == ckpt.file_sha256(ck / ckpt.MODELS)
    imgs, lm, _ = faces(5, 64, seed=4)
    t = np.random.default_rng(0).integers(0, 2, (5, 12)).astype(np.int8)
    out = ed.edit(imgs, lm, t, batch_size=2)
    assert out.dtype == np.uint8 and out.shape == imgs.shape
    # batches of 2 make the frames one batch makes, to the float rounding of batch-size-dependent CPU kernels:
    # on an AMD EPYC machine 2 of 61,440 values land 1 grey level apart (exactly equal on the machines before it)
    apart = np.abs(out.astype(int) - ed.edit(imgs, lm, t).astype(int))
    assert apart.max() <= 1 and (apart > 0).mean() < 1e-3
    assert not np.array_equal(out, imgs)
    # -1: the state the critic reads in the source
    t[:, 3:] = -1
    with torch.no_grad():
        reading = ed.models.D(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1)[1]
    filled = np.where(t < 0, (reading.numpy() > 0.5).astype(np.int8), t)
    assert np.array_equal(ed.edit(imgs, lm, t), ed.edit(imgs, lm, filled))
    assert ed.edit(imgs[:0], lm[:0], t[:0]).shape == (0, 64, 64, 3)
    with pytest.raises(ValueError, match=r"\(2, 12\)"):
        ed.edit(imgs[:2], lm[:2], t[:2, :11])


def test_load_editor_picks_the_model_kind(run, store, tmp_path):
    from lacgan.config import preset as lacgan_preset
    from lacgan.data import resolve_fitted
    from lacgan.editors import GENERATORS, load_editor
    from lacgan.infer import Editor as LacganEditor
    from lacgan.networks import build_models as build_lacgan
    from lacgan.train import train as train_lacgan

    cfg = lacgan_preset("smoke").replace(train={"steps": 1, "checkpoint_every": 1, "sample_every": 100})
    data = FaceData.open(store, 64, 3)
    cfg = resolve_fitted(cfg, data)
    train_lacgan(build_lacgan(cfg.net), data, cfg, tmp_path / "lac", progress=False)
    assert set(GENERATORS) == {"lacgan", "ganimation"}
    assert isinstance(load_editor(run, "cpu"), Editor)
    assert isinstance(load_editor(tmp_path / "lac", "cpu"), LacganEditor)
    with pytest.raises(ckpt.CheckpointError, match="holds a lacgan model, not ganimation"):
        Editor.load(tmp_path / "lac")


def test_cli_edit_and_resume(run, store, tmp_path, capsys):
    from PIL import Image

    from flows.cli import main

    png = tmp_path / "e.png"
    assert main(["edit", "--checkpoint", str(run), "--store", str(store), "--rows", "0,3", "--target", "AU12=1",
                 "--out", str(png), "--device", "cpu"]) == 0
    assert Image.open(png).size == (2 * 128, 14 + 2 * 128)
    out = tmp_path / "r"
    base = ["train", "--store", str(store), "--out", str(out), "--device", "cpu", "--no-progress"]
    assert main(base + ["--model", "ganimation", "--preset", "smoke", "--steps", "2"]) == 0
    assert main(base + ["--steps", "3"]) == 0  # no --model, no --preset: the run's own, resumed
    text = capsys.readouterr().out
    assert "GANimation preset smoke" in text and "resuming from" in text and "step 3" in text
    assert main(base + ["--model", "lacgan", "--steps", "4"]) == 2  # another model's run: one line, exit 2
    assert "holds a ganimation model, not lacgan" in capsys.readouterr().err


def test_editor_through_sharded_generation(run, tmp_path):
    """`lacgan generate` with the default editor ("auto": by the checkpoint's kind) and with
    `--editor lacgan.ganimation.infer:Editor` writes the frames the Editor makes directly."""
    from manifests.aligned import AlignedStore
    from pipeline_fixtures import make_store as make_pipeline_store
    from pipelines import generate as gen
    from pipelines.plan import PlanConfig, build_plan, read_plan

    store = make_pipeline_store(tmp_path, size=64)
    plan = build_plan(store, tmp_path / "plan.parquet", PlanConfig(policy="balanced", count=3, seed=1))
    ed = Editor.load(run, device="cpu")
    p = read_plan(plan)
    src, lm, _ = AlignedStore.open(store).read(p["source_row"].to_numpy())
    direct = ed.edit(src, lm, p.filter(like="AU").to_numpy())
    for editor in ("auto", "lacgan.ganimation.infer:Editor"):
        out = tmp_path / editor.replace(":", "_")
        s = gen.generate(plan, store, run, out, gen.GenerateConfig(frames_per_shard=8, workers=0, editor=editor))
        assert s.frames == len(p) == 18 and s.generated == s.shards == 3
        man = gen.synthetic_manifest(out)
        assert set(man["checkpoint_sha256"]) == {ed.checkpoint_sha256} and set(man["config_hash"]) == {ed.config_hash}
        from pipelines import synth_store as ss

        np.testing.assert_array_equal(ss.open_images(out)[:], direct)
    with pytest.raises(gen.GenerationError, match="holds a ganimation model"):
        gen.generate(plan, store, run, tmp_path / "wrong", gen.GenerateConfig(workers=0, editor="lacgan.infer:Editor"))
