"""Windows and the composition (Eq. 2 and the plateau variant): maps match regions.py for both rules and both
generator groupings, exact locality, batched == plain reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lacgan.compose import (Windows, compose, compose_reference, fit_window, gather_windows, scatter_windows,
                            to_float, to_uint8)
from lacgan.config import preset
from lacgan.networks import build_models
from lacgan.regions import attention_maps
from test_lacgan_helpers import faces

S = 64


@pytest.fixture(scope="module")
def face_batch():
    imgs, lm, labels = faces(5, S, seed=3)
    return imgs, lm, labels


def _full(win: Windows, values: torch.Tensor) -> torch.Tensor:
    """(B, 12, C, h, w) windows -> (B, 12, C, S, S) zero-padded full crops, one AU at a time."""
    B = values.shape[0]
    return torch.stack([scatter_windows(values[:, i:i + 1], _one(win, i), B) for i in range(12)], dim=1)


def _one(win: Windows, i: int) -> Windows:
    return Windows(win.offsets[:, i:i + 1], win.maps[:, i:i + 1], win.index[:, i:i + 1], win.size)


@pytest.mark.parametrize("rule_name", ["reference", "wide"])
def test_window_maps_are_regions_maps(face_batch, rule_name):
    _, lm, _ = face_batch
    h, w = fit_window(lm, S, rule_name)
    win = Windows.from_landmarks(lm, S, (h, w), rule_name)
    full = torch.from_numpy(attention_maps(lm, S, rule_name))  # (B, 12, S, S)
    for i in range(12):
        one = _one(win, i)
        inside = gather_windows(full[:, i:i + 1], one)[:, 0, 0]  # the full map read inside the window
        np.testing.assert_allclose(win.maps[:, i].numpy(), inside.numpy(), atol=1e-6)
        # the fitted window holds the whole region: no map mass is lost by cropping
        np.testing.assert_allclose(win.maps[:, i].sum((-1, -2)).numpy(), full[:, i].sum((-1, -2)).numpy(),
                                   rtol=1e-5)


def test_window_shape_and_bounds(face_batch):
    _, lm, _ = face_batch
    win = Windows.from_landmarks(lm, S, (20, 40))
    assert win.maps.shape == (5, 12, 20, 40) and win.index.shape == (5, 12, 20, 40)
    assert (win.offsets[..., 0] >= 0).all() and (win.offsets[..., 0] <= S - 20).all()
    assert (win.offsets[..., 1] >= 0).all() and (win.offsets[..., 1] <= S - 40).all()
    assert float(win.maps.min()) >= 0 and float(win.maps.max()) <= 1


def test_gather_scatter_roundtrip():
    x = torch.randn(2, 3, S, S)
    lm = faces(2, S)[1]
    win = Windows.from_landmarks(lm, S, (16, 16))
    g = gather_windows(x, win)
    assert g.shape == (2, 12, 3, 16, 16)
    one = _one(win, 4)
    back = scatter_windows(gather_windows(x, one), one, 2)
    mask = scatter_windows(torch.ones(2, 1, 1, 16, 16), one, 2) > 0
    assert torch.equal(back[mask.expand_as(back)], x[mask.expand_as(x)])


@pytest.mark.parametrize("mode", ["paper", "plateau"])
def test_compose_matches_plain_reference(face_batch, mode):
    _, lm, labels = face_batch
    win = Windows.from_landmarks(lm, S, fit_window(lm, S, "wide"), "wide")
    src = torch.rand(5, 3, S, S) * 2 - 1
    gen = torch.rand(5, 12, 3, *win.shape) * 2 - 1
    active = torch.from_numpy(labels >= 0)
    got, _ = compose(src, gen, win, active, mode)
    ref = compose_reference(src, _full(win, gen), _full(win, win.maps[:, :, None])[:, :, 0], active, mode)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


def test_plateau_takes_the_region_whole_but_its_border(face_batch):
    """One generator = +1 on a -1 source: Eq. 2 keeps the map's falloff; the plateau is exactly the generator
    wherever the map is >= 1/gain, and still the source outside the region."""
    _, lm, _ = face_batch
    win = Windows.from_landmarks(lm[:1], S, fit_window(lm, S, "wide"), "wide")
    active = torch.zeros(1, 12, dtype=torch.bool)
    active[0, 6] = True  # AU12's lip corners only
    src = -torch.ones(1, 3, S, S)
    gen = torch.ones(1, 12, 3, *win.shape)
    paper, cov = compose(src, gen, win, active, "paper")
    plateau, cov2 = compose(src, gen, win, active, "plateau", gain=3.0)
    full = _full(win, win.maps[:, :, None])[0, 6, 0]
    assert torch.equal(cov, cov2)
    inner = full >= 1 / 3
    assert torch.allclose(plateau[0, :, inner], torch.ones(1)) and (paper[0, 0, inner] < 1).any()
    torch.testing.assert_close(paper[0, 0], -1 + 2 * full)  # Eq. 2: A·G + (1 - A)·X
    assert torch.equal(plateau[~cov.expand_as(plateau)], src[~cov.expand_as(src)])


def test_overlap_normalisation_keeps_a_convex_blend(face_batch):
    """AU12/14/15 share one map: with all three active and every generator = +1 on a -1 source, the output
    never leaves [-1, 1] (plain Eq. 2 would reach 1 + 1 + 1 at the lip corners)."""
    _, lm, _ = face_batch
    win = Windows.from_landmarks(lm, S, fit_window(lm, S))
    src = -torch.ones(5, 3, S, S)
    out, covered = compose(src, torch.ones(5, 12, 3, *win.shape), win, torch.ones(5, 12, dtype=torch.bool))
    assert float(out.max()) <= 1.0 + 1e-6 and float(out.min()) >= -1.0
    assert float(out.max()) > 0.99  # at a region centre the generators take over fully
    assert torch.equal(out[~covered.expand_as(out)], src[~covered.expand_as(src)])


def test_unknown_target_leaves_region_as_source(face_batch):
    _, lm, _ = face_batch
    win = Windows.from_landmarks(lm, S, fit_window(lm, S))
    src = torch.rand(5, 3, S, S) * 2 - 1
    gen = torch.rand(5, 12, 3, *win.shape) * 2 - 1
    out, covered = compose(src, gen, win, torch.zeros(5, 12, dtype=torch.bool))
    assert torch.equal(out, src) and not covered.any()


DESIGNS = [dict(regions="reference", generators="per-au", output="paper", composite="paper"),
           dict(regions="wide", generators="per-region", output="difference", composite="plateau"),
           dict(regions="wide", generators="per-region", output="residual", composite="paper"),
           dict(regions="wide", generators="per-region", output="warp", composite="plateau", skips=True),
           dict(regions="wide", generators="per-region", output="warp", composite="plateau", condition="every-scale",
                condition_on="overlap")]  # the demo's design


@pytest.mark.parametrize("seed,design", [(0, 0), (1, 1), (2, 2), (3, 1), (4, 3), (5, 4)])
def test_locality_exact_with_random_networks(face_batch, seed, design):
    """With random generator weights, every pixel outside all active regions is the source, bitwise, before
    and after the uint8 conversion; pixels inside do change."""
    from lacgan.data import fit_to_faces
    from lacgan.infer import generate
    from lacgan.networks import region_groups

    imgs, lm, labels = face_batch
    cfg = preset("smoke").replace(net=DESIGNS[design])
    cfg = fit_to_faces(cfg, lm)  # the window (and, for "overlap", what each generator reads)
    models = build_models(cfg.net, seed=seed).train(False)
    G = models.G
    rng = np.random.default_rng(seed)
    targets = rng.integers(-1, 2, (5, 12)).astype(np.int8)
    out = generate(G, cfg.net, imgs, lm, targets, torch.device("cpu"), labels, models.D_local)
    win = Windows.from_landmarks(lm, S, cfg.net.window, cfg.net.regions, region_groups(cfg.net))
    t = torch.from_numpy(targets.astype(np.int64))
    act = G.grouping.active(t)
    active = win.maps * act[..., None, None]
    covered = (scatter_windows(active[:, :, None], win, 5)[:, 0] > 0).numpy()  # (B, S, S)
    assert out.dtype == np.uint8 and out.shape == imgs.shape
    np.testing.assert_array_equal(out[~covered], imgs[~covered])
    if cfg.net.output not in ("difference", "warp"):  # an untrained difference of decodings is below a grey level
        assert (out[covered] != imgs[covered]).any()
    # and in float: compose returns the very source tensor values outside
    x = to_float(torch.from_numpy(imgs))
    roi = win.maps[:, :, None] * gather_windows(x, win)
    with torch.no_grad():
        comp, cov = compose(x, G(roi, t)[:, :, :3], win, act, cfg.net.composite)
    outside = ~cov.expand_as(comp)
    assert torch.equal(comp[outside], x[outside]) and not torch.equal(comp[~outside], x[~outside])
    assert (to_uint8(comp, torch.from_numpy(imgs), cov).numpy()[~covered] == imgs[~covered]).all()


def test_fit_window_holds_every_region(face_batch):
    _, lm, _ = face_batch
    h, w = fit_window(lm, S, quantile=1.0)
    assert h % 4 == 0 and w % 4 == 0 and 0 < h <= S and 0 < w <= S
    from lacgan.regions import region_boxes

    b = region_boxes(lm, S)
    assert ((b[..., 3] - b[..., 1]) <= h).all() and ((b[..., 2] - b[..., 0]) <= w).all()
