#!/usr/bin/env python3
"""SwiftFlows against the same flows written in plain PyTorch, timed interleaved in one run.

RealNVP: 8 affine couplings with the library's exact semantics (docs/model-format.md,
``affine_coupling``): half masks whose roles alternate (even layers condition on the first
floor(D/2) features, odd layers on the rest), conditioner MLP ``|a| -> 64 -> 64 -> 2|b|`` with ReLU
whose output holds the shift ``t`` then the raw log-scale, soft clamp ``s = 5 tanh(raw / 5)``,
``z_b = x_b exp(s) + t``, ``log|det J| = sum s``, standard-normal base. The SwiftFlows model is
perturbed by two epochs of ``fit`` and its weights are copied into the PyTorch model (through the
model's HDF5 image and h5py), and the two are checked to give the same log-densities before
anything is timed. Without h5py the PyTorch model keeps its own random weights (same
architecture and cost, different values) and the script says so.

For each D in (2, 8, 64), operation (log_prob and sample at batch 1, 256 and 65536; a training
step at batch 512), the two implementations are timed in alternation — torch, ours, torch, ours
… — so that load on a shared machine hits both alike. Each repeat runs enough calls to last
``--repeat-seconds``; the table shows median rows/s of each and the ratio ours / torch (> 1:
SwiftFlows is faster), and the same ratio of the fastest repeats, which other load on a shared
machine disturbs less. PyTorch runs ``torch.set_num_threads(swiftflows.get_num_threads())``
threads, inference under ``torch.inference_mode()``.

Training step: PyTorch does ``zero_grad``, forward, backward and one Adam step on 512 rows. The
Python package has no single-step entry point, so "ours" is ``Flow.fit`` for one epoch over
exactly 512 rows (batch_size 512, validation 0): one Adam step plus fit's per-call overhead
(option marshalling, the library's data copy and finiteness check, shuffle, epoch report). The
"marginal step" column removes that overhead: the time of fit over 1024 rows (two steps) minus
the time over 512 rows (one step), also interleaved.

Glow: SwiftFlows' ``glow`` preset for 3x16x16 images (2 levels x 4 steps, width 64) written out
in plain torch.nn (no flow library): dequantize (x / 256, log|det| = -D log 256), scale to
[-0.5, 0.5), then per level a squeeze (pixel_unshuffle: channel 4c + 2dy + dx) and 4 x [ActNorm,
LU-parameterised invertible 1x1 convolution W = P L (U + diag(sign exp(log_scale))), affine
coupling with a channel mask (the first floor(C/2) channels condition; network conv3x3 -> ReLU ->
conv1x1 -> ReLU -> conv3x3 giving shift then raw log-scale; s = 2 tanh(raw / 2))]; the first level
ends in a split whose kept C - floor(C/2) channels go on to level 2 and whose factored channels get
the conditional prior z2 = (x2 - mu) exp(-s), (mu, raw) from the same network shape on the kept
part, s = 5 tanh(raw / 5); output [level 2 flattened | z2 flattened], standard-normal base. The
SwiftFlows model is perturbed by one epoch of fit (lr 1e-2, batch 64) on 512 images of random
levels, every dataset of its HDF5 image is copied into the PyTorch model (layer types and
hyper-parameters checked), and log-densities on 256 images of random levels + 0.5 (both the
inference and the training path) and inverses of the same z ~ N(0, I) must agree to 1e-3 relative
before anything is timed. Rows: log_prob and sample at batch 1 and 256, and a training step at
batch 64 (torch adds uniform dequantisation noise as fit does; ours: fit over 64 rows, and the
marginal step fit(128) - fit(64)). In inference the PyTorch 1x1 convolutions use W and W^-1
cached once (SwiftFlows rebuilds them only when the parameters change); training assembles W from
the LU factors on every step, as it must.

Exits 0 with a message when torch is not installed.

    .venv-bench/bin/python bench/compare_torch.py [--quick] [--threads N] [--models realnvp,glow]
        [--dims 2,8,64] [--repeats R] [--repeat-seconds S] [--json]
"""

import argparse
import io
import json
import math
import os
import statistics
import sys
import time

try:
    import torch
except ImportError:
    torch = None

import numpy as np

import swiftflows

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from python_latency import correlated_gaussian, make_model  # noqa: E402  (the same perturbed models)

LAYERS = 8
HIDDEN = (64, 64)
CLAMP = 5.0
INFERENCE_BATCHES = (1, 256, 65536)
TRAIN_BATCH = 512
TRAIN_LR = 1e-4


# ---- the PyTorch flow -----------------------------------------------------------------------------

