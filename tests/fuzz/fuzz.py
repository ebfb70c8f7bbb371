"""A mutation fuzzer for the SwiftFlows model loader (issue 8).

    python tests/fuzz/fuzz.py --harness build/bin/fuzz_harness --minutes 30 [--out build/fuzz]

Inputs are mutated copies of the corpus (tests/fuzz/corpus: seed models of every layer type,
checkpoints, files written by h5py alone, and inputs kept by earlier runs). Every input is run by
`fuzz_harness --server`, which loads it in a forked child (path and memory), evaluates and saves
a model that loads, and resumes a checkpoint; crashes (signals), hangs (time limit),
sanitizer reports, inconsistencies and SF_ERR_INTERNAL are saved under OUT/findings with the
harness output. An input whose outcome (status and error message with numbers and names
blanked) was not seen before is kept under OUT/interesting; `--minimize` then copies a small
subset into the corpus.

Mutations:
- bytes: bit flips, random bytes, "interesting" integers (0, ±1, 2^k boundaries, lengths) of 1, 2,
  4 or 8 bytes, truncation, deletion, duplication and insertion of chunks, splices from another
  input;
- structure (with h5py, on files h5py itself wrote or SwiftFlows wrote): attribute values and
  types, dataset shapes and types, deleted and added groups, datasets and attributes, NaN/Inf
  weights, huge dimensions and counts, deep nesting, format version bumps, soft/external links
  (cycles, links outside the file), and the hostile edits of issue 25: datasets with external
  storage (naming another input, a FIFO or a device) or mapped from another file (virtual
  datasets), oversized layer declarations (hidden widths, layer counts and event shapes just
  under the size limits: allocation bombs), unbounded `cnf` solver settings, singular or
  ill-conditioned mixing matrices and out-of-range log-scales;
- special files: now and then the harness is given a FIFO, a device or a directory instead of a
  file (it must answer at once).
The harness child runs with the library's memory limit at --memory-limit MB and is killed when
its resident memory passes --memory-cap MB, so an allocation bomb is a finding ("memory").
SwiftFlows files carry a CRC-32 of the whole file in their user block (docs/model-format.md). A
share of the mutated files gets a fresh, valid checksum ("resealed"), so the HDF5 structures
behind the checksum are fuzzed too, as a hostile file would do.
"""

import argparse
import hashlib
import json
import os
import random
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

from swiftflows.integrity import USER_BLOCK_SIZE as USER_BLOCK, checksum_header, reseal_bytes

try:
    import h5py
except ImportError:  # byte mutations only
    h5py = None

# The checksum block's first line (with the version this library writes).
MAGIC = checksum_header(b"").split(b"\n", 1)[0] + b"\n"

INTERESTING = [0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 511, 512, 1023, 1024,
               4095, 4096, 32767, 32768, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**48,
               2**63 - 1, 2**63, 2**64 - 1, 2**64 - 2]


# ---- the SwiftFlows checksum (docs/model-format.md, "File checksum"), computed by the library ------

def sealed(data):
    """Whether `data` starts like a SwiftFlows file: the checksum block's first line."""
    return len(data) >= USER_BLOCK and data[:len(MAGIC)] == MAGIC


def seal(data):
    """Writes a valid checksum block over the first 512 bytes of `data` (which must have room)."""
    return checksum_header(data) + bytes(data[USER_BLOCK:])


def reseal_if_sealed(data):
    """After a structural edit of a sealed file: a valid checksum again."""
    if not sealed(data):
        return data
    try:
        return reseal_bytes(data)
    except ValueError:  # no HDF5 superblock after the user block
        return data


# ---- byte mutations ------------------------------------------------------------------------------

