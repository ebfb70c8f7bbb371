"""A third-party model writer and evaluator, built only from docs/model-format.md.

The writer below uses h5py and numpy only (no swiftflows code) to write flows with every layer
type, every activation and both base distributions, with random parameters (non-zero last
conditioner layers), and conditional models (standardised and embedded context, a conditional
coupling and the conditional_diagonal_normal base). The library loads them, and its
log-densities and latents are compared with an independent float64 numpy implementation of the
documented equations.
"""

import math

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

LOG_2PI = math.log(2.0 * math.pi)


# ---- writer --------------------------------------------------------------------------------

def _f32(rng, low, high, shape):
    return rng.uniform(low, high, size=shape).astype(np.float32)


def _random_mask(rng, d):
    if d == 1:
        return np.array([0], dtype=np.int64)
    while True:
        mask = rng.integers(0, 2, size=d).astype(np.int64)
        if 0 < mask.sum() < d:
            return mask


def _coupling(rng, kind, d, hidden, activation, clamp=None):
    mask = _random_mask(rng, d)
    n_a, n_b = int(mask.sum()), int(d - mask.sum())
    out = 2 * n_b if kind == "affine_coupling" else n_b
    widths = [n_a] + list(hidden) + [out]
    weights, biases = [], []
    for l in range(len(widths) - 1):
        weights.append(_f32(rng, -0.4, 0.4, (widths[l + 1], widths[l])))
        biases.append(_f32(rng, -0.3, 0.3, (widths[l + 1],)))
    layer = {"type": kind, "mask": mask, "hidden": list(hidden), "activation": activation,
             "weights": weights, "biases": biases}
    if kind == "affine_coupling":
        layer["clamp"] = float(clamp)
    return layer


def random_flow(rng, event_shape, base):
    """A random flow description: every layer type and activation, random parameters."""
    d = int(np.prod(event_shape))
    c = event_shape[0]
    lu_perm = rng.permutation(d).astype(np.int64)
    layers = [
        {"type": "actnorm", "bias": _f32(rng, -0.5, 0.5, (c,)), "log_scale": _f32(rng, -0.3, 0.3, (c,))},
        _coupling(rng, "affine_coupling", d, [8, 6], "tanh", clamp=3.0),
        {"type": "permutation", "indices": rng.permutation(d).astype(np.int64)},
        {"type": "lu_linear", "permutation": lu_perm,
         "sign": rng.choice(np.array([-1, 1], dtype=np.int64), size=d),
         "lower": _f32(rng, -0.2, 0.2, (d, d)), "upper": _f32(rng, -0.2, 0.2, (d, d)),
         "log_scale": _f32(rng, -0.3, 0.3, (d,))},
        _coupling(rng, "additive_coupling", d, [7], "elu"),
        _coupling(rng, "affine_coupling", d, [], "tanh", clamp=0.0),   # no hidden layer, no clamp
        _coupling(rng, "affine_coupling", d, [5], "leaky_relu", clamp=2.0),
        _coupling(rng, "additive_coupling", d, [4, 4], "softplus"),
        _coupling(rng, "affine_coupling", d, [6], "silu", clamp=4.0),
        _coupling(rng, "affine_coupling", d, [5, 3], "relu", clamp=1.5),
        {"type": "actnorm", "bias": _f32(rng, -0.5, 0.5, (c,)), "log_scale": _f32(rng, -0.3, 0.3, (c,))},
    ]
    base_desc = {"type": base}
    if base == "diagonal_normal":
        base_desc["loc"] = _f32(rng, -0.5, 0.5, (d,))
        base_desc["log_scale"] = _f32(rng, -0.3, 0.3, (d,))
    return {"event_shape": list(event_shape), "base": base_desc, "layers": layers}


