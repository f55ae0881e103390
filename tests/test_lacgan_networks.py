"""Shapes of every network (per-AU and per-region generators); the grouped computation equals running each group
alone with the same weights; each AU of a shared region is controlled on its own."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lacgan.config import NetConfig, preset
from lacgan.networks import GroupedLinear, build_models, label_code, region_groups
from manifests.aus import AUS

WIN = (28, 44)


@pytest.fixture(scope="module", params=["per-au", "per-region"])
def models(request):
    return build_models(dataclasses.replace(preset("smoke").net, window=WIN, generators=request.param), seed=1)


def test_shapes(models):
    G = models.G.G
    x = torch.randn(3, G, 3, *WIN)
    lab = torch.randint(-1, 2, (3, 12))
    with torch.no_grad():
        z = models.G.encode(x)
        y = models.G.decode(z, lab)
    assert z.shape == (3, G, 8) and float(z.abs().max()) <= 1.0  # tanh: inside the prior's support
    assert y.shape == (3, G, 3, *WIN) and float(y.abs().max()) <= 1.0
    assert models.D_z(z).shape == (3, G)
    slots = models.G.grouping.slots
    assert models.D_lat(z).shape == (3, G, slots)
    d, r = models.D_local(x, lab)
    assert d.shape == (3, G) and r.shape == (3, G, slots)
    assert models.D_global(torch.randn(3, 3, 64, 64)).shape[0] == 3


def test_group_counts():
    assert len(region_groups(NetConfig(generators="per-au"))) == 12
    groups = region_groups(NetConfig(generators="per-region"))
    assert len(groups) == 9 and (12, 14, 15) in groups and (23, 24) in groups


def test_paper_sizes_build():
    cfg = NetConfig(window=(96, 184))
    m = build_models(cfg)
    assert m.G.enc_fc.weight.shape == (12, 256 * 3 * 6, 60)  # 5 stride-2 convs: 96×184 -> 3×6
    assert m.G.dec_fc.weight.shape == (12, 60 + 60, 256 * 3 * 6)
    assert m.G.enc[0].weight.shape == (12 * 32, 3, 5, 5)  # 5×5 kernels, one group per AU
    assert len(m.G.enc) == 5 and len(m.G.dec) == 5 and len(m.D_z.layers) == 4 and len(m.D_local.convs) == 4


def test_batched_equals_per_group_loop(models):
    x = torch.randn(4, models.G.G, 3, *WIN)
    lab = torch.randint(-1, 2, (4, 12))
    with torch.no_grad():
        torch.testing.assert_close(models.G(x, lab), models.G.forward_loop(x, lab), atol=1e-5, rtol=0)


def test_groups_are_independent(models):
    """Changing group 3's input or one of its AUs' labels changes only group 3's output."""
    G = models.G.G
    x = torch.randn(2, G, 3, *WIN)
    lab = torch.zeros(2, 12, dtype=torch.long)
    au = models.G.grouping.groups[3][0]
    with torch.no_grad():
        a = models.G(x, lab)
        x2, lab2 = x.clone(), lab.clone()
        x2[:, 3] += 1
        lab2[:, AUS.index(au)] = 1
        b = models.G(x2, lab2)
    diff = (a - b).abs().amax(dim=(0, 2, 3, 4))
    assert diff[3] > 0 and torch.equal(diff[torch.arange(G) != 3], torch.zeros(G - 1))


