"""Feature painters of the cohort renderer: hair, ears, skin details, AU textures, eyes, brows, lips.

Each painter places its shapes in face units relative to the frame's (AU-moved) landmarks `f.fu` and draws
them through `f.px`, so features and landmarks stay in register under any pose. AU textures take their
strength from the AU intensity (`f.au(12)`), scaled by the person's wrinkle depth.
"""

from __future__ import annotations

import numpy as np

from .canvas import Canvas, dots_mask, intersect, smooth_curve

_CHIN_DOTS = np.random.default_rng(1717).uniform(-1, 1, (400, 2))  # fixed chin-wrinkle pattern (unit disc)
_CHIN_DOTS = _CHIN_DOTS[(_CHIN_DOTS**2).sum(1) < 1][:110]


def _fold(c: Canvas, f, pts_fu, strength: float, width: float = 0.014, side=(0.0, -0.018), soft: float = 0.01):
    """A skin fold: a soft shadow line plus a line of lit, raised skin beside it (offset `side`, face units)."""
    if strength <= 0.01:
        return
    pts = np.asarray(pts_fu, np.float64)
    curve = smooth_curve(pts, 16) if len(pts) > 2 else pts
    a = min(strength, 1.0)
    c.line(f.px(curve), 0.5, width * f.k, a, blur=soft * f.k, mode="mul")
    c.line(f.px(curve + side), lit_skin(f), width * f.k, 0.5 * a, blur=1.25 * soft * f.k)


def lit_skin(f) -> np.ndarray:
    """The person's skin colour where it catches the light (highlights keep the skin's hue)."""
    return np.clip(np.asarray(f.ident.skin, np.float32) * 1.25 + 0.07, 0, 1)


# ---- outside the face -------------------------------------------------------------------------------------
def clothes_and_neck(c: Canvas, f, skin) -> None:
    jaw = f.fu[0:17]
    w = (jaw[16, 0] - jaw[0, 0]) / 2
    neck = np.array([[-0.55 * w, 0.9], [-0.6 * w, 2.6], [0.6 * w, 2.6], [0.55 * w, 0.9]])
    c.poly(f.px(neck), skin * 0.86)
    for side in (-1, 1):  # the neck rounds away at its sides
        c.line(f.px(np.array([[side * 0.5 * w, 1.0], [side * 0.58 * w, 2.4]])), 0.7, 0.1 * f.k, 0.6, blur=0.05 * f.k,
               mode="mul")  # fmt: skip
    rest = f.neutral[3:14]  # the shadow under the jaw, from the resting jaw (it barely moves)
    c.poly(f.px(smooth_curve(rest, 24) + (0, 0.12)), 0.55, alpha=0.8, blur=0.08 * f.k, mode="mul")
    shirt = np.array([[-3.0, 2.0], [-0.75 * w, 1.75], [0, 2.15], [0.75 * w, 1.75], [3.0, 2.0], [3.0, 5.0], [-3.0, 5.0]])
    col = np.asarray(f.ident.shirt, np.float32)
    c.poly(f.px(shirt), col)
    c.line(f.px(shirt[1:4]), col * 0.5, 0.04 * f.k, 0.8, blur=0.01 * f.k)


def _head_rx(f) -> float:
    return float((f.fu[16, 0] - f.fu[0, 0]) / 2)


def _hairline(f) -> float:
    return float(f.neutral[17:27, 1].mean() - f.ident.hairline)


