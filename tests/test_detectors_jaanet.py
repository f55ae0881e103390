"""JAA-Net pieces: the 68→49 mapping, flips, losses against hand-computed values, shapes, and a train+score smoke."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detectors.jaanet import data
from detectors.jaanet.config import JaaNetConfig
from detectors.jaanet.landmarks import (FLIP_49, FLIP_68, KEEP_68, flip_landmarks, interocular, predefined_maps,
                                        to_49, to_68)
from detectors.jaanet.losses import (attention_refine_loss, au_dice_loss, au_softmax_loss, au_weights,
                                     landmark_loss)
from detectors.jaanet.model import JaaNet
from lacgan.regions import attention_maps, au_centres


def _face68(size=64):
    """A plausible frontal 68-point layout in a size×size crop (asymmetric noise so flips are visible)."""
    rng = np.random.default_rng(1)
    s = size / 64
    lm = np.zeros((68, 2), np.float32)
    lm[0:17] = np.c_[np.linspace(8, 56, 17), 34 + 16 * np.sin(np.linspace(0, np.pi, 17))]
    lm[17:22] = np.c_[np.linspace(12, 28, 5), np.full(5, 18)]
    lm[22:27] = np.c_[np.linspace(36, 52, 5), np.full(5, 18)]
    lm[27:31] = np.c_[np.full(4, 32), np.linspace(24, 36, 4)]
    lm[31:36] = np.c_[np.linspace(27, 37, 5), np.full(5, 38)]
    lm[36:42] = np.c_[[16, 19, 23, 26, 23, 19], [24, 22, 22, 24, 26, 26]]
    lm[42:48] = np.c_[[38, 41, 45, 48, 45, 41], [24, 22, 22, 24, 26, 26]]
    lm[48:60] = np.c_[[22, 26, 30, 32, 34, 38, 42, 38, 34, 32, 30, 26], [46, 44, 43, 44, 43, 44, 46, 49, 50, 50, 50, 49]]
    lm[60:68] = np.c_[[24, 29, 32, 35, 40, 35, 32, 29], [46, 45, 45, 45, 46, 47, 47, 47]]
    return (lm + rng.normal(0, 0.3, lm.shape)).astype(np.float32) * s


def test_68_to_49_drops_jaw_and_inner_mouth_corners():
    assert len(KEEP_68) == 49 and not set(range(17)) & set(KEEP_68) and 60 not in KEEP_68 and 64 not in KEEP_68
    lm = _face68()
    back = to_68(to_49(lm))
    kept = list(KEEP_68)
    np.testing.assert_array_equal(back[kept], lm[kept])
    assert np.isnan(back[list(range(17)) + [60, 64]]).all()
    # the AU centres only need kept points: centres from 49 points equal centres from all 68
    np.testing.assert_allclose(au_centres(back), au_centres(lm), rtol=1e-6)


def test_flip_permutations_match_the_reference_49_point_reflection():
    # JAA-Net's published 1-based reflection list for its 49 points (data/list/reflect_49.txt)
    ref = ("10 9 8 7 6 5 4 3 2 1 11 12 13 14 19 18 17 16 15 29 28 27 26 31 30 23 22 21 20 25 24 "
           "38 37 36 35 34 33 32 43 42 41 40 39 46 45 44 49 48 47")
    np.testing.assert_array_equal(FLIP_49, np.array(ref.split(), int) - 1)
    assert (FLIP_68[FLIP_68] == np.arange(68)).all()


def test_flip_augmentation_moves_pixels_and_landmarks_together():
    size, crop = 72, 64
    lm = to_49(_face68(size))[None]
    img = np.zeros((1, size, size, 3), np.uint8)
    x, y = np.round(lm[0, 19]).astype(int)  # right-eye outer corner (68-index 36) marked white
    img[0, y, x] = 255

    class AlwaysFlip:  # rng stand-in: fixed crop offset (3, 5), always mirror
        def integers(self, lo, hi, size):
            return np.array([3, 5])

        def random(self):
            return 0.0

    out, lm_out = data.random_crop_flip(img, lm, crop, AlwaysFlip())
    ys, xs = np.nonzero(out[0, :, :, 0])
    # after the mirror the marked corner is the *left* eye's outer corner: 49-index FLIP_49[19] = 28 (68: 45)
    assert FLIP_49[19] == 28
    assert (xs[0], ys[0]) == tuple(np.round(lm_out[0, 28]).astype(int))
    assert lm_out[0, 28, 0] == pytest.approx(crop - 1 - (lm[0, 19, 0] - 3))
    # flipping twice restores the landmarks
    np.testing.assert_allclose(flip_landmarks(flip_landmarks(lm_out, crop), crop), lm_out, atol=1e-5)
    assert interocular(lm_out)[0] == pytest.approx(interocular(lm)[0], rel=1e-5)


def test_colour_jitter_varies_photometry_but_keeps_geometry():
    rng = np.random.default_rng(0)
    img = np.zeros((64, 32, 32, 3), np.uint8)
    img[:, 8:24, 8:24] = (180, 120, 90)  # a skin-coloured square on black
    assert data.colour_jitter(img, 0.0, rng) is img  # strength 0: untouched (the paper's setting)
    out = data.colour_jitter(img, 0.4, np.random.default_rng(1))
    assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_array_equal(out, data.colour_jitter(img, 0.4, np.random.default_rng(1)))  # seeded
    inside = out[:, 8:24, 8:24].reshape(64, -1, 3).astype(float)
    assert inside.std(1).max() < 1.0  # one photometric transform per image: the square stays uniform
    means = inside.mean(1)  # (64, 3) per image
    assert means.std(0).min() > 5  # but images differ in brightness and cast, channel by channel
    assert (means[:, 0] > means[:, 2]).mean() > 0.9  # and stay recognisably the same (red > blue) colour
    assert (out[:, :8] == out[:, :1, :1]).all()  # a flat border stays flat (no spatial change)


@pytest.mark.parametrize("rule_name", ["reference", "wide"])
def test_predefined_maps_follow_lacgan_regions(rule_name):
    crop, m = 64, 16
    lm68 = _face68(crop)
    maps = predefined_maps(to_49(lm68)[None], crop, m, rule_name)
    ref = attention_maps((lm68[None] + 0.5) * m / crop - 0.5, m, rule_name)
    np.testing.assert_allclose(maps, ref, atol=1e-5)
    assert maps.shape == (1, 12, m, m) and maps.max() <= 1 and maps.min() >= 0


def test_detector_maps_default_to_the_wide_rule():  # the trained `cpu` detectors were trained with it
    crop, m = 64, 16
    lm49 = to_49(_face68(crop))[None]
    np.testing.assert_array_equal(predefined_maps(lm49, crop, m), predefined_maps(lm49, crop, m, "wide"))
    assert not np.allclose(predefined_maps(lm49, crop, m, "reference"), predefined_maps(lm49, crop, m, "wide"))


def test_au_weights_are_inverse_occurrence_summing_to_the_au_count():
    lab = np.array([[1, 0], [1, 1], [0, -1], [1, 0]])  # rates 3/4 and 1/3
    w = au_weights(lab)
    raw = np.array([4 / 3, 3.0])
    np.testing.assert_allclose(w, raw / raw.sum() * 2, rtol=1e-6)


def test_softmax_and_dice_losses_by_hand():
    p = torch.tensor([[0.8, 0.3], [0.4, 0.9]])  # present-probabilities, 2 frames × 2 AUs
    logp = torch.stack([torch.log(1 - p), torch.log(p)], 1)
    lab = torch.tensor([[1, 0], [0, -1]])
    w = torch.tensor([1.0, 3.0])
    soft = (1.0 * -(math.log(0.8) + math.log(0.6)) / 2 + 3.0 * -math.log(0.7)) / 2
    assert au_softmax_loss(logp, lab, w).item() == pytest.approx(soft, rel=1e-5)
    d0 = 1 - (2 * 0.8 + 1) / (0.8 ** 2 + 0.4 ** 2 + 1 + 1)  # AU 1: p = (.8, .4), y = (1, 0)
    d1 = 1 - (0 + 1) / (0.3 ** 2 + 0 + 1)  # AU 2: only frame 0 known, p = .3, y = 0
    assert au_dice_loss(logp, lab, w).item() == pytest.approx((1.0 * d0 + 3.0 * d1) / 2, rel=1e-5)


def test_landmark_and_refine_losses_by_hand():
    pred = torch.zeros(1, 49, 2)
    target = torch.zeros(1, 49, 2)
    target[0, 0] = torch.tensor([3.0, 4.0])  # squared error 25
    assert landmark_loss(pred, target, torch.tensor([5.0])).item() == pytest.approx(25 / (2 * 25))
    refined = torch.full((1, 2, 2, 2), 0.5)
    pre = torch.zeros(1, 2, 2, 2)
    assert attention_refine_loss(refined, pre).item() == pytest.approx(2 * math.log(2), rel=1e-5)


def test_network_shapes_and_gradients():
    net = JaaNet(crop=64, unit=2)
    x = torch.randn(2, 3, 64, 64)
    out = net(x)
    assert out["au_logp"].shape == (2, 2, 12) and out["landmarks"].shape == (2, 49, 2)
    assert out["maps"].shape == (2, 12, 24, 24) and out["refined"].shape == (2, 12, 16, 16)
    assert torch.allclose(out["au_logp"].exp().sum(1), torch.ones(2, 12), atol=1e-5)
    out["au_logp"][:, 1].sum().backward()
    assert net.region[0].conv.weight.grad.abs().sum() > 0 and net.refine[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="multiple of 16"):
        JaaNet(crop=72)


def test_per_au_loop_equals_the_grouped_computation():
    """The CPU eval path (one AU at a time, batch norms folded) computes what the grouped convolutions compute,
    from the same state_dict; training keeps the grouped path."""
    torch.manual_seed(0)
    net = JaaNet(crop=64, unit=2)
    with torch.no_grad():  # batch norms with non-trivial statistics, so that folding them matters
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    net.eval()
    x = torch.randn(3, 3, 64, 64)
    assert net._loop(x)  # the default in eval on the CPU
    with torch.no_grad():
        net.au_loop = False
        grouped = net(x)
        net.au_loop = True
        looped = net(x)
        net.refine_crop = False
        whole_maps = net(x)
        net.refine_crop, net.prepack = True, False
        unpacked = net(x)
        net.prepack = True
    for k in ("au_logp", "landmarks", "maps", "refined"):
        assert looped[k].shape == grouped[k].shape
        torch.testing.assert_close(looped[k], grouped[k], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(looped[k], whole_maps[k], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(looped[k], unpacked[k], rtol=1e-4, atol=1e-5)
    assert grouped["au_logp"].std() > 0 and (grouped["refined"] - 0.5).abs().max() > 1e-3  # not a degenerate net
    other = JaaNet(crop=64, unit=2)
    other.load_state_dict(net.state_dict())  # one state_dict for both paths
    other.eval()
    with torch.no_grad():
        torch.testing.assert_close(other(x)["au_logp"], grouped["au_logp"], rtol=1e-4, atol=1e-5)
    net.au_loop = None
    net.train()
    assert not net._loop(x)
    net.au_loop = True
    with pytest.raises(RuntimeError, match="eval mode only"):
        net(x)


def test_refine_runs_only_where_the_maps_reach_and_gives_the_whole_maps_answer():
    """The eval path's refine stack runs on the part of the map its AU's boxes can reach and fills the rest with
    the stack's answer to zeros: equal to running it on the whole map, for boxes inside, at the border, absent."""
    from detectors.jaanet.model import EvalConv, _folded, refine_where_nonzero, run_program

    torch.manual_seed(0)
    net = JaaNet(crop=64, unit=2).eval()
    with torch.no_grad():
        for m in net.refine:
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.bias.uniform_(-0.2, 0.2)
    program = _folded(net.refine)[3]
    M = net.map_size + 8
    pre = torch.zeros(3, 1, M, M)
    pre[0, 0, 5:9, 4:10] = torch.rand(4, 6)  # one box in the middle ...
    pre[2, 0, 7:10, 11:14] = torch.rand(3, 3)  # ... another frame's box beside it
    edge = torch.zeros(2, 1, M, M)
    edge[1, 0, -3:, :2] = 1.0  # a box in the corner
    calls = []
    real_call = EvalConv.__call__

    def counting(self, x):
        calls.append(tuple(x.shape[-2:]))
        return real_call(self, x)

    with torch.no_grad():
        for maps in (pre, edge, torch.zeros(2, 1, M, M)):
            whole = run_program(program, maps.contiguous(memory_format=torch.channels_last))
            calls.clear()
            EvalConv.__call__ = counting
            try:
                part = refine_where_nonzero(program, maps)
            finally:
                EvalConv.__call__ = real_call
            torch.testing.assert_close(part, whole, rtol=1e-5, atol=1e-6)
            assert calls and max(h * w for h, w in calls) < M * M  # never the whole map
            assert maps.abs().sum() == 0 or (whole - whole[0, 0, 0, 0]).abs().max() > 1e-3  # the boxes show


