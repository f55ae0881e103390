"""Each loss term on hand-computed cases, and the phase composition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lacgan.config import LossConfig, preset
from manifests.aus import AUS
from lacgan.data import sample_targets, to_batch
from lacgan.identity import identity_loss
from lacgan.losses import (LacganLoss, d_adv_loss, g_adv_loss, masked_mean, pixel_loss,
                           regression_loss, sample_prior, tv_loss)
from lacgan.networks import build_models
from test_lacgan_helpers import faces

L2 = math.log(2.0)


def test_masked_mean():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert torch.equal(masked_mean(x), torch.tensor([2.0, 3.0]))
    m = torch.tensor([[True, False], [False, False]])
    assert torch.equal(masked_mean(x, m), torch.tensor([1.0, 0.0]))  # an empty column gives 0, not NaN


def test_adversarial_losses_hand_computed():
    zero = torch.zeros(4, 12)
    torch.testing.assert_close(d_adv_loss(zero, zero), torch.full((12,), 2 * L2))  # D(x) = ½: 2·log 2
    torch.testing.assert_close(g_adv_loss(zero), torch.full((12,), L2))
    real = torch.tensor([[20.0], [-20.0]])  # confident right, then confident wrong
    fake = torch.tensor([[-20.0], [-20.0]])
    torch.testing.assert_close(d_adv_loss(real, fake), torch.tensor([10.0]), atol=1e-6, rtol=0)
    mask = torch.tensor([[True], [False]])
    torch.testing.assert_close(d_adv_loss(real, fake, real_mask=mask), torch.tensor([0.0]), atol=1e-6, rtol=0)


def test_pixel_loss_hand_computed():
    gen = torch.zeros(1, 12, 3, 2, 2)
    src = torch.zeros(1, 12, 3, 2, 2)
    src[0, 0, :, 0, 0] = 1.0  # an error of 1 at one pixel of AU1
    maps = torch.zeros(1, 12, 2, 2)
    maps[0, 0] = torch.tensor([[1.0, 0.5], [0.5, 0.0]])  # region mass 2
    maps[0, 1:] = 1.0
    got = pixel_loss(gen, src, maps)
    assert got.shape == (12,)
    torch.testing.assert_close(got[0], torch.tensor(1.0 * 3 / (3 * 2.0)))  # Σ A|e| / (3 Σ A) = 3 / 6
    assert torch.equal(got[1:], torch.zeros(11))
    src[0, 0, :, 1, 1] = 5.0  # outside the region (A = 0): costs nothing
    torch.testing.assert_close(pixel_loss(gen, src, maps)[0], torch.tensor(0.5))


def test_regression_loss_hand_computed():
    pred = torch.tensor([[[0.5, 0.0]], [[1.0, 3.0]]])  # (B=2, G=1, slots=2)
    labels = torch.tensor([[[1, 0]], [[1, -1]]])
    # known entries: (0.5-1)^2, (0-0)^2, (1-1)^2 -> mean 0.25/3
    torch.testing.assert_close(regression_loss(pred, labels), torch.tensor([0.25 / 3]))
    pred2, lab2 = pred.permute(1, 0, 2).reshape(1, 2, 2).transpose(0, 1), labels.reshape(2, 1, 2)
    torch.testing.assert_close(regression_loss(pred2, lab2), torch.tensor([0.25 / 3]))


def test_latent_loss_hand_computed():
    from lacgan.losses import latent_loss

    logits = torch.tensor([[[0.0, 2.0]]])
    labels = torch.tensor([[[1, -1]]])  # the second slot unknown: left out
    torch.testing.assert_close(latent_loss(logits, labels), torch.tensor([np.log(2.0)], dtype=torch.float32))
    # the encoder's side: the loss is smallest when C says 1/2
    assert latent_loss(logits, labels, confuse=True) < latent_loss(logits + 3, labels, confuse=True)


def test_draw_outputs():
    from lacgan.losses import draw

    x, dt, ds = torch.full((1,), 0.2), torch.full((1,), 0.5), torch.full((1,), 0.1)
    assert draw("paper", x, dt, ds) == (dt, ds)
    torch.testing.assert_close(draw("residual", x, dt, ds), (x + dt, x + ds))
    torch.testing.assert_close(draw("difference", x, dt, ds), (x + dt - ds, ds))
    fake, _ = draw("difference", x, ds, ds)  # target == source: the source itself
    torch.testing.assert_close(fake, x)


def test_edit_strength_scales_the_edit_difference_only():
    """strength s: the difference outputs draw X + s·(D(z, t) − D(z, s)) and move the source by s times the
    displacement; 1 is the trained edit, target == source stays the source at any s; the outputs without an
    edit difference refuse s != 1."""
    from lacgan.config import NetConfig
    from lacgan.losses import draw

    x, dt, ds = torch.full((1,), 0.2), torch.full((1,), 0.5), torch.full((1,), 0.1)
    torch.testing.assert_close(draw("difference", x, dt, ds, strength=2.5)[0], x + 2.5 * (dt - ds))
    torch.testing.assert_close(draw("difference", x, dt, ds, strength=1.0)[0], draw("difference", x, dt, ds)[0])
    torch.manual_seed(0)
    src = torch.rand(2, 3, 3, 9, 11)
    dec_s, dec_t = torch.rand(2, 3, 5, 9, 11) * 2 - 1, torch.rand(2, 3, 5, 9, 11) * 2 - 1
    # the move: strength 2 at max_shift 2 is strength 1 at max_shift 4
    torch.testing.assert_close(draw("flow", src, dec_t, dec_s, 2.0, strength=2.0)[0],
                               draw("flow", src, dec_t, dec_s, 4.0)[0])
    moved = draw("flow", src, dec_t, dec_s, 2.0, strength=2.0)[0]
    torch.testing.assert_close(draw("warp", src, dec_t, dec_s, 2.0, strength=2.0)[0] - moved,
                               2.0 * (dec_t[:, :, :3] - dec_s[:, :, :3]))
    for output, dec in (("difference", dec_s[:, :, :3]), ("warp", dec_s), ("flow", dec_s)):
        torch.testing.assert_close(draw(output, src, dec, dec, 4.0, strength=3.0)[0], src)  # no edit: no change
    for output in ("paper", "residual"):
        with pytest.raises(ValueError, match="no edit difference"):
            draw(output, x, dt, ds, strength=1.5)
        with pytest.raises(ValueError, match="no edit difference"):
            NetConfig(output=output, edit_strength=1.5)
    with pytest.raises(ValueError, match="must be > 0"):
        NetConfig(output="warp", edit_strength=0.0)
    assert NetConfig(output="warp", edit_strength=1.2).edit_strength == 1.2


def test_geometry_only_groups_move_the_source_and_add_no_colour():
    """NetConfig.geometry_only: under "warp", the groups holding those AUs draw exactly what "flow" draws (the
    source moved), the others exactly what "warp" draws; the mask follows the generator groups."""
    from lacgan.config import NetConfig
    from lacgan.losses import draw
    from lacgan.networks import colour_mask

    groups = ((1,), (2,), (4,), (12, 14, 15))
    colour = colour_mask((2, 14), groups)
    torch.testing.assert_close(colour, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert colour_mask((), groups) is None  # nothing geometry-only: draw adds every group's colour unscaled
    torch.manual_seed(1)
    src = torch.rand(2, 4, 3, 9, 11)
    dec_s, dec_t = torch.rand(2, 4, 5, 9, 11) * 2 - 1, torch.rand(2, 4, 5, 9, 11) * 2 - 1
    mixed = draw("warp", src, dec_t, dec_s, 4.0, colour=colour)[0]
    flow, warp_ = draw("flow", src, dec_t, dec_s, 4.0)[0], draw("warp", src, dec_t, dec_s, 4.0)[0]
    torch.testing.assert_close(mixed[:, [1, 3]], flow[:, [1, 3]])
    torch.testing.assert_close(mixed[:, [0, 2]], warp_[:, [0, 2]])
    assert not torch.allclose(flow[:, 1], warp_[:, 1])  # the two rules do differ there
    with pytest.raises(ValueError, match="needs the 'warp' output"):
        NetConfig(output="difference", geometry_only=(1,))
    with pytest.raises(ValueError, match=r"not among the AUs"):
        NetConfig(output="warp", geometry_only=(3,))


def test_tv_loss_hand_computed():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    # vertical |2-0|, |4-1| -> mean 2.5; horizontal |1-0|, |4-2| -> mean 1.5
    torch.testing.assert_close(tv_loss(x), torch.tensor(4.0))
    assert float(tv_loss(torch.ones(1, 3, 5, 5))) == 0.0


def test_identity_loss_hand_computed():
    fake = [torch.ones(1, 2, 3, 3), torch.zeros(1, 4)]
    real = [torch.zeros(1, 2, 3, 3), torch.full((1, 4), 2.0)]
    torch.testing.assert_close(identity_loss(fake, real, (0.5, 0.25)), torch.tensor(0.5 * 1 + 0.25 * 2))
    with pytest.raises(ValueError, match="weights"):
        identity_loss(fake, real, (1.0,))


def test_prior_is_uniform_on_the_cube():
    z = sample_prior(torch.empty(2000, 12, 8), torch.Generator().manual_seed(0))
    assert float(z.min()) >= -1 and float(z.max()) <= 1 and abs(float(z.mean())) < 0.02


def test_sample_targets_flips_and_fills_unknowns():
    labels = np.array([[1, 0, -1]] * 4000, np.int8)
    t = sample_targets(labels, np.random.default_rng(0), flip=0.5)
    assert set(np.unique(t)) <= {0, 1}
    assert abs((t[:, 0] == 0).mean() - 0.5) < 0.05 and abs(t[:, 2].mean() - 0.5) < 0.05
    assert np.array_equal(sample_targets(labels, np.random.default_rng(0), flip=0.0)[:, :2], labels[:, :2])


def test_paper_defaults():
    c = LossConfig()
    assert (c.lambda_1, c.lambda_2, c.lambda_3, c.lambda_4, c.lambda_au) == (0.01, 0.1, 1.0, 0.001, 10.0)
    assert c.beta == (1.0,) * 12 and c.id_alphas == (0.5, 0.9, 0.75, 1.0, 1.0)
    p = preset("paper")
    assert p.net.size == 200 and p.net.z_dim == 60 and p.net.label_dim == 60 and p.optim.lr == 2e-4
    assert p.optim.betas == (0.5, 0.9) and p.train.test_fold == 3


class ToyFeatures(torch.nn.Module):
    """LABELLED STAND-IN for the identity network, for this composition test only: five pooled maps of the
    face. The real extractor is lacgan.identity's dlib ResNet, wired in by lacgan.run."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)

    def features(self, x):
        h = self.conv(x / 255.0)
        return [torch.nn.functional.avg_pool2d(h, 2 ** k) for k in range(5)]