def _hair_top(f) -> np.ndarray:
    """Face-unit outline of the hair mass on top of the head: outer edge over the skull, then the hairline
    back across the forehead (with a side parting, temple corners, and a fringe sweep for some styles)."""
    style, part = f.ident.hair_style, f.ident.hair_part
    rx, hl = _head_rx(f), _hairline(f)
    bulk = {"buzz": 0.04, "short": 0.12, "bun": 0.06}.get(style, 0.16)
    t = np.linspace(0.0, np.pi, 25)
    outer = np.stack([(rx + bulk) * np.cos(t), -0.05 - (1.32 + bulk) * np.sin(t)], 1)
    side = {"buzz": -0.5, "short": -0.38, "bun": -0.45}.get(style, -0.2)
    temple = 0.1 if not f.ident.female else 0.03  # receding temple corners on men
    sweep = 0.12 if style in ("short", "bob", "long") else 0.0  # fringe swept to one side
    inner = np.array([
        [-rx * 1.0, side], [-rx * 0.92, hl + 0.2], [-rx * 0.68, hl - temple + 0.06 - sweep * (part < 0)],
        [part * 0.45 - 0.1, hl + 0.02 + sweep * 0.5], [part * 0.45, hl - 0.04],
        [part * 0.45 + 0.1, hl + 0.02 + sweep * 0.5],
        [rx * 0.68, hl - temple + 0.06 - sweep * (part > 0)], [rx * 0.92, hl + 0.2], [rx * 1.0, side],
    ])  # fmt: skip
    return np.concatenate([outer, smooth_curve(inner, 32)])


def hair_back(c: Canvas, f) -> None:
    style, hair = f.ident.hair_style, np.asarray(f.ident.hair, np.float32)
    rx = _head_rx(f)
    if style in ("long", "bob"):
        bottom = 2.1 if style == "long" else 1.05
        shape = np.array([[0.0, -1.3], [-rx * 0.9, -1.0], [-rx - 0.18, -0.45], [-rx - 0.3, bottom * 0.6],
                          [-rx - 0.25, bottom], [rx + 0.25, bottom], [rx + 0.3, bottom * 0.6], [rx + 0.18, -0.45],
                          [rx * 0.9, -1.0]])  # fmt: skip
        c.poly(f.px(smooth_curve(shape, 40, closed=True)), hair * 0.72)
    if style == "bun":
        c.ellipse(f.px([0.0, -1.45]), (0.42 * f.k, 0.3 * f.k), hair * 0.9)


def ears(c: Canvas, f, skin) -> None:
    jaw = f.fu[0:17]
    for side, j in ((-1, 1), (1, 15)):
        centre = jaw[j] + (side * 0.04, -0.02)
        c.ellipse(f.px(centre), (0.12 * f.k, 0.24 * f.k), skin * 0.92, angle_deg=np.degrees(f.pose.roll))
        c.ellipse(f.px(centre + (side * 0.02, 0.0)), (0.06 * f.k, 0.15 * f.k), 0.7, alpha=0.7,
                  angle_deg=np.degrees(f.pose.roll), blur=0.02 * f.k, mode="mul")  # fmt: skip


def hair_front(c: Canvas, f) -> None:
    style, hair = f.ident.hair_style, np.asarray(f.ident.hair, np.float32)
    alpha = 0.6 if style == "buzz" else 1.0
    rx, hl, part = _head_rx(f), _hairline(f), f.ident.hair_part
    top = _hair_top(f)
    c.poly(f.px(top), hair, alpha=alpha, blur=0.006 * f.k)
    if style in ("long", "bob"):  # locks framing the face, over the temples and ears
        for s in (-1, 1):
            end = 1.0 if style == "long" else 0.75
            lock = np.array([[s * (rx * 0.7), hl + 0.05], [s * (rx * 0.93), 0.0], [s * (rx * 0.97), end],
                             [s * (rx + 0.2), end + 0.05], [s * (rx + 0.18), -0.2], [s * rx * 0.9, hl - 0.2]])  # fmt: skip
            c.poly(f.px(smooth_curve(lock, 30, closed=True)), hair * 0.95, alpha=alpha, blur=0.006 * f.k)
    # sheen, the parting, and strands that follow the hair's flow from the crown
    c.ellipse(f.px([part * 0.3 - 0.2, -1.15]), (0.45 * f.k, 0.12 * f.k), 0.22, alpha=0.5 * alpha, blur=0.06 * f.k,
              mode="screen")  # fmt: skip
    if style != "buzz":
        c.line(f.px(np.array([[part * 0.45, hl - 0.04], [part * 0.4, -1.2]])), hair * 0.55, 0.012 * f.k, 0.7)
    rng = np.random.default_rng(int(f.ident.hair[0] * 1e6) + 7)
    for i in range(16):
        x = rng.uniform(-0.95, 0.95)
        strand = np.array([[part * 0.4, -1.25], [x * 0.75 + part * 0.1, (hl - 1.25) / 2], [x, hl - 0.03]])
        tone = hair * (0.55 if i % 2 else 1.35)
        c.line(f.px(smooth_curve(strand, 10)), np.clip(tone, 0, 1), 0.009 * f.k, 0.3 * alpha)