def write_model(path, model):
    """Writes a flow description as a SwiftFlows model file (format 1.0)."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "swiftflows-model"
        f.attrs["format_version"] = np.array([1, 0], dtype=np.int64)
        f.attrs["event_shape"] = np.array(model["event_shape"], dtype=np.int64)
        base = f.create_group("base")
        base.attrs["type"] = model["base"]["type"]
        for name in ("loc", "log_scale"):
            if name in model["base"]:
                base.create_dataset(name, data=model["base"][name])
        layers = f.create_group("layers")
        layers.attrs["count"] = np.int64(len(model["layers"]))
        for i, layer in enumerate(model["layers"]):
            g = layers.create_group("%04d" % i)
            g.attrs["type"] = layer["type"]
            if layer["type"] in ("affine_coupling", "additive_coupling"):
                g.create_dataset("mask", data=layer["mask"])
                g.attrs["hidden"] = np.array(layer["hidden"], dtype=np.int64)
                g.attrs["activation"] = layer["activation"]
                if layer["type"] == "affine_coupling":
                    g.attrs["clamp"] = np.float64(layer["clamp"])
                for l, (w, b) in enumerate(zip(layer["weights"], layer["biases"])):
                    g.create_dataset("weight_%d" % l, data=w)
                    g.create_dataset("bias_%d" % l, data=b)
            elif layer["type"] == "permutation":
                g.create_dataset("indices", data=layer["indices"])
            elif layer["type"] == "actnorm":
                g.attrs["initialized"] = np.int64(1)
                g.create_dataset("bias", data=layer["bias"])
                g.create_dataset("log_scale", data=layer["log_scale"])
            elif layer["type"] == "lu_linear":
                for name in ("permutation", "sign", "lower", "upper", "log_scale"):
                    g.create_dataset(name, data=layer[name])
            else:
                raise AssertionError(layer["type"])


# ---- independent numpy implementation (float64) -----------------------------------------------

ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
    "tanh": np.tanh,
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
}


def _mlp(layer, h):
    act = ACTIVATIONS[layer["activation"]]
    n = len(layer["weights"])
    for l, (w, b) in enumerate(zip(layer["weights"], layer["biases"])):
        h = h @ w.astype(np.float64).T + b.astype(np.float64)
        if l < n - 1:
            h = act(h)
    return h


def numpy_forward(model, x):
    """(z, log|det J|) for x of shape (N, *event_shape), in float64."""
    shape = model["event_shape"]
    n = x.shape[0]
    d = int(np.prod(shape))
    spatial = d // shape[0]
    z = np.asarray(x, dtype=np.float64).reshape(n, d).copy()
    logdet = np.zeros(n)
    for layer in model["layers"]:
        kind = layer["type"]
        if kind == "actnorm":
            bias = np.repeat(layer["bias"].astype(np.float64), spatial)
            log_scale = np.repeat(layer["log_scale"].astype(np.float64), spatial)
            z = (z + bias) * np.exp(log_scale)
            logdet += spatial * layer["log_scale"].astype(np.float64).sum()
        elif kind == "permutation":
            z = z[:, layer["indices"]]
        elif kind == "lu_linear":
            lower = np.tril(layer["lower"].astype(np.float64), -1) + np.eye(d)
            diag = layer["sign"] * np.exp(layer["log_scale"].astype(np.float64))
            upper = np.triu(layer["upper"].astype(np.float64), 1) + np.diag(diag)
            perm = np.zeros((d, d))
            perm[np.arange(d), layer["permutation"]] = 1.0
            w = perm @ lower @ upper
            z = z @ w.T
            logdet += layer["log_scale"].astype(np.float64).sum()
        else:
            a = np.flatnonzero(layer["mask"] == 1)
            b = np.flatnonzero(layer["mask"] == 0)
            h = _mlp(layer, z[:, a])
            z = z.copy()
            if kind == "additive_coupling":
                z[:, b] = z[:, b] + h
            else:
                t, s = h[:, :len(b)], h[:, len(b):]
                c = layer["clamp"]
                if c > 0:
                    s = c * np.tanh(s / c)
                z[:, b] = z[:, b] * np.exp(s) + t
                logdet += s.sum(axis=1)
    return z.reshape((n,) + tuple(shape)), logdet


def numpy_log_prob(model, x):
    z, logdet = numpy_forward(model, x)
    n = z.shape[0]
    z = z.reshape(n, -1)
    d = z.shape[1]
    base = model["base"]
    if base["type"] == "standard_normal":
        lp = -0.5 * np.sum(z * z, axis=1) - 0.5 * d * LOG_2PI
    else:
        loc = base["loc"].astype(np.float64)
        log_scale = base["log_scale"].astype(np.float64)
        u = (z - loc) / np.exp(log_scale)
        lp = np.sum(-0.5 * u * u - log_scale, axis=1) - 0.5 * d * LOG_2PI
    return lp + logdet


# ---- the tests -------------------------------------------------------------------------------

CASES = [([5], "standard_normal"), ([5], "diagonal_normal"), ([1], "standard_normal"),
         ([1], "diagonal_normal"), ([2, 3], "diagonal_normal"), ([2, 2, 2], "standard_normal")]


@pytest.mark.parametrize("event_shape,base", CASES, ids=lambda v: str(v))
def test_library_matches_numpy_on_a_third_party_file(tmp_path, event_shape, base):
    from swiftflows import Flow  # the library is used only to load and evaluate

    rng = np.random.default_rng(sum(event_shape) * 7 + len(base))
    model = random_flow(rng, event_shape, base)
    path = tmp_path / "third_party.h5"
    write_model(path, model)

    flow = Flow.load(path)
    assert flow.event_shape == tuple(event_shape)
    assert len(flow.spec["layers"]) == len(model["layers"])
    n_params = sum(v.size for layer in model["layers"] for k, v in layer.items()
                   if isinstance(v, np.ndarray) and v.dtype == np.float32)
    n_params += sum(w.size + b.size for layer in model["layers"]
                    for w, b in zip(layer.get("weights", []), layer.get("biases", [])))
    n_params += sum(v.size for v in model["base"].values() if isinstance(v, np.ndarray))
    assert flow.num_parameters == n_params

    x = rng.standard_normal((200,) + tuple(event_shape)).astype(np.float32)
    expected_z, expected_logdet = numpy_forward(model, x)
    expected_lp = numpy_log_prob(model, x)
    assert np.all(np.isfinite(expected_lp))

    np.testing.assert_allclose(flow.log_prob(x), expected_lp, rtol=1e-4, atol=1e-4)
    z, logdet = flow.forward(x)
    np.testing.assert_allclose(z, expected_z, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(logdet, expected_logdet, rtol=1e-4, atol=1e-4)
    # Inverse: judged by its residual in z, and x itself more loosely (it is only recovered to
    # cond(J) times the float32 rounding of z; the parameter ranges keep cond(J) below ~200).
    z32 = expected_z.astype(np.float32)
    x_back, _ = flow.inverse(z32)
    np.testing.assert_allclose(numpy_forward(model, x_back)[0], z32, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(x_back, x, rtol=1e-3, atol=1e-3)

    samples, lp = flow.sample(100, seed=1, return_log_prob=True)
    np.testing.assert_allclose(lp, numpy_log_prob(model, samples), rtol=1e-4, atol=1e-4)


def _network(rng, widths, activation):
    """Random MLP parameters (non-zero last layer) of the given widths, in the _mlp layout."""
    weights = [_f32(rng, -0.5, 0.5, (widths[l + 1], widths[l])) for l in range(len(widths) - 1)]
    biases = [_f32(rng, -0.3, 0.3, (widths[l + 1],)) for l in range(len(widths) - 1)]
    return {"activation": activation, "weights": weights, "biases": biases, "hidden": list(widths[1:-1])}


def _write_network(group, net):
    group.attrs["hidden"] = np.array(net["hidden"], dtype=np.int64)
    group.attrs["activation"] = net["activation"]
    for l, (w, b) in enumerate(zip(net["weights"], net["biases"])):
        group.create_dataset("weight_%d" % l, data=w)
        group.create_dataset("bias_%d" % l, data=b)


@pytest.mark.parametrize("base_hidden", [[], [5]])
def test_a_conditional_base_written_from_the_document(tmp_path, base_hidden):
    """A conditional model (format 1.1) with a standardised, embedded context, a conditional
    affine coupling and the conditional_diagonal_normal base, written from the document only."""
    from swiftflows import Flow

    rng = np.random.default_rng(11 + len(base_hidden))
    d, n_context, e_size = 3, 2, 4
    mean, scale = rng.uniform(-1, 1, n_context), rng.uniform(0.5, 2.0, n_context)
    embedding = _network(rng, [n_context, 5, e_size], "tanh")
    mask = np.array([1, 0, 0], dtype=np.int64)
    coupling = _network(rng, [1 + e_size, 6, 4], "silu")
    base = _network(rng, [e_size] + base_hidden + [2 * d], "elu")
    path = tmp_path / "conditional.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "swiftflows-model"
        f.attrs["format_version"] = np.array([1, 1], dtype=np.int64)
        f.attrs["event_shape"] = np.array([d], dtype=np.int64)
        g = f.create_group("context")
        g.attrs["size"] = np.int64(n_context)
        g.create_dataset("mean", data=mean)
        g.create_dataset("scale", data=scale)
        emb = g.create_group("embedding")
        _write_network(emb, embedding)
        emb.attrs["features"] = np.int64(e_size)
        b = f.create_group("base")
        b.attrs["type"] = "conditional_diagonal_normal"
        _write_network(b, base)
        layers = f.create_group("layers")
        layers.attrs["count"] = np.int64(1)
        layer = layers.create_group("0000")
        layer.attrs["type"] = "affine_coupling"
        layer.create_dataset("mask", data=mask)
        layer.attrs["clamp"] = np.float64(3.0)
        layer.attrs["context_features"] = np.int64(e_size)
        _write_network(layer, coupling)

    def numpy_log_prob(x, c):
        x = x.astype(np.float64)
        e = _mlp(embedding, (c.astype(np.float64) - mean) / scale)
        h = _mlp(coupling, np.concatenate([x[:, [0]], e], axis=1))
        t, s = h[:, :2], 3.0 * np.tanh(h[:, 2:] / 3.0)
        z = x.copy()
        z[:, 1:] = x[:, 1:] * np.exp(s) + t
        theta = _mlp(base, e)
        loc, log_scale = theta[:, :d], theta[:, d:]
        u = (z - loc) / np.exp(log_scale)
        return np.sum(-0.5 * u * u - log_scale, axis=1) - 0.5 * d * LOG_2PI + s.sum(axis=1)

    flow = Flow.load(path)
    assert flow.context_size == n_context
    assert flow.spec["base"] == {"type": "conditional_diagonal_normal", "hidden": base_hidden, "activation": "elu"}
    x = rng.standard_normal((200, d)).astype(np.float32)
    c = rng.standard_normal((200, n_context)).astype(np.float32)
    np.testing.assert_allclose(flow.log_prob(x, context=c), numpy_log_prob(x, c), rtol=1e-4, atol=1e-4)
    samples, lp = flow.sample(200, seed=1, context=c, return_log_prob=True)
    np.testing.assert_allclose(lp, numpy_log_prob(samples, c), rtol=1e-4, atol=1e-4)


# ---- a residual MADE written from the document alone ------------------------------------------

def _residual_made(rng, d, e, h, blocks, activation, direction):
    """An affine_autoregressive layer with nflows' residual MADE (random parameters everywhere,
    masked entries included: the document says they are treated as zero)."""
    out = 2 * d
    layer = {"type": "affine_autoregressive", "order": rng.permutation(d).astype(np.int64),
             "hidden_degrees": rng.integers(0, d, size=h).astype(np.int64), "hidden": [h],
             "activation": activation, "direction": direction, "clamp": 2.5, "residual_blocks": blocks,
             "context_features": e,
             "initial_weight": _f32(rng, -0.5, 0.5, (h, d)), "initial_bias": _f32(rng, -0.3, 0.3, (h,)),
             "final_weight": _f32(rng, -0.3, 0.3, (out, h)), "final_bias": _f32(rng, -0.3, 0.3, (out,))}
    if e > 0:
        layer["context_weight"] = _f32(rng, -0.8, 0.8, (h, e))
        layer["context_bias"] = _f32(rng, -0.3, 0.3, (h,))
    for b in range(blocks):
        for l in range(2):
            layer["block_%d_weight_%d" % (b, l)] = _f32(rng, -0.5, 0.5, (h, h))
            layer["block_%d_bias_%d" % (b, l)] = _f32(rng, -0.3, 0.3, (h,))
        if e > 0:
            layer["block_%d_context_weight" % b] = _f32(rng, -0.8, 0.8, (h, e))
            layer["block_%d_context_bias" % b] = _f32(rng, -0.3, 0.3, (h,))
    return layer


def _write_residual_model(path, d, e, layer):
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "swiftflows-model"
        f.attrs["format_version"] = np.array([1, 1], dtype=np.int64)
        f.attrs["event_shape"] = np.array([d], dtype=np.int64)
        f.create_group("base").attrs["type"] = "standard_normal"
        if e > 0:
            f.create_group("context").attrs["size"] = np.int64(e)
        g = f.create_group("layers")
        g.attrs["count"] = np.int64(1)
        g = g.create_group("0000")
        for key, value in layer.items():
            if isinstance(value, np.ndarray):
                g.create_dataset(key, data=value)
            elif key == "hidden":
                g.attrs[key] = np.array(value, dtype=np.int64)
            elif isinstance(value, str):
                g.attrs[key] = value
            elif isinstance(value, float):
                g.attrs[key] = np.float64(value)
            else:
                g.attrs[key] = np.int64(value)


def _residual_made_parameters(layer, u, e):
    """θ = MADE(u; e) of the document's "Residual MADE", in float64 (u: (N, D), e: (N, E))."""
    d = u.shape[1]
    act = ACTIVATIONS[layer["activation"]]
    order = layer["order"]
    deg_in = order + 1
    deg_h = layer["hidden_degrees"]
    deg_out = np.concatenate([order + 1, order + 1])  # t = θ[0:D], ŝ = θ[D:2D]

    def masked(name, mask):
        return layer[name].astype(np.float64) * mask

    def context(name):
        return e @ layer[name + "_weight"].astype(np.float64).T + layer[name + "_bias"]

    s = u @ masked("initial_weight", deg_h[:, None] >= deg_in[None, :]).T + layer["initial_bias"]
    if e.shape[1] > 0:
        s = s + act(context("context"))
    block_mask = deg_h[:, None] >= deg_h[None, :]
    for b in range(layer["residual_blocks"]):
        t = act(s) @ masked("block_%d_weight_0" % b, block_mask).T + layer["block_%d_bias_0" % b]
        if e.shape[1] > 0:
            t = t + context("block_%d_context" % b)
        t = act(t) @ masked("block_%d_weight_1" % b, block_mask).T + layer["block_%d_bias_1" % b]
        s = s + t
    theta = s @ masked("final_weight", deg_out[:, None] > deg_h[None, :]).T + layer["final_bias"]
    return theta[:, :d], theta[:, d:]