@pytest.mark.parametrize("design", ["paper", "demo"])
def test_phases_compose_terms_with_their_weights(design):
    """G's objective is exactly Eq. 9 + Eq. 10 (and the latent adversary when it is on), per generator group."""
    from lacgan.compose import fit_window
    from lacgan.losses import identity_features

    imgs, lm, labels = faces(4, 64)
    base = preset("smoke")
    if design == "paper":  # the paper's model at smoke sizes, with every term on
        base = base.replace(net={"regions": "reference", "generators": "per-au", "output": "paper",
                                 "composite": "paper"}, loss={"lambda_latent": 0.0, "judge": "own"})
    else:
        base = base.replace(loss={"lambda_latent": 0.5, "g_label": 0.3, "lambda_pair": 0.7, "lambda_edit_tv": 2.0})
    cfg = base.replace(net={"window": fit_window(lm, 64, base.net.regions)})
    models = build_models(cfg.net)
    toy = ToyFeatures()
    feats = identity_features(toy)
    loss = LacganLoss(models, cfg.loss, feats, cfg.net)
    targets = sample_targets(labels, np.random.default_rng(0), 0.5)
    b = to_batch(imgs, lm, labels, targets, cfg.net, "cpu", partner=imgs[::-1], paired=np.array([1, 0, 1, 0], bool))
    g = loss.generate(b)
    total, t = loss.phase("G", b, g)
    c = cfg.loss
    carg = t["pixel"] + c.lambda_1 * t["adv_z"] + c.lambda_2 * (t["adv_au"] + c.lambda_au * c.g_label * t["label"])
    if c.lambda_latent:
        carg = carg + c.lambda_latent * t["latent"]
    assert ("pair" in t) == (design == "demo")
    if c.lambda_pair:
        carg = carg + c.lambda_pair * t["pair"]
    expect = carg.sum() + c.lambda_img * t["adv_img"] + c.lambda_3 * t["id"] + c.lambda_4 * t["tv"]
    assert ("tv_edit" in t) == (design == "demo")
    if c.lambda_edit_tv:  # the edit's own variation: the composite minus the source, not the face's edges
        torch.testing.assert_close(t["tv_edit"], tv_loss(g.composed - b.images))
        assert float(t["tv_edit"].detach()) < float(t["tv"].detach())
        expect = expect + c.lambda_edit_tv * t["tv_edit"]
    torch.testing.assert_close(total, expect)
    assert len(t["pixel"]) == models.G.G == (12 if design == "paper" else 9)
    assert float(t["id"].detach()) > 0
    total.backward()
    assert models.G.enc[0].weight.grad is not None and toy.conv.weight.grad is None  # identity net frozen
    assert ("D_lat" in loss.phases()) == (design == "demo")
    for phase in loss.phases()[:-1]:
        tot, terms = loss.phase(phase, b, g, torch.Generator().manual_seed(0))
        assert tot.ndim == 0 and torch.isfinite(tot)
    with pytest.raises(ValueError, match="unknown phase"):
        loss.phase("D_nope", b, g)


