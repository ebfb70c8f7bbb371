#!/usr/bin/env python3
"""Batch-1 latency of the SwiftFlows Python package (``Flow.log_prob`` and ``Flow.sample``).

The models are the benchmark's RealNVPs (8 affine couplings, conditioner MLP D/2 -> 64 -> 64 -> D
with ReLU, soft clamp 5) at D = 2, 8 and 64, perturbed away from the identity initialisation by
two epochs of ``fit`` (Adam, learning rate 5e-3, batch 256) on 2048 rows of a correlated Gaussian.

Timing is timeit-style: ``timeit.Timer.autorange`` picks a loop count that takes at least 0.2 s,
then ``repeat`` loops are timed (after one discarded warm-up loop) and the per-call time of each
loop is recorded; the table shows the median, minimum and maximum over loops, in microseconds.
Each call evaluates one sample: ``flow.log_prob(x)`` with ``x`` of shape ``(1, D)`` and
``flow.sample(1, seed=...)``. The C column repeats the measurement on the raw ctypes call
(``lib.sf_log_prob`` / ``lib.sf_sample`` with preallocated buffers), so the difference is the
package's own per-call overhead (argument checking, array conversion, output allocation).

    .venv/bin/python bench/python_latency.py [--quick] [--threads N] [--json]

The library is found as the package finds it (``SWIFTFLOWS_LIBRARY``, else the package copy,
else the repository's build/lib).
"""

import argparse
import json
import statistics
import sys
import timeit

import numpy as np

import swiftflows
from swiftflows._native import lib

DIMENSIONS = (2, 8, 64)


def correlated_gaussian(rows, dim, seed):
    """Rows of the benchmark's correlated Gaussian: feature j is mu_j + sigma_j e_j + 0.5 e_{j-1}."""
    shape = np.random.default_rng(0xDA7A0000 + dim)
    mu = shape.uniform(-1, 1, dim)
    sigma = shape.uniform(0.5, 1.5, dim)
    e = np.random.default_rng(seed).standard_normal((rows, dim))
    previous = np.concatenate([np.zeros((rows, 1)), e[:, :-1]], axis=1)
    return (mu + sigma * e + 0.5 * previous).astype(np.float32)


def make_model(dim):
    """The D-dimensional benchmark RealNVP, perturbed by a short training run."""
    flow = swiftflows.RealNVP(dim, layers=8, hidden=(64, 64), activation="relu", seed=1)
    flow.fit(correlated_gaussian(2048, dim, seed=7), epochs=2, batch_size=256, lr=5e-3, validation=0, seed=3,
             progress=False)
    return flow


def time_per_call(stmt, repeat, min_seconds):
    """Seconds per call of ``stmt`` for each of ``repeat`` loops (timeit-style, after a warm-up loop)."""
    timer = timeit.Timer(stmt)
    number, elapsed = 1, 0.0
    while True:  # timeit.Timer.autorange with a configurable target
        elapsed = timer.timeit(number)
        if elapsed >= min_seconds:
            break
        number = max(number * 2, int(number * min_seconds / max(elapsed, 1e-9) * 1.1))
    timer.timeit(number)  # warm-up loop
    return [t / number for t in timer.repeat(repeat=repeat, number=number)], number


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 short loops instead of 7 (smoke test)")
    parser.add_argument("--threads", type=int, default=None, help="swiftflows.set_num_threads(N) first")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.threads is not None:
        swiftflows.set_num_threads(args.threads)
    repeat, min_seconds = (3, 0.05) if args.quick else (7, 0.2)

    rows = []
    for dim in DIMENSIONS:
        flow = make_model(dim)
        x = correlated_gaussian(1, dim, seed=13)
        handle = flow._ptr  # the raw sf_model*, for the C-call column
        x_ptr = x.ctypes.data_as(swiftflows._native.float_ptr)
        lp = np.empty(1, dtype=np.float64)
        lp_ptr = lp.ctypes.data_as(swiftflows._native.double_ptr)
        out = np.empty((1, dim), dtype=np.float32)
        out_ptr = out.ctypes.data_as(swiftflows._native.float_ptr)
        cases = [
            ("log_prob", lambda: flow.log_prob(x), lambda: lib.sf_log_prob(handle, x_ptr, 1, lp_ptr)),
            ("sample", lambda: flow.sample(1, seed=5), lambda: lib.sf_sample(handle, 1, 5, out_ptr, None)),
        ]
        for name, package_call, raw_call in cases:
            package_times, package_loops = time_per_call(package_call, repeat, min_seconds)
            raw_times, _ = time_per_call(raw_call, repeat, min_seconds)
            rows.append({
                "model": "RealNVP D=%d" % dim, "dim": dim, "operation": name, "batch": 1,
                "package_us": {"median": statistics.median(package_times) * 1e6, "min": min(package_times) * 1e6,
                               "max": max(package_times) * 1e6},
                "ctypes_call_us": {"median": statistics.median(raw_times) * 1e6, "min": min(raw_times) * 1e6,
                                   "max": max(raw_times) * 1e6},
                "loops": repeat, "calls_per_loop": package_loops,
            })
        flow.close()

    info = {"library": str(swiftflows.library_path), "library_version": swiftflows.library_version(),
            "threads": swiftflows.get_num_threads(), "python": sys.version.split()[0], "numpy": np.__version__}
    if args.json:
        print(json.dumps({**info, "rows": rows}, indent=2))
        return 0
    print("SwiftFlows Python package, batch-1 latency (library %s, %s; %d threads; Python %s, numpy %s)"
          % (info["library_version"], info["library"], info["threads"], info["python"], info["numpy"]))
    print("Per-call time over %d timeit loops after a warm-up loop; median (min, max) in microseconds." % repeat)
    print("'package' = flow.log_prob(x[1, D]) / flow.sample(1); 'ctypes call' = the bare lib.sf_* call.\n")
    print("%-14s %-9s %24s %24s %10s" % ("model", "operation", "package us", "ctypes call us", "overhead"))
    for r in rows:
        p, c = r["package_us"], r["ctypes_call_us"]
        print("%-14s %-9s %8.2f (%6.2f, %6.2f) %8.2f (%6.2f, %6.2f) %8.2f us"
              % (r["model"], r["operation"], p["median"], p["min"], p["max"], c["median"], c["min"], c["max"],
                 p["median"] - c["median"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