# ---- skin -------------------------------------------------------------------------------------------------
def skin_details(c: Canvas, f, skin, light) -> None:
    fu, k, au = f.fu, f.k, f.au
    # eye sockets: shadow under the brow ridge, deeper when the brows are lowered
    for eye in (slice(36, 42), slice(42, 48)):
        e = fu[eye].mean(0)
        c.ellipse(f.px(e + (0, -0.05)), (0.27 * k, 0.15 * k), 0.6, alpha=0.22 + 0.25 * au(4), blur=0.06 * k,
                  mode="mul")  # fmt: skip
    # cheeks: blush and the cheekbone highlight; AU6 lifts and bunches the infraorbital cheek (and AU12 a little)
    lift = au(6) + 0.3 * au(12)
    for s in (-1, 1):
        c.ellipse(f.px([s * 0.55, 0.42]), (0.22 * k, 0.15 * k), (0.85, 0.3, 0.3), alpha=0.12 * f.ident.blush,
                  blur=0.08 * k)  # fmt: skip
        c.ellipse(f.px([s * 0.62, 0.3]), (0.16 * k, 0.07 * k), (0.3, 0.26, 0.22), alpha=0.3, blur=0.05 * k,
                  mode="screen")  # fmt: skip
        if lift > 0.01:
            bulge = np.array([s * 0.42, 0.4 - 0.05 * lift])
            c.ellipse(f.px(bulge), (0.18 * k, 0.08 * k), (0.85, 0.35, 0.3), alpha=0.12 * lift, blur=0.04 * k)
            c.ellipse(f.px(bulge), (0.16 * k, 0.09 * k), lit_skin(f), alpha=min(1.0, lift), blur=0.05 * k)
            # the lower edge of the bunched cheek: a broad soft shadow, deeper towards the nose
            c.ellipse(f.px(bulge + (s * -0.05, 0.1)), (0.15 * k, 0.05 * k), 0.72, angle_deg=np.degrees(f.pose.roll)
                      + s * 20, alpha=0.6 * lift, blur=0.045 * k, mode="mul")  # fmt: skip
    # nose: bridge sides, alar wings, nostrils, tip highlight, shadow under the nose
    for s in (-1, 1):
        side = np.array([[s * 0.09, -0.05], [s * 0.11, 0.15], [s * 0.14, 0.36]])
        away = max(0.0, -s * float(np.cos(light.angle)))  # the nose side turned away from the light is darker
        c.line(f.px(smooth_curve(side, 10)), 0.7, 0.035 * k, 0.35 + 1.5 * light.strength * away, blur=0.025 * k,
               mode="mul")  # fmt: skip
        wing = fu[31 if s < 0 else 35]
        arc = np.array([wing + (s * 0.0, 0.02), wing + (s * 0.04, -0.04), wing + (s * 0.0, -0.1)])
        c.line(f.px(smooth_curve(arc, 10)), 0.55, 0.018 * k, 0.55, blur=0.008 * k, mode="mul")
        nostril = (fu[32 if s < 0 else 34] + fu[33]) / 2 + (s * 0.02, -0.012)
        c.ellipse(f.px(nostril), (0.035 * k, 0.016 * k), (0.25, 0.12, 0.1), angle_deg=np.degrees(f.pose.roll) + s * 15,
                  alpha=0.85, blur=0.005 * k)  # fmt: skip
    c.ellipse(f.px(fu[30] + (0, -0.02)), (0.06 * k, 0.045 * k), 0.4, alpha=0.45, blur=0.025 * k, mode="screen")
    c.ellipse(f.px(fu[27] + (0, 0.12)), (0.025 * k, 0.12 * k), 0.3, alpha=0.35, blur=0.02 * k, mode="screen")
    c.poly(f.px(np.array([fu[31], fu[33] + (0, 0.04), fu[35], fu[35] + (0, 0.06), fu[31] + (0, 0.06)])), 0.75,
           alpha=0.6, blur=0.02 * k, mode="mul")  # fmt: skip
    # philtrum
    for s in (-1, 1):
        c.line(f.px(np.array([fu[33] + (s * 0.03, 0.02), fu[51] + (s * 0.035, -0.01)])), 0.8, 0.012 * k, 0.35,
               blur=0.01 * k, mode="mul")  # fmt: skip
    # chin highlight (the chin boss; it rises with AU17) and the mentolabial sulcus
    chin = (fu[57] + fu[8]) / 2 + (0, 0.05)
    c.ellipse(f.px(chin), (0.17 * k, 0.09 * k), 0.3, alpha=0.3 + 0.3 * au(17), blur=0.05 * k, mode="screen")
    sulcus = np.array([fu[59], fu[58], fu[57], fu[56], fu[55]]) + (0, 0.075)
    _fold(c, f, sulcus, 0.12 + 0.6 * au(17), width=0.016, side=(0, 0.018))
    if f.ident.stubble > 0:
        # beard shadow: from the sideburns down the jaw, up the cheeks diagonally to the moustache
        jaw = fu[1:16]
        upper = [fu[15] + (-0.06, 0.0), (fu[14] + fu[54]) / 2 + (0.05, -0.12), fu[35] + (0.06, 0.1),
                 fu[33] + (0, 0.06), fu[31] + (-0.06, 0.1), (fu[2] + fu[48]) / 2 + (-0.05, -0.12), fu[1] + (0.06, 0.0)]
        beard = np.concatenate([jaw, smooth_curve(np.array(upper), 24)])
        c.poly(f.px(beard), 0.72, alpha=f.ident.stubble, blur=0.06 * k, mode="mul")


