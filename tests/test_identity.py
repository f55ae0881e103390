"""dlib's serialisation reader, the PyTorch face ResNet (parity with dlib itself) and the Eq. 4 loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lacgan.dlib_format import (DlibFormatError, Expect, Reader, default_model_path, encode_int, encode_tensor,
                                face_resnet_spec, read_face_resnet, read_network)
from lacgan.identity import (ALPHAS, TAPS, add_padded, crop_to_chip, descriptor_distance, descriptors,
                             identity_loss,
                             load_dlib_face_net)


# ---- primitives on hand-built bytes ------------------------------------------------------------------

def test_integers_decode_from_control_byte_and_little_endian_bytes():
    r = Reader(b"\x01\x00" b"\x01\x05" b"\x81\x05" b"\x02\x00\x01" b"\x83\x0a\xd7\xa3")
    assert [r.int() for _ in range(5)] == [0, 5, -5, 256, -0xA3D70A]
    assert r.pos == len(r.data)
    for v in (0, 1, -1, 255, 256, -70000, 2**40 + 3, -(2**62)):
        assert Reader(encode_int(v)).int() == v


def test_bad_integer_control_byte_names_offset():
    with pytest.raises(DlibFormatError, match=r"at byte 2: bad integer control byte 0x00"):
        r = Reader(b"\x01\x07\x00", "f.dat")
        r.int(), r.int()
    with pytest.raises(DlibFormatError, match="bad integer control byte 0x81"):
        Reader(b"\x81\x01").uint()  # a negative where dlib stores an unsigned value
    with pytest.raises(DlibFormatError, match="file ends"):
        Reader(b"\x04\x01\x02").int()


def test_floats_are_mantissa_then_exponent():
    # the loss margin bytes of the real file: mantissa 0xa3d70a, exponent -28
    assert Reader(b"\x03\x0a\xd7\xa3\x81\x1c").float() == pytest.approx(0.04, rel=1e-7)
    assert Reader(encode_int(3) + encode_int(-1)).float() == 1.5
    assert Reader(encode_int(-5) + encode_int(2)).float() == -20.0
    assert Reader(encode_int(0) + encode_int(32000)).float() == math.inf
    assert math.isnan(Reader(encode_int(0) + encode_int(32002)).float())
    with pytest.raises(DlibFormatError, match="old ASCII float"):
        Reader(b"1.5 ").float()


def test_strings_bools_and_tensors():
    r = Reader(encode_int(5) + b"con_4" + b"10")
    assert r.string() == "con_4"
    assert (r.bool(), r.bool()) == (True, False)
    a = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4) - 7.5
    np.testing.assert_array_equal(Reader(encode_tensor(a)).tensor(), a)
    with pytest.raises(DlibFormatError, match="expected ASCII '0' or '1'"):
        Reader(b"x").bool()
    with pytest.raises(DlibFormatError, match="expected the wrapper version in \\[1\\], found 3"):
        Reader(encode_int(3)).version(range(1, 2), "the wrapper")


# ---- the real model file -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return default_model_path().read_bytes()


def test_real_file_parses_to_the_documented_architecture():
    net = read_face_resnet()
    assert net.input.nr == net.input.nc == 150
    assert net.input.mean == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    assert net.loss.dist_thresh == pytest.approx(0.6)
    convs = [l for l in net.layers if type(l).__name__ == "Conv"]
    assert len(convs) == 29
    assert convs[0].weight.shape == (32, 3, 7, 7) and convs[0].stride == (2, 2) and convs[0].padding == (0, 0)
    # 3x3 convs: stride 1 pads 1, stride 2 pads 0 (dlib's default padding, stored in the file)
    assert {(c.stride, c.padding) for c in convs[1:]} == {((1, 1), (1, 1)), ((2, 2), (0, 0))}
    fc = net.layers[-1]
    assert fc.weight.shape == (128, 256) and fc.bias is None


def test_unexpected_tag_names_offset_and_expectation(model_bytes):
    at = model_bytes.index(b"affine_")  # its length (01 07) starts 2 bytes earlier
    bad = model_bytes[:at] + b"affinX_" + model_bytes[at + 7:]
    with pytest.raises(DlibFormatError, match=rf"m.dat: at byte {at - 2}: expected layer 1 \(affine\) "
                                              r"tagged 'affine_' or 'affine_2', found 'affinX_'"):
        read_network(bad, face_resnet_spec(), "m.dat")
    spec = list(face_resnet_spec())
    spec[0] = Expect("con", (64, 7, 2))
    with pytest.raises(DlibFormatError, match=r"expected con<64,7,7,2,2>, found con<32,7,7,2,2>"):
        read_network(model_bytes, tuple(spec), "m.dat")
    with pytest.raises(DlibFormatError, match="file ends"):
        read_network(model_bytes[:-1000], face_resnet_spec(), "m.dat")
    with pytest.raises(DlibFormatError, match="unexpected bytes after the network"):
        read_network(model_bytes + b"\x00", face_resnet_spec(), "m.dat")


# ---- parity with dlib --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def net():
    return load_dlib_face_net(device="cpu")


@pytest.fixture(scope="module")
def astronaut():
    """The astronaut image, its most confident face, dlib's 150-px chip and dlib's own descriptors."""
    dlib = pytest.importorskip("dlib")
    skimage_data = pytest.importorskip("skimage.data")
    img = skimage_data.astronaut()
    faces, scores, _ = dlib.get_frontal_face_detector().run(img, 1)
    assert len(faces) >= 1
    face = faces[int(np.argmax(scores))]  # the largest detection is the mission patch
    shape = dlib.shape_predictor(str(default_model_path("shape_predictor_5_face_landmarks.dat")))(img, face)
    shape68 = dlib.shape_predictor(str(default_model_path("shape_predictor_68_face_landmarks.dat")))(img, face)
    rec = dlib.face_recognition_model_v1(str(default_model_path()))
    chip = dlib.get_face_chip(img, shape, size=150, padding=0.25)
    return {"image": img, "chip": chip, "landmarks": np.array([[p.x, p.y] for p in shape68.parts()], float),
            "ref_chip": np.array(rec.compute_face_descriptor(chip)),
            "ref_image": np.array(rec.compute_face_descriptor(img, shape))}  # extracts the same chip itself


@pytest.fixture(scope="module")
def astronaut_chip(astronaut):
    return astronaut["chip"], astronaut["ref_chip"], astronaut["ref_image"]


def test_descriptor_matches_dlib(net, astronaut_chip):
    chip, ref_chip, ref_image = astronaut_chip
    np.testing.assert_allclose(ref_chip, ref_image, atol=1e-6)  # the chip we feed is the chip dlib uses
    x = torch.from_numpy(chip).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        ours = net(x)[0].numpy()
    assert np.abs(ours - ref_chip).max() < 1e-4
    assert np.linalg.norm(ref_chip) > 0.5  # a real descriptor, not zeros


def test_features_shapes_and_gradients(net, astronaut_chip):
    chip = torch.from_numpy(astronaut_chip[0]).permute(2, 0, 1)[None].float()
    crops = (chip / 127.5 - 1.0).repeat(2, 1, 1, 1)
    crops = torch.nn.functional.interpolate(crops, size=(96, 96), mode="bilinear", align_corners=False)
    crops.requires_grad_(True)
    feats = net.features(crop_to_chip(crops))
    assert [tuple(f.shape) for f in feats] == [(2, 32, 35, 35), (2, 64, 17, 17), (2, 128, 8, 8),
                                               (2, 256, 4, 4), (2, 256, 2, 2)]
    assert len(TAPS) == len(ALPHAS) == 5
    loss = identity_loss(feats, [f.detach() * 0.5 for f in feats])
    loss.backward()
    assert loss.item() > 0 and crops.grad is not None and crops.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in net.parameters())
    assert tuple(net.features(chip, taps=("stem",))[0].shape) == (1, 32, 72, 72)
    with pytest.raises(ValueError, match="takes float \\(n, 3, 150, 150\\)"):
        net(torch.zeros(1, 3, 100, 100))


def test_descriptor_distance_is_zero_for_same_and_positive_for_shifted(net, astronaut_chip):
    crop = torch.from_numpy(astronaut_chip[0]).permute(2, 0, 1)[None].float()  # any S×S works; here S = 150
    other = torch.roll(crop, shifts=20, dims=3)
    d = descriptor_distance(net, torch.cat([crop, crop]), torch.cat([crop, other]), value_range=(0, 255))
    assert d.shape == (2,) and d[0].item() < 1e-5 and d[1].item() > 0.05
    assert tuple(descriptors(net, crop, (0, 255)).shape) == (1, 128)
    with pytest.raises(ValueError, match="equal shapes"):
        descriptor_distance(net, crop, torch.cat([crop, crop]))


# ---- pure pieces -------------------------------------------------------------------------------------

def test_identity_loss_hand_computed():
    a1, b1 = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[1.0, 0.0], [3.0, 8.0]])  # mean |d| = 1.5
    a2, b2 = torch.zeros(1, 3), torch.tensor([[1.0, -2.0, 3.0]])                            # mean |d| = 2.0
    assert identity_loss([a1, a2], [b1, b2], (0.5, 0.9)).item() == pytest.approx(0.5 * 1.5 + 0.9 * 2.0)
    with pytest.raises(ValueError, match="as many"):
        identity_loss([a1], [b1, b2], (1.0, 1.0))
    with pytest.raises(ValueError, match="layer 0"):
        identity_loss([a1], [a2], (1.0,))


def test_add_padded_zero_pads_to_the_larger_shape():
    a = torch.ones(1, 2, 3, 3)
    b = torch.full((1, 1, 4, 4), 10.0)
    out = add_padded(a, b)
    assert out.shape == (1, 2, 4, 4)
    assert out[0, 0, :3, :3].eq(11).all() and out[0, 0, 3, :].eq(10).all() and out[0, 0, :, 3].eq(10).all()
    assert out[0, 1, :3, :3].eq(1).all() and out[0, 1, 3, :].eq(0).all()


@pytest.mark.parametrize("size", [200, 128])
def test_aligned_crop_maps_close_to_dlibs_chip(net, astronaut, size):
    """An aligned crop (pipelines.align's frame) through crop_to_chip lands near dlib's own descriptor."""
    from pipelines.align import align_face

    crop, _ = align_face(astronaut["image"], astronaut["landmarks"], size)
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    with torch.no_grad():
        d = net(crop_to_chip(x))[0].numpy()
        d_plain = net(crop_to_chip(x, scale=1.0, centre=(74.5, 74.5)))[0].numpy()  # a bare resize
    err = np.linalg.norm(d - astronaut["ref_chip"])
    assert err < 0.22  # measured 0.17; another person is ~0.7 away, dlib's same-person threshold is 0.6
    assert err < np.linalg.norm(d_plain - astronaut["ref_chip"])  # the measured map beats a bare resize


def test_crop_to_chip_is_the_documented_similarity():
    size = 200
    ramp = torch.arange(size, dtype=torch.float32)
    crops = torch.stack([ramp.view(1, -1).expand(size, size), ramp.view(-1, 1).expand(size, size),
                         torch.zeros(size, size)])[None]  # channel 0 = crop x, channel 1 = crop y
    chip = crop_to_chip(crops, value_range=(0.0, 255.0), scale=1.09, centre=(73.4, 72.6))
    u = torch.arange(150, dtype=torch.float32)
    want_x = (u - 73.4) / (1.09 * 150) * (size - 1) + (size - 1) / 2  # inverse of the documented map
    want_y = (u - 72.6) / (1.09 * 150) * (size - 1) + (size - 1) / 2
    torch.testing.assert_close(chip[0, 0], want_x.view(1, -1).expand(150, 150), atol=1e-3, rtol=0)
    torch.testing.assert_close(chip[0, 1], want_y.view(-1, 1).expand(150, 150), atol=1e-3, rtol=0)
    torch.testing.assert_close(crop_to_chip(torch.full((1, 3, 64, 64), -1.0)), torch.zeros(1, 3, 150, 150))


def test_every_face_recognition_models_user_goes_through_one_locator(monkeypatch):
    """The landmarker, the fidelity check and the identity network all find dlib's models by default_model_path:
    without the package, each says what to install (FileNotFoundError: one line, exit 2 in the CLI)."""
    import importlib.util

    from pipelines import fidelity
    from pipelines.landmarks import DlibLandmarker

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models" else real(name, *a))
    for load in (DlibLandmarker, fidelity._face_net, lambda: load_dlib_face_net(device="cpu")):
        with pytest.raises(FileNotFoundError, match=r"face_recognition_models package is not installed.*pip install"):
            load()
