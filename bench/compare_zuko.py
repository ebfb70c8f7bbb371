#!/usr/bin/env python3
"""SwiftFlows' autoregressive flows against zuko's, timed interleaved in one run.

MAF: SwiftFlows' ``maf`` preset (``layers`` affine MADE layers, hidden widths 64-64, orders
alternating natural/reversed) against ``zuko.flows.MAF(D, transforms=layers,
hidden_features=(64, 64))`` (the same structure: alternating orders, affine transforms, MADE
conditioners). Both are perturbed by a short training run so that the networks are not at
their zero initialisation; their weights differ (this is a speed comparison; the converter of
the import issue makes them equal). Rows: ``log_prob`` and ``sample`` at batch 65,536, a
training step at batch 512 (zuko: zero_grad, log_prob, backward, Adam; ours: ``fit`` for one
epoch over 512 rows, which includes its per-call overhead; the "marginal step" is fit over 1024
rows minus fit over 512 rows, one step without that overhead), for D = 8 and 64.

Each row alternates zuko and SwiftFlows for ``--repeats`` repeats and prints the median rows/s
and the ratio ours / zuko. Both use the same number of threads.

    .venv-bench/bin/python bench/compare_zuko.py [--dims 8,64] [--layers 5] [--repeats 5]
"""

import argparse
import statistics
import time

import numpy as np

import swiftflows


def timed(fn, min_seconds=0.3):
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", default="8,64")
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    try:
        import torch
        import zuko
    except ImportError:
        print("compare_zuko: torch and zuko are not installed; nothing to compare")
        return
    threads = args.threads or swiftflows.get_num_threads()
    swiftflows.set_num_threads(threads)
    torch.set_num_threads(threads)
    print(f"threads: {threads}; zuko {zuko.__version__}, torch {torch.__version__}")
    print(f"{'model':<12} {'operation':<12} {'batch':>6} {'zuko rows/s':>12} {'ours rows/s':>12} {'ratio':>7}")
    rng = np.random.default_rng(0)
    for d in [int(v) for v in args.dims.split(",")]:
        x_train = rng.normal(size=(4096, d)).astype(np.float32)
        ours = swiftflows.MAF(d, layers=args.layers, hidden=(64, 64), seed=1)
        ours.fit(x_train, epochs=1, batch_size=256, lr=1e-3, validation=0, progress=False)
        theirs = zuko.flows.MAF(d, 0, transforms=args.layers, hidden_features=(64, 64))
        opt = torch.optim.Adam(theirs.parameters(), lr=1e-3)
        xt = torch.from_numpy(x_train)
        for b in range(16):
            loss = -theirs().log_prob(xt[b * 256:(b + 1) * 256]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        big = rng.normal(size=(65536, d)).astype(np.float32)
        big_t = torch.from_numpy(big)
        batch = x_train[:512]
        batch_t = torch.from_numpy(batch)
        double = x_train[:1024]

        def zuko_log_prob():
            with torch.inference_mode():
                theirs().log_prob(big_t)

        def zuko_sample():
            with torch.inference_mode():
                theirs().sample((65536,))

        def zuko_step():
            loss = -theirs().log_prob(batch_t).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        rows = [
            ("log_prob", 65536, zuko_log_prob, lambda: ours.log_prob(big)),
            ("sample", 65536, zuko_sample, lambda: ours.sample(65536, seed=1)),
            ("train_step", 512, zuko_step,
             lambda: ours.fit(batch, epochs=1, batch_size=512, lr=1e-4, validation=0, progress=False)),
        ]
        for name, n, theirs_fn, ours_fn in rows:
            zt, ot, marginal = [], [], []
            for _ in range(args.repeats):
                zt.append(timed(theirs_fn))
                ot.append(timed(ours_fn))
                if name == "train_step":
                    # One step without fit's per-call overhead: fit over 2 batches minus fit over 1.
                    two = timed(lambda: ours.fit(double, epochs=1, batch_size=512, lr=1e-4, validation=0,
                                                 progress=False))
                    marginal.append(two - timed(ours_fn))
            z_rate, o_rate = n / statistics.median(zt), n / statistics.median(ot)
            line = f"{'MAF D=%d' % d:<12} {name:<12} {n:>6} {z_rate:>12.4g} {o_rate:>12.4g} {o_rate / z_rate:>7.2f}"
            if marginal:
                m_rate = n / statistics.median(marginal)
                line += f"   marginal step {m_rate:.4g} rows/s, ratio {m_rate / z_rate:.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