def au_textures(c: Canvas, f) -> None:
    fu, k, au, depth = f.fu, f.k, f.au, f.ident.wrinkle_depth
    # AU1: horizontal furrows in the middle of the forehead, arched up in the centre
    inner_y = (fu[21, 1] + fu[22, 1]) / 2
    for j in range(3):
        y = inner_y - 0.12 - 0.07 * j
        curve = np.array([[-0.3, y + 0.02], [-0.15, y - 0.012], [0.0, y - 0.02], [0.15, y - 0.012], [0.3, y + 0.02]])
        _fold(c, f, curve, au(1) * depth * (0.75 - 0.15 * j))
    # AU2: furrows above the outer brows, following the brow's curve
    for s, idx in ((-1, [17, 18, 19]), (1, [26, 25, 24])):
        b = fu[idx]
        for j in range(3):
            curve = b + (0, -0.12 - 0.065 * j) + np.array([[s * 0.02, 0.02], [0, 0], [-s * 0.02, 0.01]])
            _fold(c, f, curve, au(2) * depth * (0.75 - 0.15 * j))
    # AU4: vertical glabella furrows between the brows, a horizontal crease at the nose root, brows bunched
    mid = (fu[21] + fu[22]) / 2
    for s in (-1, 1):
        furrow = np.array([mid + (s * 0.045, 0.05), mid + (s * 0.05, -0.04), mid + (s * 0.04, -0.12)])
        _fold(c, f, furrow, au(4) * depth * 0.95, width=0.016, side=(s * 0.02, 0))
    _fold(c, f, np.array([fu[27] + (-0.07, 0.03), fu[27] + (0, 0.045), fu[27] + (0.07, 0.03)]), 0.5 * au(4) * depth)
    c.ellipse(f.px(mid + (0, -0.02)), (0.1 * k, 0.06 * k), 0.75, alpha=0.35 * au(4), blur=0.03 * k, mode="mul")
    # AU6 crow's feet and AU6/AU7 lower-lid bulge with the furrow under it
    for s, outer, low in ((-1, 36, [41, 40]), (1, 45, [46, 47])):
        o = fu[outer]
        for ang in (-0.45, 0.0, 0.45):
            d = np.array([s * np.cos(ang), np.sin(ang)])
            _fold(c, f, np.array([o + 0.05 * d, o + 0.13 * d + (0, 0.01)]), 0.35 * au(6) * depth, width=0.011,
                  side=(0, -0.012))  # fmt: skip
        lower = fu[[outer] + low + [39 if s < 0 else 42]]
        bulge = 0.45 * au(6) + 0.9 * au(7)
        _fold(c, f, lower + (0, 0.06 + 0.01 * au(6)), bulge * depth * 0.8, width=0.013, side=(0, -0.025))
        c.poly(f.px(np.concatenate([lower + (0, 0.012), (lower + (0, 0.055))[::-1]])), 0.3, alpha=0.45 * bulge,
               blur=0.012 * k, mode="screen")  # fmt: skip
    # nasolabial folds: present a little in everyone, deepened by AU10, AU12 (and a bit by AU6)
    naso = 0.12 + 0.5 * au(10) + 0.45 * au(12) + 0.12 * au(6)
    for s, wing, corner in ((-1, 31, 48), (1, 35, 54)):
        a, b = fu[wing] + (s * 0.06, -0.03), fu[corner] + (s * 0.07, 0.06)
        m = (a + b) / 2 + (s * (0.06 + 0.03 * au(12)), -0.01)
        _fold(c, f, np.array([a, m, b]), naso * depth, width=0.024 + 0.008 * au(10), side=(s * 0.03, 0),
              soft=0.016)  # fmt: skip
    # AU14 dimples and tightened corners; AU15 folds below the corners
    for s, corner in ((-1, 48), (1, 54)):
        p = fu[corner]
        dimple = p + (s * 0.075, 0.012)  # a soft crescent pit lateral to the tightened corner
        c.ellipse(f.px(dimple), (0.032 * k, 0.07 * k), 0.36, angle_deg=np.degrees(f.pose.roll) - s * 10,
                  alpha=au(14), blur=0.02 * k, mode="mul")  # fmt: skip
        c.ellipse(f.px(dimple + (s * 0.05, 0)), (0.03 * k, 0.07 * k), lit_skin(f), alpha=0.7 * au(14),
                  blur=0.02 * k)  # fmt: skip
        _fold(c, f, np.array([p + (s * 0.02, 0.03), p + (s * 0.05, 0.09), p + (s * 0.07, 0.16)]),
              0.85 * au(15) * depth, width=0.015, side=(s * 0.02, 0))  # fmt: skip
    # AU17: chin boss pushed up and wrinkled (a dimpled, "orange peel" texture)
    if au(17) > 0.01:
        centre = fu[57] + 0.45 * (fu[8] - fu[57]) + (0, 0.02)
        half = np.array([0.2, 0.1])
        pts = centre + _CHIN_DOTS * half
        c.apply(dots_mask(c, f.px(pts), 0.008 * k, blur=0.005 * k), 0.55, alpha=0.8 * au(17) * depth, mode="mul")
        c.apply(dots_mask(c, f.px(pts + (0, -0.014)), 0.008 * k, blur=0.007 * k), lit_skin(f),
                alpha=0.35 * au(17) * depth)  # fmt: skip


