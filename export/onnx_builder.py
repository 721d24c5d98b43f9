"""ONNX graphs built layer by layer for ONNX Runtime's fast CPU kernels.

tf2onnx converts the TensorFlow graph of a Keras model op by op: a neuron
layer becomes a dozen NHWC element-wise nodes, a mixed-kernel Op four
convolutions with 9-19 output channels and a concatenation, and batch norm
a multiply and an add. ONNX Runtime's CPU convolutions (MLAS) compute in a
blocked layout (NCHWc: 16 channels per block with AVX-512) and only when
every channel count is a multiple of the block; each odd-sized convolution
is padded to the block, and every node outside the supported set (Pad,
Slice, Where, Greater, Cast, broadcast Mul) forces a reorder to and from
NCHW. `build_onnx` writes the graph of a ResNet-family model (`spzoo.models`
specs: convolutions, batch norm, neuron layers, residual additions, block
gates) in NCHW directly, with only nodes that ONNX Runtime keeps blocked:

- batch norm after a convolution is folded into its weights and bias;
  batch norm elsewhere is a depthwise 1x1 convolution with a bias;
- a mixed-kernel Op (parallel k x k convolutions, concatenated) is cut into
  runs of consecutive output channels, each computed with the largest
  kernel among its channels (smaller kernels zero-padded, which is exact
  for odd "same" kernels); the cut minimises a cost model of ONNX Runtime's
  kernels (`_partition`). A run is a plain convolution, or, when its
  channels are few and its kernel large (the SP-ResNet's 9-19 channels of
  5x5 and 7x7), a *column run*: one k x 1 convolution with k outputs per
  channel (one per kernel column) whose columns `Col2Im` adds at their
  offsets. Same MACs, but in a convolution k times wider, which the
  blocked kernels run near their full speed where a 16-channel k x k
  convolution runs at 60-75% (`bench/results/onnx_profile.md`);
- the neuron response `y = x * where(x > 0, L + Co * g, -M * g)`,
  `g = ReLU(tanh(shift(x)))`, is computed as

  ```
  p = Relu(c * x)                 s = shift(p / c): depthwise 2x2 conv
  g = Tanh(s)                     u = p - M * x
  y = (L / c) * p + g * u
  ```

  with `c = Co' = M + Co` on the channels with a tanh term (so `u = Co' *
  Relu(x) - M * x`) and 1 on the others, whose shift weight is 0 (`g = 0`).
  The shift moves values without arithmetic, so `ReLU(shift(x)) =
  shift(ReLU(x))` and `g = Tanh(shift(p / c))` exactly: ONNX Runtime fuses
  the Tanh into the shift convolution. `Relu(c * x)` is a depthwise 1x1
  convolution with the Relu fused, which also takes a batch norm right
  before the neuron; the other per-channel factors are depthwise 1x1
  convolutions too, which ONNX Runtime fuses with the additions. A Relu
  after a concatenation in NCHW would otherwise cost ONNX Runtime a second
  reorder. The result equals the Keras graph up to float rounding.

Gated models (`PresynapticGate` blocks) take the scalar input `threshold`,
a true graph input (no initializer: every runtime must be given it;
`spzoo.export.load` passes the metadata's default). It is clamped to the
trained range `[lo, hi]` inside the graph. For input-independent gates the
graph holds one sub-network per threshold level `t_0 = -inf < t_1 < ...`
(ONNX `If` nodes choose the level with `t_j <= t < t_{j+1}`): in level `j`
each block computes only the channels open at `t_j` (sorted by kernel size
and log-alpha), so the work done falls with the threshold; channels open at
`t_j` but closed at `t` are zeroed by the gate product, so the logits equal
the Keras model's at every threshold. The levels' weights are slices of
one stored copy (Gather/Pad/Concat of initializers, which ONNX Runtime
folds into constants when it loads the file), so the file is no larger
than the model. Input-dependent gates are computed in the graph and
multiply their channels (the work stays the same).

A batch larger than `batch_chunk` (default 8) runs as a `Loop` over chunks
of that many examples (`spzoo.export.batch_chunks`): the memory-bound nodes
then work on tensors that stay in the cache.
"""

import dataclasses
import math

import keras
import numpy as np
from keras import layers

from spzoo.export.batch_chunks import CHUNK, in_chunks
from spzoo.export.metadata import METADATA_KEY, dumps
from spzoo.layers.base_neuron import NeuronLayer
from spzoo.layers.presynaptic_gate import ChannelGate, PresynapticGate
from spzoo.layers.switchable_batch_norm import SwitchableBatchNormalization
from spzoo.metrics import counting
from spzoo.metrics.gated import gate_blocks
from spzoo.training.bn_calibration import model_levels

OPSET = 18
IR_VERSION = 8
BLOCK = 16
# Speed of one convolution of 16, 32 or 48 outputs relative to a wide one
# (`(padded outputs, kernel)`: the GFLOP/s of bench/results/onnx_profile.md,
# "One convolution, by output channels", averaged over its two inputs, over
# ResNet 3-48's 270 GFLOP/s on the same machine; 1.0 above); the cost of a
# column run's slices, sum and reorder relative to its convolution; and a
# fixed cost per run, in blocks of input channels per output position (per
# column for a column run).
NARROW = {
    (16, 3): 0.62,
    (16, 5): 0.5,
    (16, 7): 0.4,
    (32, 3): 0.87,
    (32, 5): 0.76,
    (32, 7): 0.68,
    (48, 3): 0.92,
    (48, 5): 0.85,
    (48, 7): 0.76,
}
COLUMN_OVERHEAD = 1.15
RUN_OVERHEAD = 4
# What a concatenation that ONNX Runtime cannot keep blocked costs per output
# channel and position, in MACs: about three passes over the channel
# (reorder out, copy, reorder in), a depthwise 1x1 convolution's time each,
# at the dense convolutions' speed (bench/results/onnx_profile.md).
REORDER = 64
INPUT_NAME = "image"
THRESHOLD_NAME = "threshold"
OUTPUT_NAME = "logits"


class UnsupportedModel(ValueError):
    """The model has a layer that `build_onnx` does not write."""


def _history(tensor):
    return tensor._keras_history.operation


def _inputs_of(layer):
    return list(layer._inbound_nodes[0].input_tensors)


def _output_of(layer):
    return layer._inbound_nodes[0].output_tensors[0]


def _consumers(layer):
    return [node.operation for node in layer._outbound_nodes]


def _activation(layer) -> str:
    name = keras.activations.serialize(layer.activation)
    return name if isinstance(name, str) else repr(name)


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding (before, after) of one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@dataclasses.dataclass
class ConvBranch:
    """One Conv2D of a (mixed-kernel) convolution group, in ONNX layout."""

    layer: layers.Conv2D
    kernel: np.ndarray  # (C_out + 1, C_in + 1, k, k); the last row/column zero
    size: int
    channels: int