def test_judge_noise_reaches_what_d_local_and_r_see_from_the_steps_generator():
    """judge_noise > 0: D_local's and G's terms see noise drawn from the step's generator (same seed, same
    numbers; another seed, others); 0 (the paper): the generator is not touched and nothing changes."""
    from lacgan.compose import fit_window

    imgs, lm, labels = faces(4, 64)
    base = preset("smoke")
    base = base.replace(net={"window": fit_window(lm, 64, base.net.regions)})
    models = build_models(base.net)
    targets = sample_targets(labels, np.random.default_rng(0), 0.5)
    b = to_batch(imgs, lm, labels, targets, base.net, "cpu")
    seeded = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    out = {}
    for std in (0.0, 0.2):
        loss = LacganLoss(models, base.replace(loss={"judge_noise": std}).loss, None, base.net)
        g = loss.generate(b)
        for phase in ("D_local", "G"):
            out[std, phase] = [float(loss.phase(phase, b, g, seeded(s))[0].detach()) for s in (0, 0, 1)]
    for phase in ("D_local", "G"):
        quiet, noisy = out[0.0, phase], out[0.2, phase]
        assert quiet[0] == quiet[1] == quiet[2]  # no noise: the seed does not matter
        assert noisy[0] == noisy[1] != noisy[2]  # noise: the step's generator decides it
        assert noisy[0] != quiet[0]
    with pytest.raises(ValueError, match="judge_noise"):
        LossConfig(judge_noise=-0.1)


