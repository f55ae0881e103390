"""Shapes of every network; the grouped 12-AU computation equals running each AU alone with the same weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lacgan.config import NetConfig, preset
from lacgan.networks import GroupedLinear, build_models, label_code


@pytest.fixture(scope="module")
def models():
    return build_models(dataclasses.replace(preset("smoke").net, window=(28, 44)), seed=1)


def test_shapes(models):
    x = torch.randn(3, 12, 3, 28, 44)
    lab = torch.randint(-1, 2, (3, 12))
    with torch.no_grad():
        z = models.G.encode(x)
        y = models.G.decode(z, lab)
    assert z.shape == (3, 12, 8) and float(z.abs().max()) <= 1.0  # tanh: inside the prior's support
    assert y.shape == (3, 12, 3, 28, 44) and float(y.abs().max()) <= 1.0
    assert models.D_z(z).shape == (3, 12)
    d, r = models.D_local(x, lab)
    assert d.shape == (3, 12) and r.shape == (3, 12)
    assert models.D_global(torch.randn(3, 3, 64, 64)).shape[0] == 3


def test_paper_sizes_build():
    cfg = NetConfig(window=(96, 184))
    m = build_models(cfg)
    assert m.G.enc_fc.weight.shape == (12, 256 * 3 * 6, 60)  # 5 stride-2 convs: 96×184 -> 3×6
    assert m.G.dec_fc.weight.shape == (12, 60 + 60, 256 * 3 * 6)
    assert m.G.enc[0].weight.shape == (12 * 32, 3, 5, 5)  # 5×5 kernels, one group per AU
    assert len(m.G.enc) == 5 and len(m.G.dec) == 5 and len(m.D_z.layers) == 4 and len(m.D_local.convs) == 4


def test_batched_equals_per_au_loop(models):
    x = torch.randn(4, 12, 3, 28, 44)
    lab = torch.randint(-1, 2, (4, 12))
    with torch.no_grad():
        torch.testing.assert_close(models.G(x, lab), models.G.forward_loop(x, lab), atol=1e-5, rtol=0)


def test_aus_are_independent(models):
    """Changing AU 3's input or label changes only AU 3's output."""
    x = torch.randn(2, 12, 3, 28, 44)
    lab = torch.zeros(2, 12, dtype=torch.long)
    with torch.no_grad():
        a = models.G(x, lab)
        x2, lab2 = x.clone(), lab.clone()
        x2[:, 3] += 1
        lab2[:, 3] = 1
        b = models.G(x2, lab2)
    diff = (a - b).abs().amax(dim=(0, 2, 3, 4))
    assert diff[3] > 0 and torch.equal(diff[torch.arange(12) != 3], torch.zeros(11))


def test_label_conditions_the_decoder(models):
    z = torch.rand(2, 12, 8) * 2 - 1
    with torch.no_grad():
        on = models.G.decode(z, torch.ones(2, 12, dtype=torch.long))
        off = models.G.decode(z, torch.zeros(2, 12, dtype=torch.long))
    assert not torch.allclose(on, off)
    assert torch.equal(label_code(torch.tensor([1, 0, -1])), torch.tensor([1.0, -1.0, 0.0]))


def test_grouped_linear_single_matches():
    g = GroupedLinear(3, 5, 2)
    x = torch.randn(4, 3, 5)
    torch.testing.assert_close(g(x)[:, 1], g.single(x[:, 1], 1))


def test_seeded_build_is_reproducible():
    cfg = dataclasses.replace(preset("smoke").net, window=(16, 16))
    a, b = build_models(cfg, seed=5), build_models(cfg, seed=5)
    assert torch.equal(a.G.enc[0].weight, b.G.enc[0].weight)
    with pytest.raises(ValueError, match="window"):
        build_models(preset("smoke").net)