@dataclasses.dataclass
class ConvGroup:
    """Convolutions of one input whose outputs are concatenated (or one alone)."""

    anchor: layers.Layer  # the Concatenate, or the single Conv2D
    branches: list
    input_tensor: object
    strides: tuple
    padding: str
    bias: np.ndarray  # (C_out,) after folding batch norm; zeros without
    folded_bn: layers.Layer | None

    @property
    def channels(self) -> int:
        return sum(b.channels for b in self.branches)

    def channel(self, index: int) -> tuple[int, int]:
        """(branch, index in branch) of output channel `index`."""
        for b, branch in enumerate(self.branches):
            if index < branch.channels:
                return b, index
            index -= branch.channels
        raise IndexError(index)

    def runs(self) -> list:
        """`_partition` runs of all the group's output channels."""
        sizes = [b.size for b in self.branches for _ in range(b.channels)]
        return _partition(sizes, self.branches[0].kernel.shape[1] - 1)


def _bn_affine(layer: layers.BatchNormalization):
    """`(scale, shift)` with `bn(x) = scale * x + shift` (float64)."""
    gamma = np.asarray(layer.gamma, np.float64) if layer.scale else 1.0
    beta = np.asarray(layer.beta, np.float64) if layer.center else 0.0
    mean = np.asarray(layer.moving_mean, np.float64)
    var = np.asarray(layer.moving_variance, np.float64)
    scale = gamma / np.sqrt(var + layer.epsilon)
    shift = beta - mean * scale
    scale = np.broadcast_to(scale, mean.shape)
    shift = np.broadcast_to(shift, mean.shape)
    return scale, shift


def _find_groups(model) -> dict:
    """Convolution groups by anchor layer name; batch norms folded into them."""
    groups, member = {}, {}
    for layer in model.operations:
        candidates = []
        if isinstance(layer, layers.Concatenate):
            producers = [_history(t) for t in _inputs_of(layer)]
            if all(type(p) is layers.Conv2D for p in producers):
                candidates = producers
        elif type(layer) is layers.Conv2D:
            consumers = _consumers(layer)
            if not (
                len(consumers) == 1
                and isinstance(consumers[0], layers.Concatenate)
                and consumers[0].name in groups
            ):
                candidates = [layer]
        if not candidates:
            continue
        first = candidates[0]
        source = _inputs_of(first)[0]
        ok = all(
            _inputs_of(c)[0] is source
            and c.strides == first.strides
            and c.padding == first.padding
            and tuple(c.dilation_rate) == (1, 1)
            and c.groups == 1
            and _activation(c) == "linear"
            and c.kernel_size[0] == c.kernel_size[1]
            and (c.kernel_size[0] % 2 == 1 or len(candidates) == 1)
            and (len(candidates) == 1 or len(_consumers(c)) == 1)
            for c in candidates
        )
        if not ok:
            continue
        branches = []
        for conv in candidates:
            kernel = np.transpose(np.asarray(conv.kernel, np.float64), (3, 2, 0, 1))
            k = conv.kernel_size[0]
            out, cin = kernel.shape[:2]
            augmented = np.zeros((out + 1, cin + 1, k, k))
            augmented[:out, :cin] = kernel
            branches.append(ConvBranch(conv, augmented, k, out))
        bias = np.concatenate(
            [
                np.asarray(c.bias, np.float64) if c.use_bias else np.zeros(b.channels)
                for c, b in zip(candidates, branches, strict=True)
            ]
        )
        group = ConvGroup(
            layer, branches, source, first.strides, first.padding, bias, None
        )
        consumers = _consumers(layer)
        if len(consumers) == 1 and isinstance(
            consumers[0], SwitchableBatchNormalization
        ):
            # Its statistics depend on the threshold level: folded per level
            # when the weights are written (`_Writer._level_affine`).
            group.folded_bn = consumers[0]
        elif len(consumers) == 1 and isinstance(
            consumers[0], layers.BatchNormalization
        ):
            bn = consumers[0]
            scale, shift = _bn_affine(bn)
            start = 0
            for branch in branches:
                stop = start + branch.channels
                branch.kernel[: branch.channels] *= scale[start:stop, None, None, None]
                start = stop
            group.bias = group.bias * scale + shift
            group.folded_bn = bn
        groups[layer.name] = group
        for conv in candidates:
            member[conv.name] = layer.name
    return groups, member


class _Store:
    """Names, and the initializers shared by every (sub)graph: the stored
    kernels that the threshold levels slice."""

    def __init__(self):
        self.initializers = {}
        self.cache = {}
        self.counter = 0

    def unique(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}_{self.counter}"


def _initializer(store, table, cache, value, hint, dtype, key):
    if key is not None and key in cache:
        return cache[key]
    from onnx import numpy_helper

    name = store.unique(hint)
    table[name] = numpy_helper.from_array(np.asarray(value, dtype=dtype), name)
    if key is not None:
        cache[key] = name
    return name


class _Graph:
    """The nodes and local initializers of one (sub)graph.

    ONNX Runtime turns a convolution into its blocked (NCHWc) form only when
    the weights are initializers of the convolution's own graph, so every
    constant of a sub-network is local to it; only the stored kernels are
    shared, and each sub-network derives its weights from them with Slice,
    Gather and Pad nodes, which ONNX Runtime folds into local initializers.
    """

    def __init__(self, store: _Store, prefix: str):
        self.store = store
        self.prefix = prefix
        self.nodes = []
        self.initializers = {}
        self.cache = {}

    def op(self, op_type, inputs, hint=None, outputs=1, **attributes):
        from onnx import helper

        names = [
            self.store.unique(f"{self.prefix}{hint or op_type}") for _ in range(outputs)
        ]
        self.nodes.append(
            helper.make_node(
                op_type, list(inputs), names, name=names[0] + "_node", **attributes
            )
        )
        return names[0] if outputs == 1 else names

    def const(self, value, hint, dtype=np.float32, key=None):
        """A local initializer (shared within this graph by `key`)."""
        return _initializer(
            self.store,
            self.initializers,
            self.cache,
            value,
            self.prefix + hint,
            dtype,
            key,
        )

    def shared(self, value, hint, dtype=np.float32, key=None):
        """An initializer of the top-level graph (stored once)."""
        store = self.store
        return _initializer(
            store, store.initializers, store.cache, value, hint, dtype, key
        )


@dataclasses.dataclass
class _Value:
    """An ONNX value (NCHW) and the original channels it holds, in order
    (-1: a padding channel that is exactly zero).

    `affine`: `(scale, shift)` per channel of a batch norm not yet applied
    (the value is `scale * name + shift`; `_Writer._neuron` folds it into
    the depthwise convolutions that read it). `concatenated`: the output of
    a Concat of several runs, which ONNX Runtime keeps in NCHW unless every
    run is block-aligned."""

    name: str
    channels: np.ndarray
    affine: tuple | None = None
    concatenated: bool = False

    @property
    def identity(self) -> bool:
        return bool(np.array_equal(self.channels, np.arange(len(self.channels))))