def test_warp_output():
    from lacgan.losses import draw, warp

    x = torch.arange(2 * 5 * 7, dtype=torch.float32).reshape(1, 1, 2, 5, 7)
    same = warp(x, torch.zeros(1, 1, 2, 5, 7))
    torch.testing.assert_close(same, x)
    shifted = warp(x, torch.cat([torch.ones(1, 1, 1, 5, 7), torch.zeros(1, 1, 1, 5, 7)], 2))  # one px to the right
    torch.testing.assert_close(shifted[..., :-1], x[..., 1:])
    torch.testing.assert_close(shifted[..., -1], x[..., -1])  # the border repeats
    dec = torch.rand(1, 1, 5, 5, 7)  # image (3) + displacement (2); target == source: no change at all
    src = torch.rand(1, 1, 3, 5, 7)
    fake, recon = draw("warp", src, dec, dec, 4.0)
    torch.testing.assert_close(fake, src)
    torch.testing.assert_close(recon, dec[:, :, :3])


def test_flow_output_only_moves_source_pixels():
    """"flow": the edit is the source resampled (bilinear: every output pixel lies between the source's values),
    whatever the decoder's image channels say; those are the reconstruction alone."""
    from lacgan.losses import draw

    torch.manual_seed(0)
    src = torch.rand(2, 3, 3, 9, 11)
    dec_s, dec_t = torch.rand(2, 3, 5, 9, 11) * 2 - 1, torch.rand(2, 3, 5, 9, 11) * 2 - 1
    fake, recon = draw("flow", src, dec_t, dec_s, 4.0)
    torch.testing.assert_close(recon, dec_s[:, :, :3])
    assert not torch.allclose(fake, src)  # it moved
    assert fake.min() >= src.min() - 1e-6 and fake.max() <= src.max() + 1e-6
    constant = torch.full_like(src, 0.3)
    torch.testing.assert_close(draw("flow", constant, dec_t, dec_s, 4.0)[0], constant)  # no colour is added
    same, _ = draw("flow", src, dec_t, dec_t, 4.0)
    torch.testing.assert_close(same, src)
    warp_fake, _ = draw("warp", src, dec_t, dec_s, 4.0)  # "warp" = the same move + the colour difference
    torch.testing.assert_close(warp_fake - fake, dec_t[:, :, :3] - dec_s[:, :, :3])