if torch is not None:
    class AffineCoupling(torch.nn.Module):
        """SwiftFlows' ``affine_coupling`` with a half mask: features [0, split) condition when
        ``condition_first``, else features [split, D) do."""

        def __init__(self, dim, condition_first, hidden=HIDDEN, clamp=CLAMP):
            super().__init__()
            self.dim, self.split = dim, dim // 2
            self.condition_first = condition_first
            n_a = self.split if condition_first else dim - self.split
            self.n_b = dim - n_a
            widths = [n_a, *hidden, 2 * self.n_b]
            layers = []
            for i in range(len(widths) - 1):
                layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
                if i < len(widths) - 2:
                    layers.append(torch.nn.ReLU())
            self.net = torch.nn.Sequential(*layers)
            self.clamp = clamp

        def _halves(self, x):
            first, second = x[:, :self.split], x[:, self.split:]
            return (first, second) if self.condition_first else (second, first)

        def _join(self, a, b):
            return torch.cat([a, b] if self.condition_first else [b, a], dim=1)

        def _shift_scale(self, a):
            h = self.net(a)
            t, raw = h[:, :self.n_b], h[:, self.n_b:]
            s = self.clamp * torch.tanh(raw / self.clamp)
            return t, s

        def forward(self, x):
            a, b = self._halves(x)
            t, s = self._shift_scale(a)
            return self._join(a, b * torch.exp(s) + t), s.sum(dim=1)

        def inverse(self, z):
            a, b = self._halves(z)
            t, s = self._shift_scale(a)
            return self._join(a, (b - t) * torch.exp(-s)), -s.sum(dim=1)

    class RealNVP(torch.nn.Module):
        """Couplings alternating as SwiftFlows' realnvp preset, standard-normal base."""

        def __init__(self, dim, layers=LAYERS):
            super().__init__()
            self.dim = dim
            # Layer i: the preset's invert_mask is set on odd layers (for dim > 1).
            self.couplings = torch.nn.ModuleList(
                AffineCoupling(dim, condition_first=(i % 2 == 0 or dim == 1)) for i in range(layers))

        def forward(self, x):
            logdet = torch.zeros(x.shape[0], dtype=x.dtype)
            for c in self.couplings:
                x, ld = c(x)
                logdet = logdet + ld
            return x, logdet

        def inverse(self, z):
            logdet = torch.zeros(z.shape[0], dtype=z.dtype)
            for c in reversed(self.couplings):
                z, ld = c.inverse(z)
                logdet = logdet + ld
            return z, logdet

        def log_prob(self, x):
            z, logdet = self(x)
            return -0.5 * (z * z).sum(dim=1) - 0.5 * self.dim * math.log(2 * math.pi) + logdet

        def sample(self, n):
            return self.inverse(torch.randn(n, self.dim))[0]


def copy_weights(flow, model):
    """Copies the SwiftFlows model's conditioner weights into the PyTorch model; returns False
    when h5py is missing. Checks that the layer masks are the ones the PyTorch model assumes."""
    try:
        import h5py
    except ImportError:
        return False
    with h5py.File(io.BytesIO(flow.to_bytes()), "r") as f:
        layers = f["layers"]
        if int(layers.attrs["count"]) != len(model.couplings):
            raise RuntimeError("layer count differs: %d vs %d" % (int(layers.attrs["count"]), len(model.couplings)))
        for i, coupling in enumerate(model.couplings):
            g = layers["%04d" % i]
            mask = np.asarray(g["mask"])
            expected = np.zeros(model.dim, dtype=np.int64)
            if coupling.condition_first:
                expected[:coupling.split] = 1
            else:
                expected[coupling.split:] = 1
            if not np.array_equal(mask, expected):
                raise RuntimeError("layer %d: mask %s, the PyTorch model assumes %s" % (i, mask, expected))
            linears = [m for m in coupling.net if isinstance(m, torch.nn.Linear)]
            with torch.no_grad():
                for k, linear in enumerate(linears):
                    linear.weight.copy_(torch.from_numpy(np.asarray(g["weight_%d" % k], dtype=np.float32)))
                    linear.bias.copy_(torch.from_numpy(np.asarray(g["bias_%d" % k], dtype=np.float32)))
    return True


# ---- the PyTorch Glow ---------------------------------------------------------------------------

GLOW_SHAPE = (3, 16, 16)
GLOW_LEVELS = 2
GLOW_STEPS = 4
GLOW_HIDDEN = 64
GLOW_BITS = 8
GLOW_COUPLING_CLAMP = 2.0   # the glow preset's default "clamp"
GLOW_PRIOR_CLAMP = 5.0      # split's default "clamp" (Split.swift); the preset does not set it
GLOW_BATCHES = (1, 256)
GLOW_TRAIN_BATCH = 64

