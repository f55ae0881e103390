"""AU attention maps (lacgan.regions): centres by the JAA-Net reference rule and the `wide` deviation, map values
(hand-computed against PyTorch-JAANet's generate_map), boxes, groups; and the sheet."""

from __future__ import annotations

import numpy as np
import pytest

from lacgan.regions import AU_REGION, REGION_GROUPS, RULES, attention_maps, au_centres, region_boxes
from manifests.aus import AUS

S = 128


def _face(size: int = S) -> np.ndarray:
    """An upright iBUG-68 face built from simple curves (x right, y down), eyes level, in a size×size crop."""
    u = size / 200.0
    pts = np.zeros((68, 2))
    th = np.linspace(-np.pi / 2, np.pi / 2, 17)  # jaw 0-16: from the right temple down to the chin (8) and up
    pts[0:17] = np.stack([100 + 62 * np.sin(th), 75 + 100 * np.cos(th)], 1)
    for k, (a, b) in enumerate(((42, 88), (112, 158))):  # brows 17-21, 22-26
        x = np.linspace(a, b, 5)
        pts[17 + 5 * k:22 + 5 * k] = np.stack([x, 58 - 6 * np.sin(np.linspace(0, np.pi, 5))], 1)
    pts[27:31] = np.stack([np.full(4, 100.0), np.linspace(70, 112, 4)], 1)  # nose bridge to tip (30)
    pts[31:36] = np.stack([np.linspace(88, 112, 5), np.full(5, 118.0)], 1)  # nostrils
    for k, cx in enumerate((67.0, 133.0)):  # eyes 36-41, 42-47: hexagons around (cx, 72)
        ang = np.deg2rad([180, 120, 60, 0, -60, -120])
        pts[36 + 6 * k:42 + 6 * k] = np.stack([cx + 15 * np.cos(ang), 72 - 6 * np.sin(ang)], 1)
    ang = np.deg2rad(np.linspace(180, -150, 12))  # outer lip 48-59 from the right corner, over the top
    pts[48:60] = np.stack([100 + 26 * np.cos(ang), 142 - 10 * np.sin(ang)], 1)
    ang = np.deg2rad(np.linspace(180, -135, 8))
    pts[60:68] = np.stack([100 + 18 * np.cos(ang), 142 - 4 * np.sin(ang)], 1)
    return pts * u