# ---- eyes and brows ---------------------------------------------------------------------------------------
def eyes(c: Canvas, f, gaze, light) -> None:
    fu, k = f.fu, f.k
    ident = f.ident
    for idx in ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47)):
        e = fu[list(idx)]
        # upper lid runs corner, 2 upper points, other corner; lower lid back
        upper = smooth_curve(e[[0, 1, 2, 3]], 16)
        lower = smooth_curve(e[[3, 4, 5, 0]], 16)
        opening = np.concatenate([upper, lower[1:-1]])
        # upper eyelid skin and its crease
        crease = upper + np.array([0, -0.055]) * np.sin(np.linspace(0, np.pi, len(upper)))[:, None] + (0, -0.012)
        c.poly(f.px(np.concatenate([upper, crease[::-1]])), (0.85, 0.72, 0.72), alpha=0.25, blur=0.01 * k, mode="mul")
        c.line(f.px(crease), 0.55, 0.014 * k, 0.6, blur=0.006 * k, mode="mul")
        sclera = c.mask("poly", f.px(opening))
        c.apply(sclera, (0.93, 0.9, 0.87))
        centre = e.mean(0) + np.asarray(gaze) * 0.03
        r = 0.062 * ident.eye_size
        iris = intersect(sclera, c.ellipse_mask(f.px(centre), (r * k, r * k)))
        c.apply(iris, ident.iris)
        c.apply(intersect(sclera, c.mask("line", f.px(centre + r * _circle()), width=0.012 * k)), 0.5, 0.7, "mul")
        c.apply(intersect(sclera, c.ellipse_mask(f.px(centre), (0.42 * r * k, 0.42 * r * k))), (0.03, 0.02, 0.02))
        hl = centre + 0.35 * r * np.array([np.cos(light.angle), np.sin(light.angle) - 0.5])
        c.apply(intersect(sclera, c.ellipse_mask(f.px(hl), (0.2 * r * k, 0.2 * r * k))), (1, 1, 1), 0.85)
        # shadow of the upper lid on the eyeball, lash line, lower lid margin
        c.apply(intersect(sclera, c.mask("line", f.px(upper + (0, 0.012)), width=0.03 * k, blur=0.012 * k)), 0.55,
                0.8, "mul")  # fmt: skip
        lash = upper
        if ident.female:  # a short flick beyond the outer corner
            outer = 0 if idx[0] == 36 else 3
            flick = e[outer] + (0.04 * (1 if outer == 3 else -1), -0.02)
            lash = np.concatenate([[flick], upper]) if outer == 0 else np.concatenate([upper, [flick]])
        c.line(f.px(lash), (0.1, 0.07, 0.06), (0.026 if ident.female else 0.02) * k, 0.92, blur=0.003 * k)
        tight = f.au(7)  # a tightened lower lid shows as a firmer, darker lid margin
        c.line(f.px(lower), (0.35, 0.25, 0.22), (0.012 + 0.012 * tight) * k, 0.55 + 0.35 * tight, blur=0.004 * k)
        c.line(f.px(lower + (0, 0.012)), 0.3, 0.01 * k, 0.5, blur=0.004 * k, mode="screen")