def mutate_bytes(rng, data, other):
    data = bytearray(data)
    if not data:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    op = rng.randrange(10)
    n = len(data)
    if op == 0:  # bit flips
        for _ in range(rng.choice([1, 1, 1, 2, 4, 8])):
            i = rng.randrange(n)
            data[i] ^= 1 << rng.randrange(8)
    elif op == 1:  # random bytes
        for _ in range(rng.choice([1, 1, 2, 4])):
            data[rng.randrange(n)] = rng.getrandbits(8)
    elif op in (2, 3):  # interesting integers, aligned or not
        size = rng.choice([1, 2, 4, 8])
        value = rng.choice(INTERESTING)
        if rng.random() < 0.3:
            value = (value + rng.choice([-1, 1])) % 2**64
        if rng.random() < 0.5:
            value = min(value, n) if rng.random() < 0.5 else value  # lengths near the file size
        if rng.random() < 0.3:
            value = n + rng.randint(-16, 16)
        raw = (value % 2**(8 * size)).to_bytes(size, "little" if rng.random() < 0.9 else "big")
        i = rng.randrange(max(1, n - size + 1))
        if rng.random() < 0.5:
            i -= i % size
        data[i:i + size] = raw
    elif op == 4:  # truncation
        cut = rng.choice([rng.randrange(n), n - rng.randint(1, min(n, 64)), n // 2])
        del data[max(cut, 0):]
    elif op == 5:  # chunk deletion
        i = rng.randrange(n)
        del data[i:i + rng.randint(1, 64)]
    elif op == 6:  # chunk duplication
        i = rng.randrange(n)
        chunk = data[i:i + rng.randint(1, 256)]
        j = rng.randrange(n)
        data[j:j] = chunk
    elif op == 7:  # insertion of random or repeated bytes
        j = rng.randrange(n)
        count = rng.choice([1, 4, 8, 16, 512])
        data[j:j] = bytes([rng.getrandbits(8)]) * count if rng.random() < 0.5 else os.urandom(count)
    elif op == 8:  # overwrite a chunk with a chunk from elsewhere (same length)
        i, j = rng.randrange(n), rng.randrange(n)
        k = rng.randint(1, 64)
        chunk = data[i:i + k]
        data[j:j + len(chunk)] = chunk
    else:  # splice with another input
        if other:
            i = rng.randrange(n)
            j = rng.randrange(len(other))
            data = data[:i] + other[j:]
    return bytes(data)


# ---- structural mutations (h5py) -------------------------------------------------------------------

NAMES = ["0000", "0001", "0005", "9999", "layers", "base", "training", "weight_0", "bias_0", "weight_9",
         "mask", "indices", "log_scale", "loc", "x", "hidden", "count", "type", "optimizer", "best"]
TYPE_NAMES = ["affine_coupling", "additive_coupling", "spline_coupling", "permutation", "actnorm", "lu_linear",
              "squeeze", "invertible_conv1x1", "conv_affine_coupling", "split", "dequantize", "logit", "scale",
              "cnf", "standard_normal", "diagonal_normal", "conditional_diagonal_normal", "", "glow_step"]


def random_value(rng):
    k = rng.randrange(16)
    if k == 0:
        return np.int64(rng.choice(INTERESTING) % 2**63 * rng.choice([1, -1]))
    if k == 1:
        return np.float64(rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308, -1e-320, 0.5, -1.0, 1e-30]))
    if k == 2:
        return rng.choice(TYPE_NAMES + ["relu", "tanh", "channel", "checkerboard", "dopri5", "euler", "exact",
                                        "hutchinson", "rademacher", "conditional", "standard", "adam", "cosine"])
    if k == 3:
        return "x" * rng.choice([0, 1, 255, 256, 4096, 70000])
    if k == 4:
        return np.array([rng.choice(INTERESTING) % 2**63 for _ in range(rng.randint(0, 9))], dtype=np.int64)
    if k == 5:
        return np.array([rng.choice([1, 2, 3, 4, 8, 16, 0, -1, 2**31]) for _ in range(rng.randint(1, 5))],
                        dtype=np.int64)
    if k == 6:
        return np.uint64(2**64 - rng.randint(1, 3))
    if k == 7:
        return np.int8(rng.randint(-128, 127))
    if k == 8:
        return np.float16(rng.choice([1.0, np.inf, np.nan, 65504.0]))
    if k == 9:
        return np.array([[1, 2], [3, 4]], dtype=np.int64)
    if k == 10:
        return np.array([1.5, np.nan], dtype=np.float32)
    if k == 11:
        return np.bytes_(b"affine_coupling")  # fixed-length ASCII string
    if k == 12:
        return np.int64(rng.randint(-3, 10))
    if k == 13:
        return np.array([], dtype=np.int64)
    if k == 14:
        return "\u00e9\u00e8\u4e2d\U0001F600"
    return np.bool_(rng.random() < 0.5)