def test_prepacked_convolutions_compute_what_f_conv2d_computes():
    """EvalConv with oneDNN's packed weight and fused ReLU gives F.conv2d's numbers, for several input shapes
    (a packed weight per shape), and falls back to F.conv2d under bf16 autocast."""
    from detectors.jaanet.model import EvalConv, _fused_conv_available

    torch.manual_seed(0)
    w, b = torch.randn(6, 4, 3, 3), torch.randn(6)
    packed, plain = EvalConv(w, b, (1, 1), relu=True), EvalConv(w, b, (1, 1), relu=True, prepack=False)
    assert packed.prepack == _fused_conv_available() and not plain.prepack
    for shape in ((2, 4, 9, 9), (5, 4, 12, 7), (2, 4, 9, 9)):
        x = torch.randn(*shape).contiguous(memory_format=torch.channels_last)
        want = torch.relu(F.conv2d(x, w, b, padding=1))
        torch.testing.assert_close(packed(x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(plain(x), want, rtol=1e-5, atol=1e-5)
    if packed.prepack:
        assert len(packed._packed) == 2  # one packed weight per input shape, reused
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = packed(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), want, rtol=0.05, atol=0.1)


def test_cpu_path_rebuilds_its_packed_weights_when_the_weights_change():
    """The CPU path keeps its folded, packed weights between calls and rebuilds them when any weight or batch-norm
    statistic changes (a loaded checkpoint, a training step): never stale."""
    torch.manual_seed(0)
    net, other = JaaNet(crop=64, unit=2).eval(), JaaNet(crop=64, unit=2).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        first = net(x)["au_logp"]
        cache = net._eval_cache
        assert torch.equal(net(x)["au_logp"], first) and net._eval_cache is cache  # reused
        net.load_state_dict(other.state_dict())
        net.local[1].running_mean.add_(0.5)  # a buffer changed in place
        other.local[1].running_mean.add_(0.5)
        got = net(x)["au_logp"]
        assert net._eval_cache is not cache
        other.au_loop = False
        torch.testing.assert_close(got, other(x)["au_logp"], rtol=1e-4, atol=1e-5)
        assert (got - first).abs().max() > 1e-4


def test_train_resume_and_score_smoke(aligned_store, tmp_path):
    from detectors.base import detector_preset, load_detector, train_detector
    from detectors.frames import FrameSource

    torch.set_num_threads(1)
    out = tmp_path / "jaanet"
    small = detector_preset("jaanet", "cpu", epochs=1, batch_size=8, input_size=56, crop=48, unit=2)
    summary = train_detector("jaanet", aligned_store, out, small, test_fold=3)
    assert summary["epochs_completed"] == 1 and (out / "jaanet.safetensors").exists()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and "model" in state
    assert "metrics" in summary["held_out"] or "note" in summary["held_out"]
    again = train_detector("jaanet", aligned_store, out, small, test_fold=3)  # resumes: no work
    assert again["epochs_completed"] == 1
    det = load_detector("jaanet", out)
    assert det.settings()["training"] == {"epochs": 1, "epochs_completed": 1, "stopped_by_time_budget": False}
    fs = FrameSource.from_store(aligned_store)
    df = det.score(fs.subset(np.arange(6)))
    assert len(df) == 6 * 12 and df["score"].between(0, 1).all()
    assert set(df["present"]) <= {0, 1} and (df["present"] == (df["score"] >= 0.5)).all()


def test_bf16_scoring_stays_close_and_keeps_float32_outputs():
    torch.manual_seed(0)
    net = JaaNet(crop=64, unit=2).eval()
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        ref = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x)
    assert low["au_logp"].dtype == torch.float32 and low["landmarks"].dtype == torch.float32
    p, q = ref["au_logp"][:, 1].exp(), low["au_logp"][:, 1].exp()
    assert not torch.equal(p, q) and (p - q).abs().max() < 0.05  # bf16 ran, and moved probabilities a little