if torch is not None:
    F = torch.nn.functional

    def conv_net(cin, hidden, cout):
        """SwiftFlows' ConvNet: conv3x3 -> ReLU -> conv1x1 -> ReLU -> conv3x3, 'same' zero padding,
        last convolution zero-initialised."""
        net = torch.nn.Sequential(
            torch.nn.Conv2d(cin, hidden, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(hidden, hidden, 1), torch.nn.ReLU(),
            torch.nn.Conv2d(hidden, cout, 3, padding=1))
        torch.nn.init.zeros_(net[4].weight)
        torch.nn.init.zeros_(net[4].bias)
        return net

    def copy_param(target, group, name):
        """Copies float32 dataset ``name`` of ``group`` into ``target`` (same shape required)."""
        value = np.asarray(group[name], dtype=np.float32)
        if tuple(value.shape) != tuple(target.shape):
            raise RuntimeError("%s/%s: shape %s, the PyTorch model has %s"
                               % (group.name, name, value.shape, tuple(target.shape)))
        with torch.no_grad():
            target.copy_(torch.from_numpy(value))

    def check_attr(group, name, expected):
        value = group.attrs[name]
        value = value.decode() if isinstance(value, bytes) else value
        ok = value == expected if isinstance(expected, str) else math.isclose(float(value), float(expected))
        if not ok:
            raise RuntimeError("%s: @%s = %r, the PyTorch model assumes %r" % (group.name, name, value, expected))

    def copy_conv_net(net, group):
        convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
        for k, conv in enumerate(convs):
            copy_param(conv.weight, group, "weight_%d" % k)
            copy_param(conv.bias, group, "bias_%d" % k)
        return {"weight_%d" % k for k in range(3)} | {"bias_%d" % k for k in range(3)}

    class Dequantize(torch.nn.Module):
        """``dequantize``: y = x / L, log|det J| = -D log L."""
        swift_type = "dequantize"

        def __init__(self, shape, levels):
            super().__init__()
            self.levels, self.out_shape = levels, shape
            self.logdet = -math.prod(shape) * math.log(levels)

        def forward(self, x):
            return x / self.levels, self.logdet

        def inverse(self, z):
            return z * self.levels

        def load(self, group):
            check_attr(group, "levels", self.levels)
            return set()

    class Scale(torch.nn.Module):
        """``scale``: y = a x + b, log|det J| = D log|a|."""
        swift_type = "scale"

        def __init__(self, shape, scale, shift):
            super().__init__()
            self.scale, self.shift, self.out_shape = scale, shift, shape
            self.logdet = math.prod(shape) * math.log(abs(scale))

        def forward(self, x):
            y = x * self.scale + self.shift if self.scale != 1 else x + self.shift
            return y, self.logdet

        def inverse(self, z):
            return (z - self.shift) / self.scale if self.scale != 1 else z - self.shift

        def load(self, group):
            check_attr(group, "scale", self.scale)
            check_attr(group, "shift", self.shift)
            return set()

    class Squeeze(torch.nn.Module):
        """``squeeze``: pixel_unshuffle by 2 (output channel 4c + 2dy + dx), log|det J| = 0."""
        swift_type = "squeeze"

        def __init__(self, shape):
            super().__init__()
            c, h, w = shape
            self.out_shape = (4 * c, h // 2, w // 2)

        def forward(self, x):
            return F.pixel_unshuffle(x, 2), 0.0

        def inverse(self, z):
            return F.pixel_shuffle(z, 2)

        def load(self, group):
            return set()

    class ActNorm2d(torch.nn.Module):
        """``actnorm`` on images: z = (x + bias_c) exp(log_scale_c), log|det J| = H W sum(log_scale)."""
        swift_type = "actnorm"

        def __init__(self, shape):
            super().__init__()
            c, h, w = shape
            self.out_shape, self.pixels = shape, h * w
            self.bias = torch.nn.Parameter(torch.zeros(c))
            self.log_scale = torch.nn.Parameter(torch.zeros(c))

        def forward(self, x):
            z = (x + self.bias.view(1, -1, 1, 1)) * torch.exp(self.log_scale).view(1, -1, 1, 1)
            return z, self.pixels * self.log_scale.sum()

        def inverse(self, z):
            return z * torch.exp(-self.log_scale).view(1, -1, 1, 1) - self.bias.view(1, -1, 1, 1)

        def load(self, group):
            check_attr(group, "initialized", 1)
            copy_param(self.bias, group, "bias")
            copy_param(self.log_scale, group, "log_scale")
            return {"bias", "log_scale"}

    class InvConv1x1LU(torch.nn.Module):
        """``invertible_conv1x1`` with LU: W = P L (U + diag(sign exp(log_scale))), (P v)[i] =
        v[perm[i]]; z = W x at every pixel (a 1x1 convolution), log|det J| = H W sum(log_scale).
        Training assembles W from the factors on every call; ``freeze()`` caches W and W^-1 for
        inference (as SwiftFlows rebuilds them only when the parameters change)."""
        swift_type = "invertible_conv1x1"

        def __init__(self, shape):
            super().__init__()
            c, h, w = shape
            self.c, self.out_shape, self.pixels = c, shape, h * w
            # Start (replaced by load()): the LU factors of a random orthogonal matrix, A = P L U.
            p, lower, upper = torch.linalg.lu(torch.linalg.qr(torch.randn(c, c))[0])
            diag = torch.diagonal(upper)
            self.register_buffer("perm", p.argmax(dim=1))
            self.register_buffer("sign", torch.sign(diag))
            self.register_buffer("lower_mask", torch.tril(torch.ones(c, c), -1))
            self.register_buffer("upper_mask", torch.triu(torch.ones(c, c), 1))
            self.register_buffer("eye", torch.eye(c))
            self.lower = torch.nn.Parameter(lower.tril(-1))
            self.upper = torch.nn.Parameter(upper.triu(1))
            self.log_scale = torch.nn.Parameter(torch.log(torch.abs(diag)))
            self.frozen = None

        def weight(self):
            lower = self.lower * self.lower_mask + self.eye
            upper = self.upper * self.upper_mask + torch.diag(self.sign * torch.exp(self.log_scale))
            return (lower @ upper)[self.perm]

        def freeze(self):
            with torch.no_grad():
                w = self.weight().double()
                self.frozen = (w.float().view(self.c, self.c, 1, 1).contiguous(),
                               torch.linalg.inv(w).float().view(self.c, self.c, 1, 1).contiguous())

        def unfreeze(self):
            self.frozen = None

        def forward(self, x):
            w = self.frozen[0] if self.frozen is not None else self.weight().view(self.c, self.c, 1, 1)
            return F.conv2d(x, w), self.pixels * self.log_scale.sum()

        def inverse(self, z):
            w_inv = self.frozen[1] if self.frozen is not None else \
                torch.linalg.inv(self.weight()).view(self.c, self.c, 1, 1)
            return F.conv2d(z, w_inv)

        def load(self, group):
            check_attr(group, "lu", 1)
            for name in ("permutation", "sign"):
                value = np.asarray(group[name], dtype=np.int64)
                if value.shape != (self.c,):
                    raise RuntimeError("%s/%s: shape %s, expected (%d,)" % (group.name, name, value.shape, self.c))
                with torch.no_grad():
                    (self.perm if name == "permutation" else self.sign).copy_(torch.from_numpy(value))
            for name in ("lower", "upper", "log_scale"):
                copy_param(getattr(self, name), group, name)
            return {"permutation", "sign", "lower", "upper", "log_scale"}

    class ChannelCoupling(torch.nn.Module):
        """``conv_affine_coupling`` with a channel mask: the first floor(C/2) channels condition;
        h = net(x_a), t = h[:, :n_b], s = c tanh(h[:, n_b:] / c), z_b = x_b exp(s) + t."""
        swift_type = "conv_affine_coupling"

        def __init__(self, shape, hidden, clamp):
            super().__init__()
            c = shape[0]
            self.out_shape, self.hidden, self.clamp = shape, hidden, clamp
            self.n_a = c // 2
            self.n_b = c - self.n_a
            self.net = conv_net(self.n_a, hidden, 2 * self.n_b)

        def _shift_scale(self, xa):
            h = self.net(xa)
            return h[:, :self.n_b], self.clamp * torch.tanh(h[:, self.n_b:] / self.clamp)

        def forward(self, x):
            xa, xb = x[:, :self.n_a], x[:, self.n_a:]
            t, s = self._shift_scale(xa)
            return torch.cat([xa, xb * torch.exp(s) + t], dim=1), s.sum(dim=(1, 2, 3))

        def inverse(self, z):
            za, zb = z[:, :self.n_a], z[:, self.n_a:]
            t, s = self._shift_scale(za)
            return torch.cat([za, (zb - t) * torch.exp(-s)], dim=1)

        def load(self, group):
            check_attr(group, "mask", "channel")
            check_attr(group, "invert_mask", 0)
            check_attr(group, "hidden", self.hidden)
            check_attr(group, "clamp", self.clamp)
            return copy_conv_net(self.net, group)

    class FlowSequence(torch.nn.Module):
        """Layers applied in order (forward) / reverse order (inverse); SwiftFlows' ``layers``."""

        def __init__(self, layers, in_shape):
            super().__init__()
            self.layers = torch.nn.ModuleList(layers)
            self.in_shape = tuple(in_shape)
            self.out_shape = tuple(layers[-1].out_shape) if layers else self.in_shape

        def forward(self, x):
            logdet = torch.zeros(x.shape[0], dtype=x.dtype)
            for layer in self.layers:
                x, ld = layer(x)
                logdet = logdet + ld
            return x, logdet

        def inverse(self, z):
            for layer in reversed(self.layers):
                z = layer.inverse(z)
            return z

        def load(self, group):
            """Maps every layer group onto the PyTorch layers; refuses any dataset not mapped."""
            if int(group.attrs["count"]) != len(self.layers):
                raise RuntimeError("%s: %d layers, the PyTorch model has %d"
                                   % (group.name, int(group.attrs["count"]), len(self.layers)))
            for i, layer in enumerate(self.layers):
                g = group["%04d" % i]
                check_attr(g, "type", layer.swift_type)
                used = layer.load(g)
                datasets = {k for k in g.keys() if not (k == "layers" and layer.swift_type == "split")}
                if datasets != used:
                    raise RuntimeError("%s: datasets %s, mapped %s" % (g.name, sorted(datasets), sorted(used)))

    class GlowSplit(torch.nn.Module):
        """``split`` with the conditional prior: x1 = first C - floor(C/2) channels go through the
        nested layers; h = net(x1), mu = h[:, :C2], s = c tanh(h[:, C2:] / c), z2 = (x2 - mu)
        exp(-s), log|det J| = -sum s; output [nested output flattened | z2 flattened]."""
        swift_type = "split"

        def __init__(self, shape, hidden, nested, clamp):
            super().__init__()
            c, h, w = shape
            self.c2 = c // 2
            self.c1 = c - self.c2
            self.plane, self.hidden, self.clamp = (h, w), hidden, clamp
            self.net = conv_net(self.c1, hidden, 2 * self.c2)
            self.nested = nested
            self.n1 = math.prod(nested.out_shape)
            self.out_shape = (c * h * w,)

        def _mean_scale(self, x1):
            h = self.net(x1)
            return h[:, :self.c2], self.clamp * torch.tanh(h[:, self.c2:] / self.clamp)

        def forward(self, x):
            x1, x2 = x[:, :self.c1], x[:, self.c1:]
            mu, s = self._mean_scale(x1)
            z2 = (x2 - mu) * torch.exp(-s)
            z1, logdet = self.nested(x1)
            return torch.cat([z1.flatten(1), z2.flatten(1)], dim=1), logdet - s.sum(dim=(1, 2, 3))

        def inverse(self, z):
            n = z.shape[0]
            x1 = self.nested.inverse(z[:, :self.n1].reshape(n, *self.nested.out_shape))
            mu, s = self._mean_scale(x1)
            x2 = z[:, self.n1:].reshape(n, self.c2, *self.plane) * torch.exp(s) + mu
            return torch.cat([x1, x2], dim=1)

        def load(self, group):
            check_attr(group, "prior", "conditional")
            check_attr(group, "hidden", self.hidden)
            check_attr(group, "clamp", self.clamp)
            used = copy_conv_net(self.net, group)
            self.nested.load(group["layers"])
            return used

    class Glow(torch.nn.Module):
        """SwiftFlows' ``glow`` preset: dequantize, scale to [-0.5, 0.5), then per level a squeeze
        and ``steps`` x [ActNorm, LU 1x1 convolution, channel coupling], every level but the last
        ending in a split (conditional prior) that holds the next level; standard-normal base."""

        def __init__(self, shape=GLOW_SHAPE, levels=GLOW_LEVELS, steps=GLOW_STEPS, hidden=GLOW_HIDDEN,
                     bits=GLOW_BITS, clamp=GLOW_COUPLING_CLAMP, prior_clamp=GLOW_PRIOR_CLAMP):
            super().__init__()
            shape = tuple(shape)

            def level(l, in_shape):
                layers = [Squeeze(in_shape)]
                shape = layers[0].out_shape
                for _ in range(steps):
                    layers += [ActNorm2d(shape), InvConv1x1LU(shape), ChannelCoupling(shape, hidden, clamp)]
                if l < levels:
                    c, h, w = shape
                    nested = level(l + 1, (c - c // 2, h, w))
                    layers.append(GlowSplit(shape, hidden, nested, prior_clamp))
                return FlowSequence(layers, in_shape)

            self.dim = math.prod(shape)
            self.flow = FlowSequence([Dequantize(shape, 2 ** bits), Scale(shape, 1.0, -0.5)]
                                     + list(level(1, shape).layers), shape)

        def forward(self, x):
            return self.flow(x)

        def log_prob(self, x):
            z, logdet = self.flow(x)
            z = z.flatten(1)
            return -0.5 * (z * z).sum(dim=1) - 0.5 * self.dim * math.log(2 * math.pi) + logdet

        def inverse(self, z):
            return self.flow.inverse(z.reshape(z.shape[0], *self.flow.out_shape))

        def sample(self, n):
            return self.inverse(torch.randn(n, self.dim))

        def conv1x1s(self):
            return [m for m in self.modules() if isinstance(m, InvConv1x1LU)]

        def freeze(self):
            for m in self.conv1x1s():
                m.freeze()

        def unfreeze(self):
            for m in self.conv1x1s():
                m.unfreeze()


def copy_glow_weights(flow, model):
    """Copies every dataset of the SwiftFlows Glow (its HDF5 image) into the PyTorch Glow, checking
    layer types and hyper-parameters on the way; returns False when h5py is missing."""
    try:
        import h5py
    except ImportError:
        return False
    with h5py.File(io.BytesIO(flow.to_bytes()), "r") as f:
        check_attr(f["base"], "type", "standard_normal")
        if tuple(int(v) for v in f.attrs["event_shape"]) != tuple(model.flow.in_shape):
            raise RuntimeError("event shape %s, the PyTorch model has %s"
                               % (f.attrs["event_shape"], model.flow.in_shape))
        model.flow.load(f["layers"])
    return True


# ---- interleaved timing ---------------------------------------------------------------------------

def calibrate(fn, target):
    """Calls per repeat so that a repeat lasts at least ``target`` seconds (>= 1)."""
    fn()  # first call: allocations, lazy initialisation
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= target / 5:
            break
    return max(1, math.ceil(target / (elapsed / n)))


def interleaved(fns, rows, repeats, target):
    """Rows/s of each function in ``fns``, repeats alternating between them (after one warm-up
    repeat each); returns a list (per function) of per-repeat rates."""
    calls = [calibrate(fn, target) for fn in fns]

    def run(fn, k):
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        return time.perf_counter() - t0

    for fn, k in zip(fns, calls):
        run(fn, k)  # warm-up repeat
    rates = [[] for _ in fns]
    for _ in range(repeats):
        for i, (fn, k) in enumerate(zip(fns, calls)):
            rates[i].append(k * rows[i] / run(fn, k))
    return rates


def fmt_rate(v):
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= scale * 0.9995:
            v /= scale
            break
    else:
        suffix = ""
    return ("%.0f" if v >= 99.95 else "%.1f" if v >= 9.995 else "%.2f") % v + suffix


# ---- the comparison -------------------------------------------------------------------------------

def row_record(model, label, op, batch, torch_rates, ours_rates, **extra):
    """One table row: medians and bests (max over repeats) of both sides and their ratios."""
    t_med, o_med = statistics.median(torch_rates), statistics.median(ours_rates)
    t_best, o_best = max(torch_rates), max(ours_rates)
    return {"model": model, **extra, "label": label, "operation": op, "batch": batch,
            "torch_rows_per_second": t_med, "ours_rows_per_second": o_med, "ratio": o_med / t_med,
            "torch_best_rows_per_second": t_best, "ours_best_rows_per_second": o_best,
            "best_ratio": o_best / t_best,
            "torch_rates": torch_rates, "ours_rates": ours_rates}


def inference_rows(model_name, label, model, flow, batches, make_input, repeats, target, **extra):
    """log_prob and sample at each batch, torch and ours interleaved (torch under inference_mode)."""
    rows = []
    with torch.inference_mode():
        for batch in batches:
            x_np = make_input(batch)
            x_t = torch.from_numpy(x_np)
            seeds = iter(range(1, 1 << 62))
            cases = [
                ("log_prob", lambda: model.log_prob(x_t), lambda: flow.log_prob(x_np)),
                ("sample", lambda: model.sample(batch), lambda: flow.sample(batch, seed=next(seeds))),
            ]
            for op, torch_fn, ours_fn in cases:
                t, o = interleaved([torch_fn, ours_fn], [batch, batch], repeats, target)
                rows.append(row_record(model_name, label, op, batch, t, o, **extra))
    return rows


def train_step_row(model_name, label, model, flow, x_np, x2_np, batch, repeats, target, noise=False, **extra):
    """One training step at ``batch`` rows. torch: zero_grad, forward, backward, Adam step (with
    uniform dequantisation noise when ``noise``, as fit adds it for flows that start with
    dequantize). ours: Flow.fit for one epoch over ``x_np`` (``batch`` rows, one step) and over
    ``x2_np`` (2 ``batch`` rows, two steps), interleaved; marginal step = the difference."""
    x_t = torch.from_numpy(x_np)
    optimizer = torch.optim.Adam(model.parameters(), lr=TRAIN_LR)

    def torch_step():
        optimizer.zero_grad(set_to_none=True)
        x = x_t + torch.rand_like(x_t) if noise else x_t
        loss = -model.log_prob(x).mean()
        loss.backward()
        optimizer.step()

    def fit(x):
        flow.fit(x, epochs=1, batch_size=batch, lr=TRAIN_LR, validation=0, seed=0, progress=False)

    t, one, two = interleaved([torch_step, lambda: fit(x_np), lambda: fit(x2_np)],
                              [batch, batch, 2 * batch], repeats, target)
    # Seconds per call from the per-repeat medians; marginal = one more step.
    sec_one = batch / statistics.median(one)
    sec_two = 2 * batch / statistics.median(two)
    marginal = sec_two - sec_one
    record = row_record(model_name, label, "train_step", batch, t, one, **extra)
    record.update({
        "ours_marginal_step_rows_per_second": batch / marginal if marginal > 0 else None,
        "marginal_ratio": (batch / marginal) / record["torch_rows_per_second"] if marginal > 0 else None,
        "ours_fit_overhead_seconds": sec_one - marginal if marginal > 0 else None,
    })
    return record


def compare_realnvp(dim, repeats, target, batches):
    flow = make_model(dim)
    model = RealNVP(dim)
    same_weights = copy_weights(flow, model)
    check = correlated_gaussian(1000, dim, seed=21)
    with torch.inference_mode():
        ours_lp = flow.log_prob(check)
        torch_lp = model.log_prob(torch.from_numpy(check)).double().numpy()
    max_diff = float(np.max(np.abs(ours_lp - torch_lp)))
    if same_weights and not max_diff <= 1e-3 * max(1.0, float(np.max(np.abs(ours_lp)))):
        raise RuntimeError("D=%d: the PyTorch model disagrees with SwiftFlows (max |d log p| = %g)" % (dim, max_diff))

    label = "RealNVP D=%d" % dim
    rows = inference_rows("RealNVP", label, model, flow, batches,
                          lambda batch: correlated_gaussian(batch, dim, seed=13), repeats, target, dim=dim)
    # Training step at batch 512.
    x_np = correlated_gaussian(TRAIN_BATCH, dim, seed=17)
    x2_np = np.concatenate([x_np, correlated_gaussian(TRAIN_BATCH, dim, seed=19)])
    rows.append(train_step_row("RealNVP", label, model, flow, x_np, x2_np, TRAIN_BATCH, repeats, target, dim=dim))
    flow.close()
    return {"dim": dim, "label": label, "same_weights": same_weights, "max_abs_log_prob_difference": max_diff,
            "rows": rows}


GLOW_SPEC = {"preset": "glow", "shape": list(GLOW_SHAPE), "levels": GLOW_LEVELS, "steps": GLOW_STEPS,
             "hidden": GLOW_HIDDEN}


def random_levels(rows, seed, offset=0.0):
    """``rows`` images of uniformly random integer levels 0 ... 255 (+ ``offset``), float32."""
    levels = np.random.default_rng(seed).integers(0, 2 ** GLOW_BITS, (rows,) + GLOW_SHAPE)
    return (levels + offset).astype(np.float32)


def make_glow():
    """The benchmark Glow (``GLOW_SPEC``), perturbed away from its initial state by one epoch of
    fit (Adam, learning rate 1e-2, batch 64) on 512 images of random levels; this also runs the
    ActNorms' data-dependent initialisation."""
    flow = swiftflows.Flow.from_spec(GLOW_SPEC, seed=1)
    flow.fit(random_levels(512, seed=7), epochs=1, batch_size=64, lr=1e-2, validation=0, seed=3, progress=False)
    return flow


def compare_glow(repeats, target, batches=GLOW_BATCHES):
    flow = make_glow()
    model = Glow()
    same_weights = copy_glow_weights(flow, model)
    label = "Glow %s" % "x".join(str(d) for d in GLOW_SHAPE)
    n_check = 256
    x = random_levels(n_check, seed=21, offset=0.5)
    z = np.random.default_rng(23).standard_normal((n_check,) + GLOW_SHAPE).astype(np.float32)
    model.freeze()  # inference: cached W and W^-1, as SwiftFlows keeps them
    with torch.inference_mode():
        ours_lp = flow.log_prob(x)
        torch_lp = model.log_prob(torch.from_numpy(x)).double().numpy()
        ours_x = flow.inverse(z)[0]
        torch_x = model.inverse(torch.from_numpy(z).reshape(n_check, -1)).numpy()
    model.unfreeze()
    with torch.no_grad():  # the training path: W assembled from the LU factors on every call
        torch_lp_train = model.log_prob(torch.from_numpy(x)).double().numpy()
    lp_scale = max(1.0, float(np.max(np.abs(ours_lp))))
    max_diff = float(max(np.max(np.abs(ours_lp - torch_lp)), np.max(np.abs(ours_lp - torch_lp_train))))
    inverse_diff = float(np.max(np.abs(ours_x - torch_x)))
    inverse_scale = max(1.0, float(np.max(np.abs(ours_x))))
    if same_weights and not max_diff <= 1e-3 * lp_scale:
        raise RuntimeError("Glow: the PyTorch model disagrees with SwiftFlows (max |d log p| = %g, max |log p| = %g)"
                           % (max_diff, lp_scale))
    if same_weights and not inverse_diff <= 1e-3 * inverse_scale:
        raise RuntimeError("Glow: the PyTorch inverse disagrees with SwiftFlows (max |d x| = %g, max |x| = %g)"
                           % (inverse_diff, inverse_scale))

    model.freeze()
    rows = inference_rows("Glow", label, model, flow, batches,
                          lambda batch: random_levels(batch, seed=13, offset=0.5), repeats, target,
                          shape=list(GLOW_SHAPE))
    model.unfreeze()
    x_np = random_levels(GLOW_TRAIN_BATCH, seed=17)
    x2_np = np.concatenate([x_np, random_levels(GLOW_TRAIN_BATCH, seed=19)])
    rows.append(train_step_row("Glow", label, model, flow, x_np, x2_np, GLOW_TRAIN_BATCH, repeats, target,
                               noise=True, shape=list(GLOW_SHAPE)))
    flow.close()
    return {"spec": GLOW_SPEC, "label": label, "parameters": sum(p.numel() for p in model.parameters()),
            "same_weights": same_weights, "check_rows": n_check,
            "max_abs_log_prob_difference": max_diff, "max_abs_log_prob": lp_scale,
            "max_abs_inverse_difference": inverse_diff, "max_abs_inverse": inverse_scale, "rows": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 short repeats; RealNVP batches 1 and 256 only (Glow always runs 1 and 256)")
    parser.add_argument("--threads", type=int, default=None, help="threads for both libraries")
    parser.add_argument("--models", default="realnvp,glow", help="comma-separated: realnvp, glow (default both)")
    parser.add_argument("--dims", default="2,8,64", help="comma-separated RealNVP dimensions (default 2,8,64)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 7; 3 with --quick)")
    parser.add_argument("--repeat-seconds", type=float, default=None,
                        help="minimum seconds per repeat (0.1; 0.02 quick)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    models = {m.strip().lower() for m in args.models.split(",") if m.strip()}
    if not models or models - {"realnvp", "glow"}:
        parser.error("--models: expected a comma-separated list of realnvp and glow, got %r" % args.models)

    if torch is None:
        print("compare_torch: PyTorch is not installed; skipping the comparison "
              "(make bench-torch creates .venv-bench with torch).")
        return 0

    if args.threads is not None:
        swiftflows.set_num_threads(args.threads)
    threads = swiftflows.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dims = [int(d) for d in args.dims.split(",") if d.strip()] if "realnvp" in models else []
    repeats = args.repeats or (3 if args.quick else 7)
    target = args.repeat_seconds or (0.02 if args.quick else 0.1)
    batches = INFERENCE_BATCHES[:2] if args.quick else INFERENCE_BATCHES

    results = [compare_realnvp(dim, repeats, target, batches) for dim in dims]
    glow = compare_glow(repeats, target) if "glow" in models else None
    info = {"torch": torch.__version__, "swiftflows_library": swiftflows.library_version(),
            "library_path": str(swiftflows.library_path), "threads": threads, "repeats": repeats,
            "repeat_seconds": target, "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    if args.json:
        print(json.dumps({**info, "realnvp": results, "glow": glow}, indent=2))
        return 0

    print("SwiftFlows (Python package, library %s) vs plain PyTorch %s, %d threads each"
          % (info["swiftflows_library"], info["torch"], threads))
    print("Interleaved repeats (torch, ours, torch, ours, ...): %d per row, each >= %.2f s; median rows/s."
          % (repeats, target))
    if info["load_average"]:
        print("Load average at the end: %.2f %.2f %.2f (1, 5, 15 min)" % tuple(info["load_average"]))
    print("ratio = ours / torch rows/s (> 1: SwiftFlows faster).\n")
    for r in results:
        if r["same_weights"]:
            print("RealNVP D=%d: weights copied into PyTorch; max |log p difference| on 1000 rows = %.2e"
                  % (r["dim"], r["max_abs_log_prob_difference"]))
        else:
            print("RealNVP D=%d: h5py missing, PyTorch keeps its own random weights (same architecture and cost)"
                  % r["dim"])
    if glow is not None:
        if glow["same_weights"]:
            print("%s (%d levels x %d steps, width %d, %d parameters): every dataset copied into PyTorch;"
                  % (glow["label"], GLOW_LEVELS, GLOW_STEPS, GLOW_HIDDEN, glow["parameters"]))
            print("  on %d images of random levels + 0.5: max |log p difference| = %.2e (max |log p| = %.0f,"
                  " relative %.1e);" % (glow["check_rows"], glow["max_abs_log_prob_difference"],
                                        glow["max_abs_log_prob"],
                                        glow["max_abs_log_prob_difference"] / glow["max_abs_log_prob"]))
            print("  inverse of the same z ~ N(0, I): max |x difference| = %.2e (max |x| = %.0f)"
                  % (glow["max_abs_inverse_difference"], glow["max_abs_inverse"]))
        else:
            print("%s: h5py missing, PyTorch keeps its own random weights (same architecture and cost)"
                  % glow["label"])
    print()
    print("%-13s %-10s %6s %12s %12s %8s %10s %14s %8s" % (
        "model", "operation", "batch", "torch rows/s", "ours rows/s", "ratio", "best ratio", "marginal step",
        "m. ratio"))
    for r in results + ([glow] if glow is not None else []):
        for row in r["rows"]:
            line = "%-13s %-10s %6d %12s %12s %8.2f %10.2f" % (
                row["label"], row["operation"], row["batch"], fmt_rate(row["torch_rows_per_second"]),
                fmt_rate(row["ours_rows_per_second"]), row["ratio"], row["best_ratio"])
            if row["operation"] == "train_step" and row.get("ours_marginal_step_rows_per_second"):
                line += " %14s %8.2f" % (fmt_rate(row["ours_marginal_step_rows_per_second"]), row["marginal_ratio"])
            print(line)
        print()
    print("rows/s: medians over the repeats; ratio = ours / torch of the medians; best ratio = of the fastest repeats")
    print("(less sensitive to other load on a shared machine).")
    print("train_step at batch B (RealNVP 512, Glow 64): torch = zero_grad + forward + backward + Adam on B rows")
    print("(Glow: plus uniform dequantisation noise, as fit adds it); ours = Flow.fit for one epoch over B rows")
    print("(one Adam step) including fit's per-call overhead (options, data copy and finiteness check, shuffle,")
    print("epoch report); 'marginal step' = fit over 2B rows minus fit over B rows, i.e. one step without that")
    print("overhead, and m. ratio its rate over torch's.")
    overheads = ["%s %.2f ms" % (row["label"], 1e3 * row["ours_fit_overhead_seconds"])
                 for r in results + ([glow] if glow is not None else [])
                 for row in r["rows"] if row.get("ours_fit_overhead_seconds") is not None]
    if overheads:
        print("Estimated fit overhead per call (1-step fit time minus marginal step): %s." % ", ".join(overheads))
    if glow is not None:
        print("Glow in PyTorch: inference uses W and W^-1 of the 1x1 convolutions cached once (SwiftFlows rebuilds")
        print("them only when the parameters change); training assembles W from the LU factors on every step.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