def all_objects(f):
    objects = [f]
    f.visititems(lambda name, obj: objects.append(obj))
    return objects


def hostile_edit(rng, f, other_path, fifo_path):
    """One of the hostile edits of issue 25 (external storage, virtual datasets, oversized layers,
    solver limits, invertibility, log-scale ranges)."""
    objects = all_objects(f)
    groups = [o for o in objects if isinstance(o, h5py.Group)]
    datasets = [o for o in objects if isinstance(o, h5py.Dataset)]
    op = rng.randrange(7)
    if op == 0 and datasets:  # values kept in another file: an input, a FIFO, a device
        d = rng.choice(datasets)
        name, shape, dtype = d.name, d.shape, d.dtype
        size = max(1, int(np.prod(shape))) * dtype.itemsize
        source = rng.choice([other_path, fifo_path, "/dev/zero", "/dev/urandom", "missing.bin", "/"])
        del f[name]
        f.create_dataset(name, shape=shape, dtype=dtype, external=[(source, rng.choice([0, 512, 2**40]), size)])
    elif op == 1 and datasets:  # a virtual dataset mapping a dataset of another file (or of this one)
        d = rng.choice(datasets)
        name, shape, dtype = d.name, d.shape, d.dtype
        if not shape:
            return
        del f[name]
        layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
        # Never the FIFO here: h5py may open a virtual dataset's sources itself while it writes the
        # mapping, and opening a FIFO with no writer blocks this driver (a 30-minute run stalled
        # at 23 minutes that way). The library's refusal of FIFO sources is covered by the
        # external-storage edit above and the hostile-*.h5 corpus files.
        layout[...] = h5py.VirtualSource(rng.choice([other_path, "."]), rng.choice(["/base/loc", name]),
                                         shape=shape)
        f.create_virtual_dataset(name, layout)
    elif op == 2:  # oversized layer declarations: just under the size limits
        layered = [g for g in groups if "hidden" in g.attrs] or groups
        g = rng.choice(layered)
        g.attrs["hidden"] = np.array(rng.choice([[16384, 16000], [65536], [8192, 8192, 8192], [1 << 16] * 4,
                                                 [4096] * 64]), dtype=np.int64)
        if rng.random() < 0.3:
            f.attrs["event_shape"] = np.array(rng.choice([[1 << 24], [1 << 23, 2], [4, 1024, 4096]]), dtype=np.int64)
    elif op == 3:  # solver work: tiny steps, huge step limits, long integration times
        g = rng.choice(groups)
        g.attrs["solver"] = rng.choice(["euler", "rk4", "dopri5"])
        g.attrs["step_size"] = np.float64(rng.choice([1e-9, 1e-300, 5e-324, 1e-5]))
        g.attrs["max_steps"] = np.int64(rng.choice([10**9, 2**53, 100000, 100001]))
        if rng.random() < 0.3:
            g.attrs["end_time"] = np.float64(rng.choice([1e300, 1e9, 1e-300]))
        if rng.random() < 0.3:
            g.attrs["rtol"] = g.attrs["atol"] = np.float64(rng.choice([1e-300, 1e-15, 0.0]))
    elif op == 4 and datasets:  # mixing matrices: singular or ill-conditioned weights
        d = rng.choice(datasets)
        if d.dtype.kind == "f" and d.size:
            a = d[...]
            a[...] = rng.choice([0.0, 1.0, 1e20])
            d[...] = a
    elif op == 5:  # log-scales at and past the bound
        scales = [o for o in datasets if o.name.endswith("log_scale")]
        if scales:
            d = rng.choice(scales)
            a = d[...]
            a.flat[rng.randrange(a.size)] = rng.choice([30.0, -30.0, 30.001, 100.0, -1e30, 88.0])
            d[...] = a
    else:  # an external link in place of a dataset or group
        target = rng.choice(objects[1:] or objects)
        if target.name != "/":
            name = target.name
            del f[name]
            f[name] = h5py.ExternalLink(rng.choice([other_path, fifo_path, "/dev/zero"]), "/")