def _residual_forward(layer, x, e):
    """(z, log|det J|) of the layer (MAF: z = P(x); IAF: z = P⁻¹(x), position by position)."""
    d = x.shape[1]
    c = layer["clamp"]

    def scale(s_hat):
        return c * np.tanh(s_hat / c)

    if layer["direction"] == "maf":
        t, s_hat = _residual_made_parameters(layer, x, e)
        s = scale(s_hat)
        return x * np.exp(s) + t, s.sum(axis=1)
    z = np.zeros_like(x)
    for k in range(d):
        i = int(np.flatnonzero(layer["order"] == k)[0])
        t, s_hat = _residual_made_parameters(layer, z, e)
        z[:, i] = (x[:, i] - t[:, i]) * np.exp(-scale(s_hat[:, i]))
    t, s_hat = _residual_made_parameters(layer, z, e)
    return z, -scale(s_hat).sum(axis=1)


@pytest.mark.parametrize("direction", ["maf", "iaf"])
@pytest.mark.parametrize("context", [0, 2])
def test_library_matches_numpy_on_a_third_party_residual_made(tmp_path, direction, context):
    from swiftflows import Flow  # the library is used only to load and evaluate

    d, h, blocks = 4, 9, 2
    rng = np.random.default_rng(11 + context + (direction == "iaf"))
    layer = _residual_made(rng, d, context, h, blocks, "tanh", direction)
    path = tmp_path / "residual.h5"
    _write_residual_model(path, d, context, layer)
    flow = Flow.load(path)
    assert flow.context_size == context
    spec = flow.spec["layers"][0]
    assert spec["residual_blocks"] == blocks and spec["hidden"] == [h]
    x = rng.standard_normal((120, d)).astype(np.float32)
    c = rng.standard_normal((120, context)).astype(np.float32)
    kwargs = {"context": c} if context else {}
    z_expected, ld_expected = _residual_forward(layer, x.astype(np.float64), c.astype(np.float64))
    z, ld = flow.forward(x, **kwargs)
    np.testing.assert_allclose(z, z_expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ld, ld_expected, rtol=1e-4, atol=1e-4)
    lp = -0.5 * np.sum(z_expected ** 2, axis=1) - 0.5 * d * LOG_2PI + ld_expected
    np.testing.assert_allclose(flow.log_prob(x, **kwargs), lp, rtol=1e-4, atol=1e-4)
    back, _ = flow.inverse(z.astype(np.float32), **kwargs)
    np.testing.assert_allclose(back, x, rtol=1e-3, atol=1e-3)