def test_local_judges_see_the_composited_frame_and_each_au_of_a_shared_region():
    """judge="composite": D_local and R see the composited image inside each window (what ends up in the frame);
    AU12=1/AU15=0 and AU12=0/AU15=1 composite different lip corners, and each is what the judges see."""
    from lacgan.compose import fit_window, gather_windows

    imgs, lm, labels = faces(2, 64)
    base = preset("smoke")
    cfg = base.replace(net={"window": fit_window(lm, 64, base.net.regions)})
    assert cfg.loss.judge == "composite" and cfg.net.generators == "per-region"
    torch.manual_seed(0)
    models = build_models(cfg.net)
    with torch.no_grad():  # a trained-like generator: the fresh one starts as the identity edit (no change)
        for p in models.G.parameters():
            p.normal_(0, 0.2)
    loss = LacganLoss(models, cfg.loss, None, cfg.net)
    judged = []
    for on, off in ((12, 15), (15, 12)):
        t = np.full((2, 12), -1, np.int8)
        t[:, AUS.index(on)], t[:, AUS.index(off)] = 1, 0
        with torch.no_grad():
            g = loss.generate(to_batch(imgs, lm, labels, t, cfg.net, "cpu"))
        b = to_batch(imgs, lm, labels, t, cfg.net, "cpu")
        torch.testing.assert_close(g.judged, gather_windows(g.composed, b.win))
        judged.append(g.judged[:, models.G.grouping.groups.index((12, 14, 15))])
    assert (judged[0] - judged[1]).abs().max() > 1e-4