def structural_edit(rng, f, other_path, fifo_path):
    if rng.random() < 0.25:
        return hostile_edit(rng, f, other_path, fifo_path)
    objects = all_objects(f)
    groups = [o for o in objects if isinstance(o, h5py.Group)]
    datasets = [o for o in objects if isinstance(o, h5py.Dataset)]
    op = rng.randrange(14)
    if op == 0:  # set an attribute (existing name or a schema name) to a random value
        obj = rng.choice(objects)
        names = list(obj.attrs.keys()) + NAMES[-4:] + ["format", "format_version", "event_shape", "clamp", "bins",
                                                       "levels", "max_steps", "initialized", "lu", "epochs_completed"]
        obj.attrs[rng.choice(names)] = random_value(rng)
    elif op == 1:  # delete an attribute
        obj = rng.choice(objects)
        if obj.attrs:
            del obj.attrs[rng.choice(list(obj.attrs.keys()))]
    elif op == 2:  # delete an object
        obj = rng.choice(objects[1:] or objects)
        if obj.name != "/":
            del f[obj.name]
    elif op == 3:  # add a group, dataset or link
        g = rng.choice(groups)
        name = rng.choice(NAMES)
        if name in g:
            return
        k = rng.randrange(5)
        if k == 0:
            g.create_group(name)
        elif k == 1:
            g.create_dataset(name, data=np.zeros(rng.choice([0, 1, 3, 8]), dtype=np.float32))
        elif k == 2:
            g[name] = h5py.SoftLink(rng.choice(groups).name)  # may form a cycle
        elif k == 3:
            g[name] = h5py.ExternalLink(other_path, "/")
        else:
            g[name] = rng.choice(objects)  # hard link: cycles, shared objects
    elif op == 4 and datasets:  # replace a dataset: other shape or type
        d = rng.choice(datasets)
        shape = list(d.shape)
        k = rng.randrange(8)
        if k == 0 and shape:
            shape[rng.randrange(len(shape))] += rng.choice([-1, 1])
            data = np.zeros([max(s, 0) for s in shape], dtype=np.float32)
        elif k == 1:
            data = np.zeros(shape[::-1], dtype=np.float32)
        elif k == 2:
            data = np.float32(1.0)
        elif k == 3:
            data = np.zeros(shape, dtype=rng.choice([np.int32, np.float64, np.float16, np.uint8, np.int64]))
        elif k == 4:
            data = np.array(["a"] * max(1, int(np.prod(shape))), dtype=object)
        elif k == 5:
            data = np.zeros(shape + [2], dtype=np.float32)
        elif k == 6:
            data = np.zeros(shape, dtype=[("a", "<f4"), ("b", "<i4")])
        else:
            data = None
        name = d.name
        del f[name]
        if data is None:  # huge dimensions, no data written
            f.create_dataset(name, shape=(rng.choice([2**31, 2**40, 2**62]),), dtype="f4",
                             chunks=(1024,) if rng.random() < 0.5 else None)
        else:
            f.create_dataset(name, data=data)
    elif op == 5 and datasets:  # non-finite or extreme values
        d = rng.choice(datasets)
        if d.size and d.dtype.kind == "f":
            a = d[...]
            a.flat[rng.randrange(a.size)] = rng.choice([np.nan, np.inf, -np.inf, 3e38, 1e-45])
            d[...] = a
        elif d.size and d.dtype.kind in "iu":
            a = d[...]
            a.flat[rng.randrange(a.size)] = rng.choice([-1, 2**62, -2**63, 1, 0, 7])
            d[...] = a
    elif op == 6:  # format version
        f.attrs["format_version"] = np.array(rng.choice([[2, 0], [1, 99], [-1, 0], [1], [1, 0, 0], [0, 9],
                                                        [2**62, 0]]), dtype=np.int64)
    elif op == 7:  # event shape
        f.attrs["event_shape"] = np.array(rng.choice([[2**31], [0], [-1], [1, 1, 1, 1, 1], [2**20, 2**20], [1],
                                                     [3, 2**40], [4, 4, 4, 4]]), dtype=np.int64)
    elif op == 8:  # deep nesting of split containers
        g = rng.choice(groups)
        depth = rng.choice([9, 12, 40])
        for _ in range(depth):
            if "layers" in g:
                break
            g.attrs["type"] = "split"
            g.attrs["count"] = np.int64(1)
            g = g.create_group("layers").create_group("0000") if rng.random() < 0.5 else g.create_group("layers")
    elif op == 9:  # layer counts
        for g in groups:
            if "count" in g.attrs and rng.random() < 0.7:
                g.attrs["count"] = np.int64(rng.choice([-1, 0, 2**31, 2**62, 10001, int(g.attrs["count"]) + 1]))
                break
    elif op == 10:  # hidden widths / hyper-parameters that drive allocation sizes
        for g in rng.sample(groups, len(groups)):
            for key in ("hidden", "bins", "levels", "max_steps", "step_size", "end_time", "rtol", "atol"):
                if key in g.attrs:
                    g.attrs[key] = rng.choice([np.array([2**30], np.int64), np.int64(2**40), np.int64(0),
                                               np.int64(-5), np.float64(1e-300), np.float64(np.inf),
                                               np.array([100000, 100000], np.int64), np.float64(1e9)])
                    return
    elif op == 11 and datasets:  # storage layouts: chunked, compressed, compact
        d = rng.choice(datasets)
        data, name = d[...], d.name
        del f[name]
        if data.shape == ():
            f.create_dataset(name, data=data)
        else:
            kw = rng.choice([{"chunks": True}, {"compression": "gzip"}, {"compression": "lzf"},
                             {"shuffle": True, "chunks": True}, {"fletcher32": True}, {"scaleoffset": 4}])
            try:
                f.create_dataset(name, data=data, **kw)
            except (ValueError, TypeError):
                f.create_dataset(name, data=data)
    elif op == 12:  # swap two layer groups or a dataset between layers
        layer_groups = [g for g in groups if re.fullmatch(r"\d{4,}", g.name.rsplit("/", 1)[-1] or "")]
        if len(layer_groups) >= 2:
            a, b = rng.sample(layer_groups, 2)
            if not a.name.startswith(b.name) and not b.name.startswith(a.name):
                f.move(a.name, a.name + "_tmp")
                f.move(b.name, a.name)
                f.move(a.name + "_tmp", b.name)
    else:  # type attribute of a layer or the base
        typed = [o for o in groups if "type" in o.attrs]
        if typed:
            rng.choice(typed).attrs["type"] = rng.choice(TYPE_NAMES)