def _circle(n: int = 24) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n)
    return np.stack([np.cos(t), np.sin(t)], 1)


def brows(c: Canvas, f) -> None:
    fu, k, ident = f.fu, f.k, f.ident
    hair = np.asarray(ident.hair, np.float32) * 0.85
    profile = np.array([1.15, 1.1, 1.0, 0.8, 0.5])  # thick head (inner end) to thin tail
    for idx in ([21, 20, 19, 18, 17], [22, 23, 24, 25, 26]):
        centre = fu[idx]
        half = 0.5 * ident.brow_thickness * profile[:, None] * np.array([0.0, 1.0])
        top, bottom = smooth_curve(centre - half, 20), smooth_curve(centre + half, 20)
        c.poly(f.px(np.concatenate([top, bottom[::-1]])), hair, alpha=0.88, blur=0.006 * k)
        # hair texture: short slanted strokes along the brow's centre line
        mid = smooth_curve(centre, 20)
        side = np.sign(centre[-1, 0] - centre[0, 0])
        for p in mid[2:-3:3]:
            stroke = np.array([p + (0, 0.3 * ident.brow_thickness), p + (0.025 * side, -0.3 * ident.brow_thickness)])
            c.line(f.px(stroke), hair * 0.6, 0.008 * k, 0.5)