def _up(n: int) -> int:
    """`n` rounded up to ONNX Runtime's channel block."""
    return -(-n // BLOCK) * BLOCK


def _plain_cost(n: int, kernel: int, cin: int, second: int) -> float:
    """`_run_cost` of a plain run."""
    # Below one block of inputs ONNX Runtime reads NCHW directly (a stem on
    # the image), where `NARROW` was not measured and columns do not pay.
    narrow = NARROW.get((_up(n), kernel), 1.0) if cin >= BLOCK else 1.0
    return RUN_OVERHEAD * cin + _up(n) * (cin * kernel * kernel / narrow + second)


def _run_cost(n: int, kernel: int, cin: int, second: int) -> tuple[float, bool]:
    """`(cost, columns)`: the cheaper way to compute `n` output channels of a
    `kernel` x `kernel` convolution reading `cin` channels, in MACs per output
    position (ONNX Runtime's padded channels included), plus `second` per
    channel for the convolution reading them (padding included for a plain
    run, whose channels are padded to the block to keep the next
    concatenation blocked).

    A plain run is one convolution; one of 16 to 48 outputs runs below the
    kernels' speed (`NARROW`). A column run (`_Writer._columns`)
    computes `kernel` x `n` outputs of a `kernel` x 1 convolution and adds
    them shifted, at the cost `COLUMN_OVERHEAD` of its slices and sum.
    """
    plain = _plain_cost(n, kernel, cin, second)
    if cin < BLOCK:
        return plain, False
    fixed = RUN_OVERHEAD * cin
    if kernel == 1:
        return plain, False
    columns = (
        kernel * fixed + _up(kernel * n) * kernel * cin * COLUMN_OVERHEAD + n * second
    )
    return (columns, True) if columns < plain else (plain, False)


def _partition(sizes, cin: int, second: int = 0) -> list[tuple[int, int, int, bool]]:
    """Runs `[(start, stop, kernel, columns)]` of consecutive output channels
    of kernel sizes `sizes`, each computed with the largest kernel among its
    channels (smaller odd kernels zero-padded: exact for `same` kernels), the
    cut chosen by dynamic programming to minimise `_run_cost`.

    ONNX Runtime keeps a concatenation in its blocked layout only when every
    part is a whole number of blocks; otherwise each part is reordered to
    NCHW and the result back (`REORDER` per channel). So the cut is also
    sought among plain runs that start and stop on block boundaries, and
    kept if that costs no more."""
    n = len(sizes)
    free, cost = _cheapest_runs(sizes, cin, second, 1)
    if len(free) == 1 and not free[0][3] and n % BLOCK == 0:
        return free  # one plain run: nothing to concatenate
    cost += REORDER * n
    if n % BLOCK == 0:
        aligned, aligned_cost = _cheapest_runs(sizes, cin, second, BLOCK)
        if aligned_cost <= cost:
            return aligned
    return free


def _cheapest_runs(sizes, cin: int, second: int, step: int) -> tuple[list, float]:
    """`_partition`'s dynamic programme with cuts at multiples of `step`
    (`step > 1`: plain runs only); returns the runs and their cost."""
    n = len(sizes)
    best = [0.0] + [math.inf] * n
    choice = [None] * (n + 1)
    for j in range(step, n + 1, step):
        kernel = 0
        for i in range(j - step, -1, -step):
            kernel = max(kernel, *(int(v) for v in sizes[i : i + step]))
            cost, columns = _run_cost(j - i, kernel, cin, second)
            if step > 1 and columns:
                cost, columns = _plain_cost(j - i, kernel, cin, second), False
            if best[i] + cost < best[j]:
                best[j], choice[j] = best[i] + cost, (i, kernel, columns)
    if math.isinf(best[n]):
        return [], math.inf
    runs, j = [], n
    while j > 0:
        i, kernel, columns = choice[j]
        runs.append((i, j, kernel, columns))
        j = i
    return runs[::-1], best[n]


def _column_weight(w, kernel: int, graph=None, cin: int = 0):
    """The kernel `(n, C_in, k, k)` of a column run, `(n * k, C_in, k, 1)`:
    row `c * k + j` is column `k - 1 - j` of output `c`'s kernel. NumPy, or
    nodes on the value `w` (`cin` input channels) in `graph`."""
    if graph is None:
        w = np.flip(w, 3).transpose(0, 3, 1, 2)
        return np.ascontiguousarray(w.reshape(-1, w.shape[2], kernel, 1))
    w = graph.op(
        "Slice",
        [
            w,
            graph.const([-1], "starts", np.int64),
            graph.const([np.iinfo(np.int64).min], "ends", np.int64),
            graph.const([3], "axes", np.int64),
            graph.const([-1], "steps", np.int64),
        ],
    )
    w = graph.op("Transpose", [w], perm=[0, 3, 1, 2])
    shape = graph.const([-1, cin, kernel, 1], "shape", np.int64)
    return graph.op("Reshape", [w, shape])


@dataclasses.dataclass
class _GatePlan:
    """How one static block gate is written in one threshold level."""

    order: np.ndarray  # first conv's output channels computed, -1 = padding
    runs: list  # `_partition` runs `(start, stop, kernel, columns)` of `order`
    log_alpha: np.ndarray  # of each slot (-inf for padding)
    gate: np.ndarray  # the inference gate estimator of each slot (0 padding)


class _Writer:
    """Writes the body of the network (one threshold level) into a graph."""

    def __init__(self, model, groups, member, blocks, store):
        self.model = model
        self.groups = groups
        self.member = member
        self.blocks = {b.gate.name: b for b in blocks}
        self.block_of_conv1 = {}
        self.block_of_product = {}
        for block in blocks:
            anchor = _anchor(block)
            self.block_of_conv1[anchor.name] = block
            self.block_of_product[block.product.name] = block
        self.folded = {g.folded_bn.name: g for g in groups.values() if g.folded_bn}
        self.store = store
        self.params = {}
        # The row of the switchable batch norms' statistics in the level
        # being written (`SwitchableBatchNormalization.row_for`).
        self.row = 0

    def _cached(self, layer, make, row=0):
        """NumPy parameters of `layer` (read from the variables once; per
        statistics row for a switchable batch norm)."""
        key = (layer.name, row)
        if key not in self.params:
            self.params[key] = make()
        return self.params[key]

    # -- weights ------------------------------------------------------
    def _conv_weight(self, graph, group, slots, in_channels, kernel, in_graph):
        """The ONNX kernel `(len(slots), C_in', kernel, kernel)` of output slots
        `slots` (group output channels, -1 = zero) reading `in_channels`
        (the input's original channels, -1 = zero): NumPy, or Gather / Slice
        / Pad / Concat nodes on the stored kernels when `in_graph`."""
        runs = []  # (branch index, [row of the branch's augmented kernel])
        for slot in slots:
            if slot < 0:
                b = runs[-1][0] if runs else 0
                row = group.branches[b].channels  # the zero row
            else:
                b, row = group.channel(int(slot))
            if runs and runs[-1][0] == b:
                runs[-1][1].append(row)
            else:
                runs.append((b, [row]))
        cin = group.branches[0].kernel.shape[1] - 1
        columns = np.where(in_channels < 0, cin, in_channels).astype(np.int64)
        parts = []
        for b, rows in runs:
            branch = group.branches[b]
            pad = (kernel - branch.size) // 2
            if not in_graph:
                w = branch.kernel[rows][:, columns]
                parts.append(np.pad(w, [(0, 0), (0, 0), (pad, pad), (pad, pad)]))
                continue
            w = graph.shared(
                branch.kernel,
                f"{branch.layer.name}_w",
                key=("kernel", branch.layer.name),
            )
            contiguous = rows == list(range(rows[0], rows[0] + len(rows)))
            identity = np.array_equal(columns, np.arange(cin))
            starts, ends, axes = [], [], []
            if contiguous:
                starts.append(rows[0])
                ends.append(rows[0] + len(rows))
                axes.append(0)
            else:
                index = graph.const(np.asarray(rows, np.int64), "rows", np.int64)
                w = graph.op("Gather", [w, index], axis=0)
            if identity:
                starts.append(0)
                ends.append(cin)
                axes.append(1)
            else:
                index = graph.const(columns, "columns", np.int64)
                w = graph.op("Gather", [w, index], axis=1)
            if axes:
                w = graph.op(
                    "Slice",
                    [
                        w,
                        graph.const(starts, "starts", np.int64),
                        graph.const(ends, "ends", np.int64),
                        graph.const(axes, "axes", np.int64),
                    ],
                )
            if pad:
                pads = graph.const([0, 0, pad, pad, 0, 0, pad, pad], "pads", np.int64)
                w = graph.op("Pad", [w, pads])
            parts.append(w)
        if not in_graph:
            return np.concatenate(parts).astype(np.float32)
        return parts[0] if len(parts) == 1 else graph.op("Concat", parts, axis=0)

    def _emit_group(
        self, graph, group, source: _Value, slots, runs, in_graph
    ) -> _Value:
        """Writes the convolutions of `group` computing output `slots`, cut
        into `runs` (`_partition`)."""
        if source.name is None or not len(slots):
            # No input channels (a block whose gates are all closed) or no
            # output channels: the output is exactly zero (no bias).
            if len(slots) and np.any(group.bias != 0):
                raise UnsupportedModel(
                    f"{group.anchor.name!r} has a bias and may read no channels."
                )
            return _Value(None, np.asarray(slots, np.int64))
        outputs = []
        for start, stop, kernel, columns in runs:
            part = slots[start:stop]
            key = (
                "conv",
                group.anchor.name,
                tuple(part),
                tuple(source.channels),
                columns,
            )
            switchable = isinstance(group.folded_bn, SwitchableBatchNormalization)
            if switchable:
                # Batch norm folded at the level's statistics (`self.row`).
                key = (*key, self.row)
                scale, shift = self._level_affine(group.folded_bn, part)
                factor = scale.reshape(-1, 1, 1, 1).astype(np.float32)
            if in_graph:
                weight = self._conv_weight(
                    graph, group, part, source.channels, kernel, True
                )
                if switchable:
                    # A Mul of two initializers: ONNX Runtime folds it into a
                    # constant when it loads the file.
                    weight = graph.op(
                        "Mul", [weight, graph.const(factor, f"{group.anchor.name}_bn")]
                    )
                if columns:
                    weight = _column_weight(weight, kernel, graph, len(source.channels))
            else:
                weight = graph.cache.get(key)
                if weight is None:
                    w = self._conv_weight(
                        graph, group, part, source.channels, kernel, False
                    )
                    if switchable:
                        w = w * factor
                    if columns:
                        w = _column_weight(w, kernel)
                    weight = graph.const(w, f"{group.anchor.name}_w", key=key)
            bias = np.where(part < 0, 0.0, group.bias[np.maximum(part, 0)])
            if switchable:
                bias = bias * scale + shift
            height, width = (int(d) for d in group.input_tensor.shape[1:3])
            if group.padding == "same":
                ph = _same_pads(height, kernel, group.strides[0])
                pw = _same_pads(width, kernel, group.strides[1])
                pads = [ph[0], pw[0], ph[1], pw[1]]
            else:
                extra = (kernel - max(b.size for b in group.branches)) // 2
                pads = [extra] * 4
            if columns:
                outputs.append(
                    self._columns(graph, group, source, weight, bias, kernel, pads, key)
                )
                continue
            outputs.append(
                graph.op(
                    "Conv",
                    [
                        source.name,
                        weight,
                        graph.const(
                            bias, f"{group.anchor.name}_b", key=("bias",) + key[1:]
                        ),
                    ],
                    hint=f"{group.anchor.name}",
                    kernel_shape=[kernel, kernel],
                    strides=list(group.strides),
                    pads=pads,
                )
            )
        if len(outputs) == 1:
            return _Value(outputs[0], np.asarray(slots, np.int64))
        name = graph.op("Concat", outputs, axis=1)
        return _Value(name, np.asarray(slots, np.int64), concatenated=True)

    @staticmethod
    def _columns(graph, group, source, weight, bias, kernel, pads, key) -> str:
        """A `kernel` x `kernel` convolution of `n` outputs as a column run:
        one `kernel` x 1 convolution of `kernel * n` outputs, `z`, whose
        output `c * kernel + j` holds column `dx = kernel - 1 - j` of output
        `c`'s kernel (`_column_weight`), and the sum of its columns, each
        shifted by its offset: `y[c, i, x] = sum_dx z[c, dx, i, s * x + dx]`
        (`s`: the stride). Stride 1: one `Col2Im`, which adds the columns
        into their places and pads the width (so the convolution computes
        no padding columns); otherwise `kernel` strided slices and a `Sum`.
        The MACs are the convolution's; the convolution is `kernel` times
        wider, which ONNX Runtime runs near its full speed when `n` is
        narrow."""
        n = len(bias)
        sh, sw = group.strides
        height, width = (int(d) for d in group.input_tensor.shape[1:3])
        rows = (height + pads[0] + pads[2] - kernel) // sh + 1
        out = (width + pads[1] + pads[3] - kernel) // sw + 1
        # The bias once per output channel, in a column that reaches every
        # output position (the centre one, for `same` padding and stride 1).
        spread = np.zeros((n, kernel))
        spread[:, kernel - 1 - pads[1] if sw == 1 else 0] = bias
        z = graph.op(
            "Conv",
            [
                source.name,
                weight,
                graph.const(
                    spread.reshape(-1),
                    f"{group.anchor.name}_b",
                    key=("bias",) + key[1:],
                ),
            ],
            hint=f"{group.anchor.name}_columns",
            kernel_shape=[kernel, 1],
            strides=[sh, 1],
            # Stride 1: `Col2Im` pads the columns, not the convolution.
            pads=[pads[0], 0, pads[2], 0] if sw == 1 else pads,
        )
        if sw == 1:
            flat = graph.op(
                "Reshape", [z, graph.const([0, n * kernel, -1], "shape", np.int64)]
            )
            return graph.op(
                "Col2Im",
                [
                    flat,
                    graph.const([rows, out], "image", np.int64),
                    graph.const([1, kernel], "block", np.int64),
                ],
                hint=f"{group.anchor.name}_sum",
                pads=[0, kernel - 1 - pads[1], 0, kernel - 1 - pads[3]],
            )
        axes = graph.const([1, 3], "axes", np.int64)
        steps = graph.const([kernel, sw], "steps", np.int64)
        parts = []
        for dx in range(kernel):
            j = kernel - 1 - dx
            starts = graph.const([j, dx], "starts", np.int64)
            ends = graph.const([n * kernel, dx + sw * (out - 1) + 1], "ends", np.int64)
            parts.append(graph.op("Slice", [z, starts, ends, axes, steps]))
        return graph.op("Sum", parts, hint=f"{group.anchor.name}_sum")

    def _level_affine(self, bn, slots):
        """`(scale, shift)` of a switchable batch norm at the current level,
        for channel `slots` (-1: padding, 0 and 0)."""
        scale, shift = self._cached(bn, lambda: bn.affine(self.row), self.row)
        keep = slots >= 0
        index = np.maximum(slots, 0)
        return np.where(keep, scale[index], 0.0), np.where(keep, shift[index], 0.0)

    # -- element-wise layers ------------------------------------------
    def _depthwise(self, graph, x: _Value, scale, shift=None, hint="dw"):
        channels = len(x.channels)
        weight = graph.const(
            np.asarray(scale, np.float32).reshape(channels, 1, 1, 1), f"{hint}_w"
        )
        inputs = [x.name, weight]
        if shift is not None:
            inputs.append(graph.const(np.asarray(shift, np.float32), f"{hint}_b"))
        return graph.op("Conv", inputs, hint=hint, group=channels, kernel_shape=[1, 1])

    @staticmethod
    def _per_channel(values, x: _Value, fill=0.0):
        values = np.asarray(values, np.float64)
        if values.ndim == 0:
            values = np.full(max(int(x.channels.max()) + 1, 1), float(values))
        return np.where(x.channels < 0, fill, values[np.maximum(x.channels, 0)])

    def _batch_norm(self, graph, layer, x: _Value, defer: bool = False) -> _Value:
        """Batch norm as a depthwise 1x1 convolution, or, with `defer`, as the
        `affine` of its input for the neuron layer that reads it."""
        if isinstance(layer, SwitchableBatchNormalization):
            scale, shift = self._cached(layer, lambda: layer.affine(self.row), self.row)
        else:
            scale, shift = self._cached(layer, lambda: _bn_affine(layer))
        scale = self._per_channel(scale, x)
        shift = self._per_channel(shift, x)
        if defer:
            return _Value(x.name, x.channels, affine=(scale, shift))
        return _Value(self._depthwise(graph, x, scale, shift, layer.name), x.channels)

    def _relu(self, graph, x: _Value, hint: str, scale=None) -> str:
        """`Relu(scale * x)` (`scale` per channel, positive; None: 1) in a
        form ONNX Runtime computes blocked (NCHWc) with no extra reorder: a
        pending batch norm (`x.affine`) and the scale become one depthwise
        convolution with the Relu fused into it; after a Concat that runs in
        NCHW, a depthwise convolution does the same, so the one reorder of
        `x` serves both `Relu(x)` and the neuron's `-M * x`
        (`bench/results/onnx_profile.md`)."""
        factor = np.ones(len(x.channels)) if scale is None else scale
        if x.affine is not None:
            a, b = x.affine
            y = self._depthwise(graph, x, factor * a, factor * b, hint=f"{hint}_bn")
        elif x.concatenated or not np.all(factor == 1):
            y = self._depthwise(graph, x, factor, hint=f"{hint}_in")
        else:
            y = x.name
        return graph.op("Relu", [y], hint=hint)

    def _scaled(self, graph, x: _Value, factor, hint: str) -> str:
        """`factor * x` per channel (a pending batch norm folded in)."""
        if x.affine is None:
            return self._depthwise(graph, x, factor, hint=hint)
        scale, shift = x.affine
        return self._depthwise(graph, x, factor * scale, factor * shift, hint=hint)

    def _neuron(self, graph, layer, x: _Value) -> _Value:
        if isinstance(layer, layers.ReLU) or (
            isinstance(layer, layers.Activation) and _activation(layer) == "relu"
        ):
            if isinstance(layer, layers.ReLU) and (
                layer.max_value is not None
                or float(layer.negative_slope) != 0.0
                or float(layer.threshold) != 0.0
            ):
                raise UnsupportedModel(f"ReLU {layer.name!r} with options.")
            return _Value(self._relu(graph, x, layer.name), x.channels)
        gains = self._cached(
            layer,
            lambda: [np.asarray(keras.ops.convert_to_numpy(g)) for g in layer.gains()],
        )
        linear, max_gain, coincidence = (self._per_channel(g, x) for g in gains)
        channels = len(x.channels)
        hint = layer.name
        if not max_gain.any() and not coincidence.any():
            p = self._relu(graph, x, f"{hint}_p")
            y = (
                p
                if np.all(linear == 1)
                else self._depthwise(
                    graph, _Value(p, x.channels), linear, hint=f"{hint}_l"
                )
            )
            return _Value(y, x.channels)
        # `y = L p + g u` with `u = Co' p - M x` (module docstring). A channel
        # with a tanh term and `Co' > 0` computes `p' = Relu(Co' x) = Co' p`,
        # so that `u = p' - M x` needs no multiply of its own; `p'` is `p`
        # elsewhere, and the shift reads `p' / Co'`. A channel without a tanh
        # term (`M = Co = 0`: ReLU or linear) gets a zero shift weight, so
        # `g = 0` and `g u = 0` whatever `u` holds there.
        both = max_gain + coincidence
        active = (max_gain != 0) | (coincidence != 0)
        scale = np.where(active & (both > 0), both, 1.0)
        p = self._relu(graph, x, f"{hint}_p", scale)
        pv = _Value(p, x.channels)
        shift_kernel = np.zeros((channels, 1, 2, 2), np.float32)
        shift_kernel[:, 0, 1, 1] = np.where(active, 1.0 / scale, 0.0)
        # ReLU commutes with a translation, so the shift reads `p` and the
        # Tanh follows it directly (ONNX Runtime fuses it into the shift).
        s = graph.op(
            "Conv",
            [
                p,
                graph.const(
                    shift_kernel,
                    f"{hint}_shift",
                    key=("shift", shift_kernel.tobytes()),
                ),
            ],
            hint=f"{hint}_shift",
            group=channels,
            kernel_shape=[2, 2],
            pads=[0, 0, 1, 1],
        )
        g = graph.op("Tanh", [s], hint=f"{hint}_g")
        k = np.where(active, both / scale, 1.0)
        u = p if np.all(k == 1) else self._depthwise(graph, pv, k, hint=f"{hint}_k")
        if max_gain.any():
            neg = self._scaled(graph, x, -max_gain, hint=f"{hint}_m")
            u = graph.op("Add", [u, neg], hint=f"{hint}_u")
        gu = graph.op("Mul", [g, u], hint=f"{hint}_gu")
        if not linear.any():
            return _Value(gu, x.channels)
        lin = linear / scale
        lp = (
            p if np.all(lin == 1) else self._depthwise(graph, pv, lin, hint=f"{hint}_l")
        )
        return _Value(graph.op("Add", [lp, gu], hint=hint), x.channels)

    # -- gates ----------------------------------------------------------
    def _dynamic_gate(self, graph, gate: PresynapticGate, h: _Value, threshold):
        """`z` (B, C) of an input-dependent gate, as the Keras layer computes it."""
        if not h.identity:
            raise UnsupportedModel(f"Gate {gate.name!r} reads a sliced tensor.")
        hg = gate.gate
        pooled = graph.op("GlobalAveragePool", [h.name], hint=f"{gate.name}_pool")
        pooled = graph.op("Flatten", [pooled], axis=1)
        kernel = np.asarray(gate.presynaptic_kernel, np.float32)
        bias = np.asarray(gate.presynaptic_bias, np.float32)
        la = graph.op("MatMul", [pooled, graph.const(kernel, f"{gate.name}_k")])
        la = graph.op("Add", [la, graph.const(bias, f"{gate.name}_b")])
        la = graph.op(
            "Mul",
            [la, graph.const(np.float32(gate.log_alpha_scale), "s")],
            hint=f"{gate.name}_log_alpha",
        )
        return self._estimator(graph, hg, la, threshold, gate.name)

    def _estimator(self, graph, hg, la, threshold, hint):
        z = graph.op("Sigmoid", [la])
        z = graph.op("Mul", [z, graph.const(np.float32(hg.zeta - hg.gamma), "zg")])
        z = graph.op("Add", [z, graph.const(np.float32(hg.gamma), "g")])
        z = graph.op(
            "Clip",
            [z, graph.const(np.float32(0), "zero"), graph.const(np.float32(1), "one")],
        )
        keep = graph.op("GreaterOrEqual", [la, threshold])
        return graph.op(
            "Where", [keep, z, graph.const(np.float32(0), "zero")], hint=f"{hint}_z"
        )

    # -- the network ------------------------------------------------------
    def write(self, graph: _Graph, image: str, threshold, plans: dict, in_graph: bool):
        """Writes the network; returns the logits value name."""
        values = {}
        gate_values = {}
        for layer in self.model.operations:
            if isinstance(layer, keras.layers.InputLayer):
                channels = int(layer.output.shape[-1])
                values[id(layer.output)] = _Value(image, np.arange(channels))
                continue
            if layer.name in self.member and self.member[layer.name] != layer.name:
                continue  # written with its group's concatenation
            out = _output_of(layer)
            ins = _inputs_of(layer)
            if layer.name in self.groups:
                group = self.groups[layer.name]
                source = values[id(group.input_tensor)]
                block = self.block_of_conv1.get(layer.name)
                if block is not None and block.gate.name in plans:
                    plan = plans[block.gate.name]
                    slots, runs = plan.order, plan.runs
                else:
                    slots = np.arange(group.channels)
                    runs = self._cached(group.anchor, lambda g=group: g.runs(), "runs")
                value = self._emit_group(graph, group, source, slots, runs, in_graph)
                values[id(out)] = value
                if group.folded_bn is not None:
                    values[id(_output_of(group.folded_bn))] = value
                continue
            if layer.name in self.folded:
                continue
            x = values.get(id(ins[0])) if ins else None
            if x is not None and x.name is None and not isinstance(layer, layers.Add):
                if not isinstance(layer, NeuronLayer | ChannelGate | layers.ReLU):
                    raise UnsupportedModel(
                        f"{layer.name!r} reads the channels of a block whose "
                        "gates are all closed."
                    )
                values[id(out)] = x  # still exactly zero
                continue
            if isinstance(
                layer, layers.BatchNormalization | SwitchableBatchNormalization
            ):
                # Read by a neuron layer alone: folded into its convolutions.
                consumers = _consumers(layer)
                defer = len(consumers) == 1 and isinstance(
                    consumers[0], NeuronLayer | layers.ReLU | layers.Activation
                )
                values[id(out)] = self._batch_norm(graph, layer, x, defer)
            elif isinstance(layer, NeuronLayer | layers.ReLU | layers.Activation):
                values[id(out)] = self._neuron(graph, layer, x)
            elif isinstance(layer, PresynapticGate):
                if layer.input_dependent:
                    gate_values[layer.name] = self._dynamic_gate(
                        graph, layer, x, threshold
                    )
            elif isinstance(layer, ChannelGate):
                block = self.block_of_product[layer.name]
                gate = block.gate
                if gate.name in plans:
                    plan = plans[gate.name]
                    if not np.array_equal(plan.order, x.channels):
                        raise UnsupportedModel(
                            f"Gate {gate.name!r}: the gated channels changed order."
                        )
                    keep = graph.op(
                        "GreaterOrEqual",
                        [
                            graph.const(plan.log_alpha.reshape(1, -1, 1, 1), "la"),
                            threshold,
                        ],
                    )
                    factor = graph.op(
                        "Where",
                        [
                            keep,
                            graph.const(plan.gate.reshape(1, -1, 1, 1), "z"),
                            graph.const(np.float32(0), "zero"),
                        ],
                        hint=f"{gate.name}_factor",
                    )
                else:
                    z = gate_values[gate.name]
                    factor = graph.op(
                        "Unsqueeze",
                        [z, graph.const([2, 3], "axes", np.int64)],
                        hint=f"{gate.name}_factor",
                    )
                values[id(out)] = _Value(
                    graph.op("Mul", [x.name, factor], hint=layer.name), x.channels
                )
            elif isinstance(layer, layers.Add):
                parts = [values[id(t)] for t in ins if values[id(t)].name is not None]
                if not parts or not all(p.identity for p in parts):
                    raise UnsupportedModel(f"Add {layer.name!r} of sliced tensors.")
                name = parts[0].name
                for part in parts[1:]:
                    name = graph.op("Add", [name, part.name], hint=layer.name)
                values[id(out)] = _Value(name, parts[0].channels)
            elif isinstance(layer, layers.Concatenate):
                parts = [values[id(t)] for t in ins]
                if not all(p.identity for p in parts) or layer.axis not in (-1, 3):
                    raise UnsupportedModel(f"Concatenate {layer.name!r}.")
                name = graph.op("Concat", [p.name for p in parts], axis=1)
                values[id(out)] = _Value(name, np.arange(int(out.shape[-1])))
            elif isinstance(layer, layers.GlobalAveragePooling2D):
                if layer.keepdims or layer.data_format != "channels_last":
                    raise UnsupportedModel(f"GlobalAveragePooling2D {layer.name!r}.")
                pooled = graph.op("GlobalAveragePool", [x.name], hint=layer.name)
                values[id(out)] = _Value(
                    graph.op("Flatten", [pooled], axis=1), x.channels
                )
            elif isinstance(layer, layers.Dense):
                if not x.identity or _activation(layer) not in ("linear", "relu"):
                    raise UnsupportedModel(f"Dense {layer.name!r}.")
                kernel = np.asarray(layer.kernel, np.float32)
                bias = (
                    np.asarray(layer.bias, np.float32)
                    if layer.use_bias
                    else np.zeros(kernel.shape[1], np.float32)
                )
                y = graph.op(
                    "Gemm",
                    [
                        x.name,
                        graph.const(kernel, f"{layer.name}_w", key=("w", layer.name)),
                        graph.const(bias, f"{layer.name}_b", key=("b", layer.name)),
                    ],
                    hint=layer.name,
                )
                if _activation(layer) == "relu":
                    y = graph.op("Relu", [y])
                values[id(out)] = _Value(y, np.arange(kernel.shape[1]))
            elif isinstance(layer, layers.Dropout):
                values[id(out)] = x
            else:
                raise UnsupportedModel(
                    f"Layer {layer.name!r} ({type(layer).__name__}) is not written "
                    "by the ONNX builder."
                )
        return values[id(self.model.outputs[0])].name


def check_supported(model: keras.Model) -> None:
    """Raises `UnsupportedModel` naming the first layer `build_onnx` cannot
    write (models with one NHWC image input and one logits output)."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModel("The ONNX builder needs one input and one output.")
    if len(model.inputs[0].shape) != 4:
        raise UnsupportedModel("The ONNX builder needs NHWC image inputs.")
    allowed = (
        keras.layers.InputLayer,
        layers.Conv2D,
        layers.BatchNormalization,
        SwitchableBatchNormalization,
        NeuronLayer,
        layers.ReLU,
        layers.Add,
        layers.Concatenate,
        layers.GlobalAveragePooling2D,
        layers.Dense,
        layers.Dropout,
        PresynapticGate,
        ChannelGate,
    )
    for layer in model.operations:
        if isinstance(layer, keras.Model):
            raise UnsupportedModel(f"Nested model {layer.name!r}.")
        if len(getattr(layer, "_inbound_nodes", [])) > 1:
            raise UnsupportedModel(f"Layer {layer.name!r} is called more than once.")
        if type(layer) is layers.Activation and _activation(layer) == "relu":
            continue
        if not isinstance(layer, allowed) or type(layer) in (
            layers.DepthwiseConv2D,
            layers.SeparableConv2D,
            layers.Conv2DTranspose,
        ):
            raise UnsupportedModel(
                f"Layer {layer.name!r} ({type(layer).__name__}) is not written by "
                "the ONNX builder; export with engine='tf2onnx'."
            )
        if isinstance(layer, layers.Conv2D) and (
            layer.data_format != "channels_last"
            or tuple(layer.dilation_rate) != (1, 1)
            or layer.groups != 1
            or _activation(layer) != "linear"
            or layer.padding not in ("same", "valid")
        ):
            raise UnsupportedModel(f"Conv2D {layer.name!r} options.")
    gate_blocks(model)  # raises on gates wired otherwise


def switchable_rows(model):
    """`row(threshold)`: the statistics row of the model's switchable batch
    norms at a threshold (0 without them)."""
    layers_ = [
        layer
        for layer in model.operations
        if isinstance(layer, SwitchableBatchNormalization)
    ]
    if not layers_:
        return lambda threshold: 0
    first = layers_[0]
    return lambda threshold: first.row_for(None if threshold == -np.inf else threshold)


def static_gates(model) -> list:
    """The input-independent `PresynapticGate` blocks of `model`."""
    return [b for b in gate_blocks(model) if b.gate.is_static]


def _closed_below(gate: PresynapticGate) -> float:
    """Log-alpha at and below which the estimator is exactly 0:
    `sigmoid(la) * (zeta - gamma) + gamma <= 0`."""
    hg = gate.gate
    return math.log(-hg.gamma / hg.zeta)


def _anchor(block):
    """The layer whose name keys a gate block's first convolution group: the
    concatenation of its branches, or its one convolution."""
    if block.path and isinstance(block.path[-1], layers.Concatenate):
        return block.path[-1]
    return block.outputs[0][0]


def _gate_arrays(block, groups) -> tuple:
    """`(log_alpha, estimator, kernel size, costs)` of the channels of a static
    gate; `costs = (C_in * k^2 per kernel k, second-conv MACs per channel)`,
    per output position, for `_plan`."""
    gate = block.gate
    anchor = _anchor(block)
    group = groups[anchor.name]
    kernel = np.asarray(
        [group.branches[group.channel(c)[0]].size for c in range(gate.filters)]
    )
    cin = group.branches[0].kernel.shape[1] - 1
    second = 0
    for conv in block.inputs:
        kh, kw, _, cout = conv.kernel.shape
        second += kh * kw * cout
    return gate.static_log_alpha(), gate.static_gate(-np.inf), kernel, (cin, second)


def _plan(arrays, threshold: float) -> _GatePlan:
    """The slots of a static block gate at `threshold`.

    The open channels, sorted by kernel size (then by log-alpha, largest
    first), are cut into runs by `_partition`, minimising the work of both
    convolutions; a plain run is padded with zero channels to a multiple of
    16, a column run is not.
    """
    la, z, kernel, (cin, second) = arrays
    open_ = (la >= threshold) & (z > 0)
    chosen = np.flatnonzero(open_)
    chosen = chosen[np.lexsort((-la[chosen], kernel[chosen]))]
    order, log_alpha, gates, runs = [], [], [], []
    for i, j, size, columns in _partition(kernel[chosen], cin, second):
        pad = 0 if columns else _up(j - i) - (j - i)
        runs.append((len(order), len(order) + j - i + pad, size, columns))
        order += list(chosen[i:j]) + [-1] * pad
        log_alpha += list(la[chosen[i:j]]) + [-np.inf] * pad
        gates += list(z[chosen[i:j]]) + [0.0] * pad
    return _GatePlan(
        np.asarray(order, np.int64),
        runs,
        np.asarray(log_alpha, np.float32),
        np.asarray(gates, np.float32),
    )


class StaticMacs:
    """MACs per example of a model with input-independent block gates at a
    threshold, counting only the open channels (as `spzoo.metrics` does)."""

    def __init__(self, model):
        self.total = float(counting.static_macs(model))
        self.blocks = []
        for block in static_gates(model):
            gate = block.gate
            alive = gate.static_gate(-np.inf) > 0
            per_channel = np.zeros(gate.filters)
            for conv, start, stop in block.outputs:
                per_channel[start:stop] += counting.layer_macs(conv) / (stop - start)
            inputs = sum(counting.layer_macs(conv) for conv in block.inputs)
            per_channel += inputs / gate.filters
            self.blocks.append((gate.static_log_alpha(), alive, per_channel))

    def __call__(self, threshold: float) -> float:
        total = self.total
        for log_alpha, alive, per_channel in self.blocks:
            closed = ~((log_alpha >= threshold) & alive)
            total -= float(per_channel[closed].sum())
        return total


def static_macs(model, threshold: float) -> float:
    """`StaticMacs(model)(threshold)`."""
    return StaticMacs(model)(threshold)


def default_levels(model, fractions=(0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)):
    """Threshold levels: for each fraction of the model's ungated MACs (every
    channel computed), the smallest log-alpha value at which its static MACs
    fall to that fraction or below, when that is cheaper than no threshold
    (duplicates dropped)."""
    blocks = static_gates(model)
    if not blocks:
        return []
    values = np.unique(
        np.concatenate([b.gate.static_log_alpha() for b in blocks]).astype(np.float64)
    )
    values = values[values > max(_closed_below(b.gate) for b in blocks)]
    if not len(values):
        return []
    count = StaticMacs(model)
    none = count(-np.inf)
    macs = np.array([count(float(v)) for v in values])
    levels = []
    for fraction in fractions:
        hits = np.flatnonzero((macs <= fraction * count.total) & (macs < none))
        if len(hits):
            level = float(np.float32(values[hits[0]]))
            if level not in levels:
                levels.append(level)
    return sorted(levels)


def build_onnx(
    model: keras.Model,
    metadata: dict | None = None,
    levels=None,
    threshold_range=None,
    batch_chunk: int | None = CHUNK,
):
    """Writes `model` as an ONNX `ModelProto` (see the module docstring).

    Args:
        model: A ResNet-family Keras model (`check_supported`).
        metadata: The metadata document to embed (`metadata_props["spzoo"]`).
        levels: Gated models with input-independent gates: the thresholds
            at which the graph switches to a slimmer sub-network (default
            `default_levels(model)`; `[]`: one masked network).
        threshold_range: `[lo, hi]` the threshold is clamped to inside the
            graph (default: the metadata's range, else none).

    Returns:
        `(proto, info)`: the checked `onnx.ModelProto` and a dict with the
        levels and their static MACs.
    """
    import onnx
    from onnx import TensorProto, helper

    check_supported(model)
    gated = bool(gate_blocks(model))
    static = static_gates(model)
    bn_levels = [float(np.float32(t)) for t in model_levels(model) or []]
    if levels is None:
        levels = bn_levels or (default_levels(model) if static else [])
    levels = sorted(float(np.float32(t)) for t in levels)
    if levels and not static:
        raise ValueError("`levels` need input-independent gates.")
    missing = sorted(set(bn_levels) - set(levels))
    if missing:
        raise ValueError(
            f"`levels` must include the levels of the model's switchable batch "
            f"norms, {bn_levels}; missing {missing}."
        )
    if threshold_range is None and metadata is not None:
        threshold_range = (metadata.get("threshold") or {}).get("range")
    groups, member = _find_groups(model)
    store = _Store()
    writer = _Writer(model, groups, member, gate_blocks(model), store)
    top = _Graph(store, "")
    shape = [int(d) for d in model.inputs[0].shape[1:]]
    image = top.op("Transpose", [INPUT_NAME], hint="image_nchw", perm=[0, 3, 1, 2])
    inputs = [
        helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", *shape])
    ]
    threshold = None
    if gated:
        inputs.append(
            helper.make_tensor_value_info(THRESHOLD_NAME, TensorProto.FLOAT, [])
        )
        threshold = THRESHOLD_NAME
        if threshold_range:
            lo, hi = (float(v) for v in threshold_range)
            threshold = top.op(
                "Clip",
                [
                    THRESHOLD_NAME,
                    top.const(np.float32(lo), "lo"),
                    top.const(np.float32(hi), "hi"),
                ],
                hint="threshold_clamped",
            )
    num_classes = int(model.outputs[0].shape[-1])
    info = {"levels": [], "gated": gated}
    if not static:
        logits = writer.write(top, image, threshold, {}, in_graph=False)
    else:
        bounds = [-np.inf, *levels]
        count = StaticMacs(model)
        arrays = {b.gate.name: _gate_arrays(b, groups) for b in static}

        rows = switchable_rows(model)

        def body(j):
            graph = _Graph(store, f"L{j}/")
            writer.row = rows(bounds[j])
            plans = {b.gate.name: _plan(arrays[b.gate.name], bounds[j]) for b in static}
            out = writer.write(graph, image, threshold, plans, in_graph=True)
            graph.nodes.append(helper.make_node("Identity", [out], [f"L{j}/logits"]))
            info["levels"].append(
                {
                    "threshold": None if j == 0 else bounds[j],
                    "macs": count(bounds[j]),
                }
            )
            return helper.make_graph(
                graph.nodes,
                f"level{j}",
                [],
                [
                    helper.make_tensor_value_info(
                        f"L{j}/logits", TensorProto.FLOAT, ["batch", num_classes]
                    )
                ],
                list(graph.initializers.values()),
            )

        def tree(lo, hi, graph):
            """Levels lo..hi (inclusive) chosen by the threshold in `graph`."""
            if lo == hi:
                return body(lo)
            mid = (lo + hi + 1) // 2
            sub = _Graph(store, f"T{lo}_{hi}/")
            cond = sub.op(
                "Less", [threshold, sub.const(np.float32(bounds[mid]), "level")]
            )
            name = f"T{lo}_{hi}/logits"
            sub.nodes.append(
                helper.make_node(
                    "If",
                    [cond],
                    [name],
                    then_branch=tree(lo, mid - 1, sub),
                    else_branch=tree(mid, hi, sub),
                )
            )
            return helper.make_graph(
                sub.nodes,
                f"select{lo}_{hi}",
                [],
                [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)],
                list(sub.initializers.values()),
            )

        selected = tree(0, len(bounds) - 1, top)
        top.nodes.extend(selected.node)
        for tensor in selected.initializer:
            top.initializers[tensor.name] = tensor
        logits = selected.output[0].name
        info["levels"].sort(
            key=lambda r: -np.inf if r["threshold"] is None else r["threshold"]
        )
    top.nodes.append(helper.make_node("Identity", [logits], [OUTPUT_NAME]))
    graph = helper.make_graph(
        top.nodes,
        model.name,
        inputs,
        [
            helper.make_tensor_value_info(
                OUTPUT_NAME, TensorProto.FLOAT, ["batch", num_classes]
            )
        ],
        list(store.initializers.values()) + list(top.initializers.values()),
    )
    if batch_chunk is not None:
        graph = in_chunks(graph, batch_chunk, INPUT_NAME, OUTPUT_NAME)
    info["batch_chunk"] = batch_chunk
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="spzoo",
    )
    if metadata is not None:
        proto.metadata_props.append(
            onnx.StringStringEntryProto(key=METADATA_KEY, value=dumps(metadata))
        )
    proto.doc_string = f"spzoo export of {model.name} (ONNX builder)"
    # The shapes of every value, inside the level sub-graphs too: ONNX
    # Runtime keeps a sub-graph's element-wise nodes in its blocked layout
    # only when it knows their shapes (it does not infer them through `If`).
    proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    onnx.checker.check_model(proto, full_check=True)
    return proto, info