def mutate_structure(rng, data, other_path, fifo_path, tmpdir):
    path = os.path.join(tmpdir, "struct.h5")
    with open(path, "wb") as fh:
        fh.write(data)
    try:
        with h5py.File(path, "r+") as f:
            for _ in range(rng.choice([1, 1, 2, 3])):
                structural_edit(rng, f, other_path, fifo_path)
    except Exception:  # noqa: BLE001 - an edit h5py refuses: keep what was written
        pass
    with open(path, "rb") as fh:
        out = fh.read()
    return reseal_if_sealed(out)


# ---- outcomes --------------------------------------------------------------------------------------

def signature(line):
    """(path status, message with numbers, quoted text and paths blanked)."""
    parts = line.split(" ", 2)
    status = parts[0] if parts else "?"
    message = parts[2] if len(parts) > 2 else ""
    message = re.sub(r"'[^']*'", "'P'", message)
    message = re.sub(r'"[^"]*"', '"S"', message)
    message = re.sub(r"0x[0-9a-fA-F]+|\d+", "N", message)
    message = re.sub(r"/[\w/]+", "/G", message)
    return status + " " + message[:160]


class Harness:
    def __init__(self, exe, timeout, env, memory_limit, memory_cap):
        self.exe, self.timeout, self.env = exe, timeout, env
        self.memory = ["--memory-limit", str(memory_limit), "--memory-cap", str(memory_cap)]
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([self.exe, "--server", "--timeout", str(self.timeout)] + self.memory,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=self.env, bufsize=0)
        os.set_blocking(self.proc.stderr.fileno(), False)

    def run(self, path):
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write(path.encode() + b"\n")
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout + 30)
        if not ready:
            raise RuntimeError("fuzz_harness server stopped answering")
        line = self.proc.stdout.readline().decode(errors="replace").rstrip("\n")
        try:
            err = self.proc.stderr.read() or b""
        except (BlockingIOError, TypeError):
            err = b""
        if not line:
            raise RuntimeError("fuzz_harness server exited")
        return line, err.decode(errors="replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--harness", required=True)
    ap.add_argument("--corpus", default=os.path.join(here, "corpus"))
    ap.add_argument("--out", default="build/fuzz")
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--timeout", type=int, default=20, help="seconds per input before it counts as a hang")
    ap.add_argument("--structural", type=float, default=0.3, help="share of structure-aware (h5py) mutations")
    ap.add_argument("--reseal", type=float, default=0.5, help="share of mutated sealed files given a valid checksum")
    ap.add_argument("--minimize", action="store_true", help="copy new interesting inputs into the corpus")
    ap.add_argument("--memory-limit", type=int, default=512, help="the harness child's library memory limit (MB)")
    ap.add_argument("--memory-cap", type=int, default=2048,
                    help="resident memory (MB) at which the harness kills its child: a finding")
    ap.add_argument("--special", type=float, default=0.002, help="share of inputs that are special files")
    args = ap.parse_args()

    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    findings_dir = os.path.join(args.out, "findings")
    interesting_dir = os.path.join(args.out, "interesting")
    for d in (findings_dir, interesting_dir):
        os.makedirs(d, exist_ok=True)
    tmpdir = tempfile.mkdtemp(prefix="sf-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    scratch = os.path.join(tmpdir, "scratch")
    os.makedirs(scratch)
    # Failed allocations return NULL under ASan too (the library turns them into SF_ERR_MEMORY);
    # ASan's own RSS limit stays above the harness's cap as a backstop.
    env = dict(os.environ, FUZZ_SCRATCH=scratch, SWIFTFLOWS_NUM_THREADS="1",
               ASAN_OPTIONS="exitcode=86:detect_leaks=0:allocator_may_return_null=1:hard_rss_limit_mb=%d"
               % (args.memory_cap + 1024),
               UBSAN_OPTIONS="exitcode=86:halt_on_error=1")
    harness = Harness(os.path.abspath(args.harness), args.timeout, env, args.memory_limit, args.memory_cap)
    fifo_path = os.path.join(tmpdir, "fifo.h5")
    os.mkfifo(fifo_path)
    special = [fifo_path, "/dev/zero", "/dev/null", tmpdir]

    corpus = []  # (name, bytes, h5py_safe)
    for name in sorted(os.listdir(args.corpus)):
        with open(os.path.join(args.corpus, name), "rb") as fh:
            corpus.append((name, fh.read(), name.startswith(("seed-", "s-", "hostile-"))))
    if not corpus:
        sys.exit("empty corpus: run tests/fuzz/make_seeds.py first")
    seen = {}
    input_path = os.path.join(tmpdir, "input.h5")
    other_path = os.path.join(tmpdir, "other.h5")
    stats = {"seed": seed, "executions": 0, "structural": 0, "resealed": 0, "loaded": 0, "findings": 0,
             "finding_kinds": {}, "interesting": 0, "statuses": {}}
    for name, data, _ in corpus:  # the corpus itself first
        with open(input_path, "wb") as fh:
            fh.write(data)
        line, _ = harness.run(input_path)
        seen.setdefault(signature(line.split(" ", 2)[2] if line.count(" ") >= 2 else ""), name)

    start = time.time()
    deadline = start + args.minutes * 60
    last_report = start
    while time.time() < deadline:
        if rng.random() < args.special:  # a FIFO, a device or a directory: refused at once
            line, err = harness.run(rng.choice(special))
            stats["executions"] += 1
            kind = line.partition(" ")[0]
            if kind != "ok":
                stats["findings"] += 1
                stats["finding_kinds"][kind] = stats["finding_kinds"].get(kind, 0) + 1
                print("FINDING %s on a special file: %s\n%s" % (kind, line, err[-2000:]), flush=True)
            continue
        name, data, safe = rng.choice(corpus)
        _, other, _ = rng.choice(corpus)
        structural = h5py is not None and safe and rng.random() < args.structural
        if structural:
            with open(other_path, "wb") as fh:
                fh.write(other)
            child = mutate_structure(rng, data, other_path, fifo_path, tmpdir)
            stats["structural"] += 1
            if rng.random() < 0.3:
                child = mutate_bytes(rng, child, other)
        else:
            child = data
            for _ in range(rng.choice([1, 1, 1, 2, 3, 5])):
                child = mutate_bytes(rng, child, other)
        if sealed(data) and rng.random() < args.reseal and len(child) > USER_BLOCK:
            child = seal(child)
            stats["resealed"] += 1
        with open(input_path, "wb") as fh:
            fh.write(child)
        line, err = harness.run(input_path)
        stats["executions"] += 1
        kind, _, rest = line.partition(" ")
        _, _, summary = rest.partition(" ")
        if kind != "ok":
            digest = hashlib.sha1(child).hexdigest()[:16]
            stats["findings"] += 1
            stats["finding_kinds"][kind] = stats["finding_kinds"].get(kind, 0) + 1
            base = os.path.join(findings_dir, "%s-%s" % (kind, digest))
            with open(base + ".h5", "wb") as fh:
                fh.write(child)
            with open(base + ".txt", "w") as fh:
                fh.write("parent: %s\nstructural: %s\noutcome: %s\n%s" % (name, structural, line, err[-20000:]))
            print("FINDING %s: %s (parent %s) -> %s.h5" % (kind, line, name, base), flush=True)
            continue
        status = summary.split(" ", 1)[0]
        stats["statuses"][status] = stats["statuses"].get(status, 0) + 1
        if status == "0":
            stats["loaded"] += 1
        sig = signature(summary)
        if sig not in seen:
            seen[sig] = True
            stats["interesting"] += 1
            digest = hashlib.sha1(child).hexdigest()[:16]
            fname = "%s-%s.h5" % ("s" if structural else "b", digest)
            with open(os.path.join(interesting_dir, fname), "wb") as fh:
                fh.write(child)
            with open(os.path.join(interesting_dir, fname + ".txt"), "w") as fh:
                fh.write("parent: %s\n%s\n" % (name, summary))
            if len(child) <= 64 * 1024:
                corpus.append((fname, child, structural and h5py is not None))
        now = time.time()
        if now - last_report >= 60:
            last_report = now
            print("[%5.1f min] %d executions (%.0f/s), %d loaded, %d structural, %d resealed, %d interesting, "
                  "%d findings" % ((now - start) / 60, stats["executions"], stats["executions"] / (now - start),
                                   stats["loaded"], stats["structural"], stats["resealed"], stats["interesting"],
                                   stats["findings"]), flush=True)
    harness.stop()
    stats["seconds"] = round(time.time() - start, 1)
    stats["executions_per_second"] = round(stats["executions"] / max(stats["seconds"], 1e-9), 1)
    with open(os.path.join(args.out, "summary.json"), "w") as fh:
        json.dump(stats, fh, indent=1, sort_keys=True)
    print(json.dumps(stats, sort_keys=True))
    if args.minimize:
        minimize(interesting_dir, args.corpus)
    shutil.rmtree(tmpdir, ignore_errors=True)
    sys.exit(1 if stats["findings"] else 0)


def minimize(interesting_dir, corpus_dir, budget=2 * 1024 * 1024):
    """Copies interesting inputs (smallest first, one per outcome) into the corpus within `budget` bytes."""
    used = sum(os.path.getsize(os.path.join(corpus_dir, n)) for n in os.listdir(corpus_dir))
    seen = set()
    for n in os.listdir(corpus_dir):
        if os.path.exists(os.path.join(interesting_dir, n + ".txt")):
            seen.add(n)
    candidates = sorted((os.path.getsize(os.path.join(interesting_dir, n)), n)
                        for n in os.listdir(interesting_dir) if n.endswith(".h5"))
    added = 0
    for size, n in candidates:
        if n in seen or used + size > budget:
            continue
        shutil.copy(os.path.join(interesting_dir, n), os.path.join(corpus_dir, n))
        used += size
        added += 1
    print("minimize: %d inputs added to %s (%d bytes in the corpus)" % (added, corpus_dir, used))


if __name__ == "__main__":
    main()