# ---- mouth ------------------------------------------------------------------------------------------------
def mouth(c: Canvas, f, skin) -> None:
    fu, k, au = f.fu, f.k, f.au
    lip = np.asarray(f.ident.lip, np.float32)
    lip = lip + (np.asarray(skin, np.float32) * 0.95 - lip) * (0.45 * au(24))  # pressed lips blanch
    upper_out = smooth_curve(fu[[48, 49, 50, 51, 52, 53, 54]], 28)
    lower_out = smooth_curve(fu[[54, 55, 56, 57, 58, 59, 48]], 28)
    upper_in = smooth_curve(fu[[48, 60, 61, 62, 63, 64, 54]], 28)
    lower_in = smooth_curve(fu[[48, 60, 67, 66, 65, 64, 54]], 28)
    gap = float((fu[[65, 66, 67], 1] - fu[[63, 62, 61], 1]).max())
    if gap > 0.004:  # parted lips: dark mouth cavity with upper teeth
        opening = np.concatenate([upper_in, lower_in[::-1]])
        cavity = c.mask("poly", f.px(opening))
        c.apply(cavity, (0.22, 0.07, 0.07))
        teeth = np.concatenate([upper_in, (upper_in + (0, 0.035))[::-1]])
        c.apply(intersect(cavity, c.mask("poly", f.px(teeth), blur=0.004 * k)), (0.9, 0.87, 0.8), 0.95)
    c.poly(f.px(np.concatenate([upper_out, upper_in[::-1]])), lip * 0.82, blur=0.004 * k)
    c.poly(f.px(np.concatenate([lower_out, lower_in[::-1]])), lip, blur=0.004 * k)
    c.ellipse(f.px(fu[57] + (0, -0.03)), (0.1 * k, 0.018 * k), 0.3, alpha=0.55 * (1 - 0.6 * au(24)), blur=0.015 * k,
              mode="screen")  # fmt: skip
    # vermilion border, mouth line and corners
    c.line(f.px(upper_out + (0, -0.01)), 0.3, 0.012 * k, 0.45, blur=0.006 * k, mode="screen")
    c.line(f.px(upper_in), (0.25, 0.08, 0.07), (0.014 + 0.006 * au(23) + 0.003 * au(24)) * k, 0.85, blur=0.003 * k)
    for corner in (48, 54):  # corner shadow, a deeper pocket when AU14 tucks the corners in
        size = (0.02 + 0.008 * au(14), 0.012 + 0.005 * au(14))
        c.ellipse(f.px(fu[corner]), (size[0] * k, size[1] * k), 0.4, alpha=0.5 + 0.25 * au(14), blur=0.006 * k,
                  mode="mul")  # fmt: skip
    # AU23: tightened lips, red margins narrowed and rolled, fine vertical lines on the lips
    if au(23) > 0.01:
        for x in (-0.14, -0.07, 0.0, 0.07, 0.14):
            top, bot = np.interp(x, fu[[48, 51, 54], 0], fu[[48, 51, 54], 1]), fu[66, 1] + 0.03
            c.line(f.px(np.array([[x, top + 0.01], [x, bot]])), 0.6, 0.008 * k, 0.7 * au(23), blur=0.003 * k, mode="mul")
        c.line(f.px(upper_out), 0.5, 0.02 * k, 0.8 * au(23), blur=0.005 * k, mode="mul")  # rolled, tense margins
        c.line(f.px(lower_out), 0.5, 0.02 * k, 0.8 * au(23), blur=0.005 * k, mode="mul")
        tense = np.concatenate([upper_out, lower_out[1:-1]])
        c.poly(f.px(tense), 0.78, alpha=au(23), blur=0.004 * k, mode="mul")  # the narrowed red looks darker
    # AU24: skin bulges above and below the pressed lips
    if au(24) > 0.01:
        _fold(c, f, upper_out[4:-4] + (0, -0.045), 0.75 * au(24), width=0.016, side=(0, 0.02))
        _fold(c, f, lower_out[4:-4] + (0, 0.045), 0.75 * au(24), width=0.016, side=(0, -0.02))
