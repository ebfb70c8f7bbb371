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

Glow is a hook until the image flows exist. Exits 0 with a message when torch is not installed.

    .venv-bench/bin/python bench/compare_torch.py [--quick] [--threads N] [--dims 2,8,64] [--json]
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

def row_record(dim, op, batch, torch_rates, ours_rates):
    """One table row: medians and bests (max over repeats) of both sides and their ratios."""
    t_med, o_med = statistics.median(torch_rates), statistics.median(ours_rates)
    t_best, o_best = max(torch_rates), max(ours_rates)
    return {"model": "RealNVP", "dim": dim, "operation": op, "batch": batch,
            "torch_rows_per_second": t_med, "ours_rows_per_second": o_med, "ratio": o_med / t_med,
            "torch_best_rows_per_second": t_best, "ours_best_rows_per_second": o_best,
            "best_ratio": o_best / t_best,
            "torch_rates": torch_rates, "ours_rates": ours_rates}


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

    rows = []
    with torch.inference_mode():
        for batch in batches:
            x_np = correlated_gaussian(batch, dim, seed=13)
            x_t = torch.from_numpy(x_np)
            seeds = iter(range(1, 1 << 62))
            cases = [
                ("log_prob", lambda: model.log_prob(x_t), lambda: flow.log_prob(x_np)),
                ("sample", lambda: model.sample(batch), lambda: flow.sample(batch, seed=next(seeds))),
            ]
            for op, torch_fn, ours_fn in cases:
                t, o = interleaved([torch_fn, ours_fn], [batch, batch], repeats, target)
                rows.append(row_record(dim, op, batch, t, o))

    # Training step at batch 512.
    x_np = correlated_gaussian(TRAIN_BATCH, dim, seed=17)
    x_t = torch.from_numpy(x_np)
    x2_np = np.concatenate([x_np, correlated_gaussian(TRAIN_BATCH, dim, seed=19)])
    optimizer = torch.optim.Adam(model.parameters(), lr=TRAIN_LR)

    def torch_step():
        optimizer.zero_grad(set_to_none=True)
        loss = -model.log_prob(x_t).mean()
        loss.backward()
        optimizer.step()

    def fit(x):
        flow.fit(x, epochs=1, batch_size=TRAIN_BATCH, lr=TRAIN_LR, validation=0, seed=0, progress=False)

    t, one, two = interleaved([torch_step, lambda: fit(x_np), lambda: fit(x2_np)],
                              [TRAIN_BATCH, TRAIN_BATCH, 2 * TRAIN_BATCH], repeats, target)
    # Seconds per call from the per-repeat medians; marginal = one more step.
    sec_one = TRAIN_BATCH / statistics.median(one)
    sec_two = 2 * TRAIN_BATCH / statistics.median(two)
    marginal = sec_two - sec_one
    record = row_record(dim, "train_step", TRAIN_BATCH, t, one)
    record.update({
        "ours_marginal_step_rows_per_second": TRAIN_BATCH / marginal if marginal > 0 else None,
        "marginal_ratio": (TRAIN_BATCH / marginal) / record["torch_rows_per_second"] if marginal > 0 else None,
        "ours_fit_overhead_seconds": sec_one - marginal if marginal > 0 else None,
    })
    rows.append(record)
    flow.close()
    return {"dim": dim, "same_weights": same_weights, "max_abs_log_prob_difference": max_diff, "rows": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 short repeats, batches 1 and 256 only")
    parser.add_argument("--threads", type=int, default=None, help="threads for both libraries")
    parser.add_argument("--dims", default="2,8,64", help="comma-separated dimensions (default 2,8,64)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 7; 3 with --quick)")
    parser.add_argument("--repeat-seconds", type=float, default=None, help="minimum seconds per repeat (0.1; 0.02 quick)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)

    if torch is None:
        print("compare_torch: PyTorch is not installed; skipping the comparison "
              "(make bench-torch creates .venv-bench with torch).")
        return 0

    if args.threads is not None:
        swiftflows.set_num_threads(args.threads)
    threads = swiftflows.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dims = [int(d) for d in args.dims.split(",") if d.strip()]
    repeats = args.repeats or (3 if args.quick else 7)
    target = args.repeat_seconds or (0.02 if args.quick else 0.1)
    batches = INFERENCE_BATCHES[:2] if args.quick else INFERENCE_BATCHES

    results = [compare_realnvp(dim, repeats, target, batches) for dim in dims]
    glow = "Glow: not available yet (image flows issue)"
    info = {"torch": torch.__version__, "swiftflows_library": swiftflows.library_version(),
            "library_path": str(swiftflows.library_path), "threads": threads, "repeats": repeats,
            "repeat_seconds": target}
    if args.json:
        print(json.dumps({**info, "realnvp": results, "glow": None, "glow_note": glow}, indent=2))
        return 0

    print("SwiftFlows (Python package, library %s) vs plain PyTorch %s, %d threads each"
          % (info["swiftflows_library"], info["torch"], threads))
    print("Interleaved repeats (torch, ours, torch, ours, ...): %d per row, each >= %.2f s; median rows/s."
          % (repeats, target))
    print("ratio = ours / torch rows/s (> 1: SwiftFlows faster).\n")
    for r in results:
        if r["same_weights"]:
            print("RealNVP D=%d: weights copied into PyTorch; max |log p difference| on 1000 rows = %.2e"
                  % (r["dim"], r["max_abs_log_prob_difference"]))
        else:
            print("RealNVP D=%d: h5py missing, PyTorch keeps its own random weights (same architecture and cost)"
                  % r["dim"])
    print()
    print("%-13s %-10s %6s %12s %12s %8s %10s %14s %8s" % (
        "model", "operation", "batch", "torch rows/s", "ours rows/s", "ratio", "best ratio", "marginal step",
        "m. ratio"))
    for r in results:
        for row in r["rows"]:
            line = "%-13s %-10s %6d %12s %12s %8.2f %10.2f" % (
                "RealNVP D=%d" % row["dim"], row["operation"], row["batch"], fmt_rate(row["torch_rows_per_second"]),
                fmt_rate(row["ours_rows_per_second"]), row["ratio"], row["best_ratio"])
            if row["operation"] == "train_step" and row.get("ours_marginal_step_rows_per_second"):
                line += " %14s %8.2f" % (fmt_rate(row["ours_marginal_step_rows_per_second"]), row["marginal_ratio"])
            print(line)
        print()
    print("rows/s: medians over the repeats; ratio = ours / torch of the medians; best ratio = of the fastest repeats")
    print("(less sensitive to other load on a shared machine).")
    print("train_step: torch = zero_grad + forward + backward + Adam on 512 rows; ours = Flow.fit for one epoch over")
    print("512 rows (one Adam step) including fit's per-call overhead (options, data copy and finiteness check,")
    print("shuffle, epoch report); 'marginal step' = fit over 1024 rows minus fit over 512 rows, i.e. one step")
    print("without that overhead, and m. ratio its rate over torch's.")
    overheads = ["D=%d %.2f ms" % (row["dim"], 1e3 * row["ours_fit_overhead_seconds"]) for r in results
                 for row in r["rows"] if row.get("ours_fit_overhead_seconds") is not None]
    if overheads:
        print("Estimated fit overhead per call (1-step fit time minus marginal step): %s." % ", ".join(overheads))
    print()
    print(glow)
    return 0


if __name__ == "__main__":
    sys.exit(main())