def test_a_wall_clock_cap_stops_training_and_is_recorded(aligned_store, tmp_path):
    from detectors.base import detector_preset, load_detector, train_detector

    torch.set_num_threads(1)
    small = detector_preset("jaanet", "cpu", epochs=3, batch_size=8, input_size=56, crop=48, unit=2)
    summary = train_detector("jaanet", aligned_store, tmp_path / "j", small, minutes=1e-6)
    assert summary["stopped_by_time_budget"] and summary["epochs_completed"] == 0
    training = load_detector("jaanet", tmp_path / "j").settings()["training"]
    assert training == {"epochs": 3, "epochs_completed": 0, "stopped_by_time_budget": True}


def test_the_demo_preset_is_the_cpu_preset_on_a_shorter_schedule():
    from detectors.jaanet.config import PRESETS

    cpu, demo = PRESETS["cpu"], PRESETS["demo"]
    assert demo.epochs < cpu.epochs and replace(demo, epochs=cpu.epochs, lr_step=cpu.lr_step) == cpu


def test_config_reader_rejects_unknown_fields_naming_them():
    from detectors.jaanet.config import PRESETS, config_from_json, config_json

    cfg = PRESETS["cpu"]
    assert config_from_json(config_json(cfg)) == cfg
    assert config_from_json({"epochs": 3}) == replace(JaaNetConfig(), epochs=3)  # missing fields: defaults
    with pytest.raises(ValueError, match=r"w/config.json: unknown JaaNetConfig fields \['epoch', 'lr_gama'\]"):
        config_from_json({**config_json(cfg), "epoch": 3, "lr_gama": 0.1}, "w/config.json")