def test_each_au_of_a_shared_region_has_its_own_control():
    """Per-region: the lip-corner generator draws AU12=1/AU15=0 and AU12=0/AU15=1 differently (per-AU CARGs of
    a shared map would be averaged by the composition instead)."""
    m = build_models(dataclasses.replace(preset("smoke").net, window=WIN, generators="per-region"), seed=2)
    g = m.G.grouping.groups.index((12, 14, 15))
    z = torch.rand(1, m.G.G, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1  # not the global stream
    a, b = torch.zeros(1, 12, dtype=torch.long), torch.zeros(1, 12, dtype=torch.long)
    a[0, AUS.index(12)], b[0, AUS.index(15)] = 1, 1
    with torch.no_grad():
        ya, yb = m.G.decode(z, a)[:, g], m.G.decode(z, b)[:, g]
    assert (ya - yb).abs().max() > 1e-5  # an untrained decoder's outputs differ by ~1e-3 (float noise is ~1e-7)
    assert torch.equal(m.G.grouping.codes(a)[0, g], torch.tensor([1.0, -1.0, -1.0]))


def test_label_conditions_the_decoder(models):
    z = torch.rand(2, models.G.G, 8) * 2 - 1
    with torch.no_grad():
        on = models.G.decode(z, torch.ones(2, 12, dtype=torch.long))
        off = models.G.decode(z, torch.zeros(2, 12, dtype=torch.long))
    assert not torch.allclose(on, off)
    assert torch.equal(label_code(torch.tensor([1, 0, -1])), torch.tensor([1.0, -1.0, 0.0]))


def test_grouping_round_trip():
    m = build_models(dataclasses.replace(preset("smoke").net, window=WIN, generators="per-region"))
    lab = torch.randint(-1, 2, (5, 12))
    grouped = m.G.grouping.labels(lab)
    assert torch.equal(m.G.grouping.ungroup(grouped), lab)
    assert torch.equal(m.G.grouping.active(torch.full((1, 12), -1)), torch.zeros(1, 9, dtype=torch.bool))


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


@pytest.mark.parametrize("window", [(28, 44), (20, 36), (64, 64)])
def test_skips_build_and_batched_equals_loop(window):
    m = build_models(dataclasses.replace(preset("smoke").net, window=window, skips=True), seed=3)
    x = torch.randn(2, m.G.G, 3, *window)
    lab = torch.randint(-1, 2, (2, 12))
    with torch.no_grad():
        y = m.G(x, lab)
        torch.testing.assert_close(y, m.G.forward_loop(x, lab), atol=1e-5, rtol=0)
        _, (a, b) = m.G.encode_decode(x, [lab, 1 - lab.abs()])
    torch.testing.assert_close(a, y)
    assert not torch.equal(a, b)
    plain = build_models(dataclasses.replace(preset("smoke").net, window=window), seed=3)
    assert y.shape == (2, m.G.G, 3, *window)
    assert m.G.dec[-1].in_channels == m.G.G * (4 + 4)  # the last decoder layer reads enc layer 0 (4 channels)
    assert plain.G.dec[-1].in_channels == plain.G.G * 4


@pytest.mark.parametrize("skips", [False, True])
def test_every_scale_condition_batched_equals_loop_and_reads_the_labels(skips):
    """condition="every-scale": every decoder layer reads the group's label codes as planes (one per slot);
    the grouped path equals the per-group loop, and a label change reaches the output."""
    net = dataclasses.replace(preset("smoke").net, window=(28, 44), skips=skips, condition="every-scale")
    m = build_models(net, seed=3)
    slots = m.G.grouping.slots
    extra = 4 if skips else 0  # the last decoder layer also reads encoder layer 0 (4 channels) with skips
    assert m.G.dec[-1].in_channels == m.G.G * (4 + extra + slots)
    x = torch.randn(2, m.G.G, 3, 28, 44)
    lab = torch.randint(-1, 2, (2, 12))
    with torch.no_grad():
        y = m.G(x, lab)
        torch.testing.assert_close(y, m.G.forward_loop(x, lab), atol=1e-5, rtol=0)
        other = m.G(x, 1 - lab.clamp(min=0))
    assert not torch.equal(y, other)


@pytest.mark.parametrize("condition", ["bottleneck", "every-scale"])
def test_generators_reading_all_labels_follow_an_au_of_another_region(condition):
    """condition_on="all": every region generator reads all 12 label codes (12 planes per decoder layer at
    every scale), so AU2's region (the outer brows) can follow AU4; with "region" it reads AU2's code alone and
    cannot. Grouped path == per-group loop either way."""
    from lacgan.regions import REGION_GROUPS
    from manifests.aus import AUS

    g2 = REGION_GROUPS.index((2,))
    x = torch.randn(2, len(REGION_GROUPS), 3, 28, 44)
    lab = torch.zeros(2, len(AUS), dtype=torch.long)
    au4 = lab.clone()
    au4[:, AUS.index(4)] = 1
    out = {}
    for on in ("region", "all"):
        net = dataclasses.replace(preset("smoke").net, window=(28, 44), condition=condition, condition_on=on)
        m = build_models(net, seed=3)
        if condition == "every-scale":
            assert m.G.dec[-1].in_channels == m.G.G * (4 + (12 if on == "all" else m.G.grouping.slots))
        with torch.no_grad():
            y = m.G(x, lab)
            torch.testing.assert_close(y, m.G.forward_loop(x, lab), atol=1e-5, rtol=0)
            out[on] = (y[:, g2] - m.G(x, au4)[:, g2]).abs().max().item()
    assert out["region"] == 0.0 and out["all"] > 1e-4
    with pytest.raises(ValueError, match="condition_on"):
        dataclasses.replace(preset("smoke").net, condition_on="some")


def test_generators_reading_overlapping_regions_follow_neighbours_only():
    """condition_on="overlap": each generator reads the AUs whose regions overlap its own on the training faces'
    mean face (fitted into NetConfig.reads by fit_to_faces). On the helpers' faces with the wide rule, AU2's
    outer-brow generator reads AU4 (their regions overlap) but not AU17 (the chin): AU4 changes its output, AU17
    changes nothing in it, and the chin generator does follow AU17. Grouped path == per-group loop."""
    from lacgan.data import fit_to_faces
    from lacgan.regions import REGION_GROUPS
    from manifests.aus import AUS
    from test_lacgan_helpers import faces

    _, lm, _ = faces(4, 64)
    cfg = preset("smoke").replace(net={"regions": "wide", "condition": "every-scale", "condition_on": "overlap"})
    cfg = fit_to_faces(cfg, lm)
    reads = dict(zip(REGION_GROUPS, cfg.net.reads))
    assert 4 in reads[(2,)] and 17 not in reads[(2,)] and 17 in reads[(17,)]
    assert all(set(g) <= set(r) for g, r in reads.items())
    m = build_models(cfg.net, seed=3)
    x = torch.randn(2, len(REGION_GROUPS), 3, *cfg.net.window)
    lab = torch.zeros(2, len(AUS), dtype=torch.long)
    with torch.no_grad():
        y = m.G(x, lab)
        torch.testing.assert_close(y, m.G.forward_loop(x, lab), atol=1e-5, rtol=0)
        for au, group, moves in ((4, (2,), True), (17, (2,), False), (17, (17,), True)):
            t = lab.clone()
            t[:, AUS.index(au)] = 1
            change = (m.G(x, t) - y)[:, REGION_GROUPS.index(group)].abs().max().item()
            assert (change > 1e-4) if moves else (change == 0.0), (au, group, change)
    with pytest.raises(ValueError, match="reads"):
        build_models(dataclasses.replace(cfg.net, reads=None), seed=3)
    with pytest.raises(ValueError, match="own AUs"):
        build_models(dataclasses.replace(cfg.net, reads=((4,),) + cfg.net.reads[1:]), seed=3)
