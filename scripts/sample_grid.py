#!/usr/bin/env python3
"""Draws image samples from a trained SwiftFlows image model into one PNG.

    python scripts/sample_grid.py MODEL.h5 OUT.png [--n 64] [--temperatures 0.7 1.0] [--seed 0]

One 8×8 grid per temperature (Glow's T: the base distribution's standard deviation is scaled by
T), side by side. Samples come out in the model's level space (dequantised levels); they are
floored and clipped to the data's levels for display.
"""

import argparse
import math

import numpy as np

import swiftflows


def levels_of(flow):
    for layer in flow.spec["layers"]:
        if layer["type"] == "dequantize":
            return int(layer["levels"])
    return 256


def grid(images, columns):
    n, c, h, w = images.shape
    rows = math.ceil(n / columns)
    out = np.ones((rows * (h + 1) + 1, columns * (w + 1) + 1, c), dtype=np.float32)
    for i, img in enumerate(images):
        r, k = divmod(i, columns)
        out[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + k * (w + 1):1 + k * (w + 1) + w] = img.transpose(1, 2, 0)
    return out[..., 0] if c == 1 else out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.7, 1.0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flow = swiftflows.Flow.load(args.model)
    if len(flow.event_shape) != 3:
        raise SystemExit(f"{args.model} is not an image model (event shape {flow.event_shape})")
    levels = levels_of(flow)
    fig, axes = plt.subplots(1, len(args.temperatures), figsize=(4.5 * len(args.temperatures), 4.8))
    axes = np.atleast_1d(axes)
    for ax, t in zip(axes, args.temperatures):
        x = flow.sample(args.n, seed=args.seed, temperature=t)
        x = np.clip(np.floor(x), 0, levels - 1) / (levels - 1)
        ax.imshow(grid(x, int(math.ceil(math.sqrt(args.n)))), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"T = {t:g}")
        ax.axis("off")
    fig.suptitle(f"{args.n} samples per temperature from {args.model}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