def _rot(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def test_reference_centres_follow_jaanet_on_an_upright_face():
    """PyTorch-JAANet's generate_map calls in 49-point indices, translated: 49-i = 68-(i+17) for brows/nose/eyes,
    49-31..42 = 68-48..59, 49-43..45 = 68-61..63; ruler = |x[22] - x[25]| (49) = |x39 - x42| (68)."""
    lm = _face()
    c = au_centres(lm, "reference").astype(np.float64)
    ruler = abs(lm[39, 0] - lm[42, 0])
    up = np.array([0.0, -ruler])
    expect = {
        1: (lm[21] + up / 2, lm[22] + up / 2),  # 49: 4, 5
        2: (lm[18] + up / 3, lm[25] + up / 3),  # 49: 1, 8
        4: (lm[19] - up / 3, lm[24] - up / 3),  # 49: 2, 7
        6: (lm[41] - up, lm[46] - up),  # 49: 24, 29
        7: (lm[38], lm[43]),  # 49: 21, 26
        10: (lm[61], lm[63]),  # 49: 43, 45
        12: (lm[48], lm[54]), 14: (lm[48], lm[54]), 15: (lm[48], lm[54]),  # 49: 31, 37
        17: (lm[56] - up / 2, lm[58] - up / 2),  # 49: 39, 41
        23: (lm[51], lm[57]), 24: (lm[51], lm[57]),  # 49: 34, 40
    }
    for i, au in enumerate(AUS):
        np.testing.assert_allclose(c[i], np.stack(expect[au]), atol=1e-4, err_msg=f"AU{au}")


def test_reference_map_values_match_generate_map_hand_computed():
    """At S = 200: box half-side 0.07·S = 14 px, value 1 - 4·L1/S (generate_map's 1 - L1·0.56/(0.14·M) in cells)."""
    lm = _face(200)
    lm += np.round(lm[38]) - lm[38]  # AU7's first centre (upper lid 38) on a pixel
    x, y = np.round(lm[38]).astype(int)
    m = attention_maps(lm, 200, "reference")[AUS.index(7)]
    assert m[y, x] == pytest.approx(1.0)
    assert m[y, x + 3] == pytest.approx(1 - 4 * 3 / 200)
    assert m[y + 14, x + 14] == pytest.approx(1 - 4 * 28 / 200)  # the box corner: 0.44
    assert m[y + 15, x] == 0 and m[y, x - 15] == 0  # outside the box: nothing, however close
    lm2 = lm.copy()
    lm2[43] = lm2[38] + 100  # move the other centre away: only the first one's box remains near it
    assert (attention_maps(lm2, 200, "reference")[AUS.index(7)][y - 14:y + 15, x - 14:x + 15] > 0.43).all()


def test_wide_centres_follow_the_rules_on_an_upright_face():
    lm = _face()
    c = au_centres(lm, "wide").astype(np.float64)
    assert c.shape == (12, 2, 2)
    scale = np.linalg.norm(lm[42] - lm[39])
    up = np.array([0.0, -scale])  # eyes level: "up" is -y
    expect = {
        1: (lm[21] + up / 2, lm[22] + up / 2),
        2: (lm[17] + up / 3, lm[26] + up / 3),
        4: (lm[19] - up / 3, lm[24] - up / 3),
        6: (lm[40:42].mean(0) - up, lm[46:48].mean(0) - up),
        7: (lm[36:42].mean(0), lm[42:48].mean(0)),
        10: (lm[50], lm[52]),
        12: (lm[48], lm[54]), 14: (lm[48], lm[54]), 15: (lm[48], lm[54]),
        17: (lm[56] - up / 2, lm[58] - up / 2),
        23: (lm[51], lm[57]), 24: (lm[51], lm[57]),
    }
    for i, au in enumerate(AUS):
        np.testing.assert_allclose(c[i], np.stack(expect[au]), atol=1e-4, err_msg=f"AU{au}")
    # Up is up: brow regions above the eyes, AU6 and AU17 below their anchors.
    assert c[AUS.index(1), :, 1].max() < lm[21, 1] and c[AUS.index(17), :, 1].min() > lm[57, 1]


def test_centres_rotate_with_the_face():
    lm = _face()
    centre = np.array([S / 2, S / 2])
    r = _rot(25)
    turned = (lm - centre) @ r.T + centre
    want = (au_centres(lm, "wide").astype(np.float64) - centre) @ r.T + centre
    np.testing.assert_allclose(au_centres(turned, "wide"), want, atol=1e-3)


def test_wide_map_values():
    lm = _face()
    radius = RULES["wide"].extent * S
    maps = attention_maps(lm, S, "wide")
    assert maps.shape == (12, S, S) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    c = au_centres(lm, "wide").astype(np.float64)
    gy, gx = np.mgrid[0:S, 0:S]
    for i, au in enumerate(AUS):
        d = np.stack([np.abs(gx - x) + np.abs(gy - y) for x, y in c[i]]).min(0)  # Manhattan, nearest centre
        np.testing.assert_allclose(maps[i], np.clip(1 - d / radius, 0, 1), atol=1e-5, err_msg=f"AU{au}")
        assert (maps[i][d >= radius] == 0).all()
        for x, y in c[i]:  # 1 at the centre: the nearest pixel is within Manhattan distance 1 of it
            assert maps[i][int(round(y)), int(round(x))] >= 1 - 1 / radius - 1e-6


def test_map_is_exactly_one_at_an_integer_centre():
    lm = _face(200)
    lm += np.round(lm[36:42].mean(0)) - lm[36:42].mean(0)  # put the right-eye centre (AU7) on a pixel
    x, y = np.round(lm[36:42].mean(0)).astype(int)
    m = attention_maps(lm, 200, "wide")[AUS.index(7)]
    assert m[y, x] == pytest.approx(1.0)
    assert m[y, x + 1] == pytest.approx(1 - 1 / (RULES["wide"].extent * 200), abs=1e-5)


@pytest.mark.parametrize("rule_name", sorted(RULES))
def test_batched_maps_and_boxes_hold_every_nonzero_pixel(rule_name):
    rng = np.random.default_rng(0)
    centre = np.array([S / 2, S / 2])
    batch = np.stack([(_face() - centre) @ _rot(a).T * s + centre + rng.uniform(-30, 30, 2)
                      for a, s in zip(rng.uniform(-30, 30, 4), rng.uniform(0.7, 1.2, 4))])
    maps = attention_maps(batch, S, rule_name)
    boxes = region_boxes(batch, S, rule_name)
    assert maps.shape == (4, 12, S, S) and boxes.shape == (4, 12, 4)
    np.testing.assert_allclose(maps[2], attention_maps(batch[2], S, rule_name))
    for n in range(4):
        for i in range(12):
            x0, y0, x1, y1 = boxes[n, i]
            assert 0 <= x0 <= x1 <= S and 0 <= y0 <= y1 <= S
            inside = np.zeros((S, S), bool)
            inside[y0:y1, x0:x1] = True
            assert not (maps[n, i][~inside] > 0).any(), (n, AUS[i])
            c = au_centres(batch[n], rule_name)[i]
            if ((c >= 0) & (c <= S - 1)).all():  # a centre inside the crop: the box holds its peak
                assert maps[n, i][inside].max() > 0.9


def test_region_groups_are_the_distinct_centres():
    lm = _face()
    for rule_name in RULES:
        c = au_centres(lm, rule_name)
        for g in REGION_GROUPS:
            for a in g:
                np.testing.assert_array_equal(c[AUS.index(a)], c[AUS.index(g[0])])
        firsts = [c[AUS.index(g[0])] for g in REGION_GROUPS]
        assert len({f.tobytes() for f in firsts}) == len(REGION_GROUPS)  # 9 distinct regions
    assert sorted(a for g in REGION_GROUPS for a in g) == sorted(AUS)
    assert [REGION_GROUPS[AU_REGION[i]] for i in range(12)][AUS.index(15)] == (12, 14, 15)


def test_bad_landmark_shape():
    with pytest.raises(ValueError, match=r"\(\.\.\., 68, 2\)"):
        au_centres(np.zeros((5, 2)))


def test_regions_sheet(aligned_store, tmp_path):
    """The overlay sheet of the cohort's aligned faces: a PNG with 12 labelled panels."""
    from PIL import Image

    from pipelines.regions_sheet import write_regions_sheet

    out = write_regions_sheet(aligned_store, tmp_path / "regions.png", n=4)
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape[0] > 200 and img.shape[1] > 400
    assert img.std() > 20  # not a blank canvas