def test_jaanet_modules_import_no_cycle():
    """The detector does not import the trainer (it did, and the trainer imported it back)."""
    import ast
    from pathlib import Path

    import detectors.jaanet.detector as det

    imported = {n.module for n in ast.walk(ast.parse(Path(det.__file__).read_text()))
                if isinstance(n, ast.ImportFrom)}
    assert "detectors.jaanet.train" not in imported and "detectors.jaanet.config" in imported


def test_the_configs_region_rule_reaches_the_networks_maps():
    from detectors.jaanet.config import PRESETS, config_from_json, config_json

    assert all(p.regions == "wide" for p in PRESETS.values())  # the rule the presets were chosen with
    ref = replace(PRESETS["cpu"], regions="reference")
    assert config_from_json(config_json(ref)).regions == "reference"  # saved beside the weights, read back
    torch.manual_seed(0)
    a, b = JaaNet(crop=64, unit=2, regions="wide").eval(), JaaNet(crop=64, unit=2, regions="reference").eval()
    with torch.no_grad():  # a landmark head that puts a face in the crop (fresh weights put every point near 0)
        a.align_out[-1].weight.zero_()
        a.align_out[-1].bias.copy_(torch.from_numpy(to_49(_face68(64)).reshape(-1).astype(np.float32)))
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya["maps"].amax() > 0.5 and not torch.allclose(ya["maps"], yb["maps"])  # same weights, the rule's maps
