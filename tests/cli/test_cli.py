"""End-to-end tests of the `swiftflows` command-line tool (built by `make cli`).

Run by `make test-cli` (part of `make test`) with SWIFTFLOWS_CLI pointing at the binary.
"""

import json
import os
import subprocess

import h5py
import numpy as np
import pytest

CLI = os.environ.get("SWIFTFLOWS_CLI", os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin", "swiftflows"))


def run(*args, check=True):
    proc = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def train_args(epochs=4, schedule="cosine"):
    return ["--data", "toy:8gaussians:12000:1", "--layers", "4", "--hidden", "32", "--epochs", epochs,
            "--batch-size", "128", "--lr", "5e-3", "--schedule", schedule, "--seed", "5"]


TRAIN = train_args()


def test_help_and_version():
    out = run("--help").stdout
    for command in ("train", "eval", "sample", "inspect", "toy"):
        assert command in out
    assert run("--version").stdout.strip().count(".") == 2


def test_train_json_progress_eval_sample_inspect(tmp_path):
    model = tmp_path / "m.h5"
    proc = run("train", *TRAIN, "--output", model, "--progress", "json", "--test", "toy:8gaussians:4000:2")
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    epochs = [l for l in lines if l["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    assert all(e["validation_nll"] is not None for e in epochs)
    assert epochs[-1]["train_nll"] < epochs[0]["train_nll"]
    done = lines[-1]
    assert done["event"] == "done" and done["test_nll"] < 3.7  # untrained: about 4.8

    # eval on the same test points gives the same number
    e = json.loads(run("eval", model, "--data", "toy:8gaussians:4000:2", "--json").stdout)
    assert e["rows"] == 4000
    assert e["nll"] == pytest.approx(done["test_nll"], abs=1e-9)
    assert e["bits_per_dim"] == pytest.approx(e["nll"] / (2 * np.log(2)))

    # samples: deterministic per seed, in every format
    for ext in ("csv", "npy", "h5"):
        run("sample", model, "-n", 100, "--seed", 3, "-o", tmp_path / f"s.{ext}")
    s_npy = np.load(tmp_path / "s.npy")
    s_csv = np.loadtxt(tmp_path / "s.csv", delimiter=",", dtype=np.float32)
    with h5py.File(tmp_path / "s.h5", "r") as f:
        s_h5 = f["samples"][...]
    assert s_npy.shape == (100, 2)
    np.testing.assert_array_equal(s_npy, s_h5)
    np.testing.assert_array_equal(s_npy, s_csv)
    stdout_csv = np.loadtxt(run("sample", model, "-n", 100, "--seed", 3).stdout.splitlines(), delimiter=",",
                            dtype=np.float32)
    np.testing.assert_array_equal(stdout_csv, s_npy)

    info = run("inspect", model).stdout
    assert "affine_coupling" in info and "format" in info and "1.0" in info
    spec = json.loads(run("inspect", model, "--spec").stdout)
    assert spec["event_shape"] == [2]


def test_plain_progress_goes_to_stderr_one_line_per_epoch(tmp_path):
    proc = run("train", *TRAIN, "--output", tmp_path / "m.h5", "--progress", "plain")
    epoch_lines = [l for l in proc.stderr.splitlines() if l.startswith("epoch ")]
    assert len(epoch_lines) == 4 and "val" in epoch_lines[0] and "rows/s" in epoch_lines[0]
    assert "saved" in proc.stdout


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path):
    # A constant schedule: a run planned for 2 epochs then extended to 4 takes the same steps as
    # one planned for 4 (a cosine schedule spans the planned total).
    full = run("train", *train_args(schedule="constant"), "--output", tmp_path / "full.h5", "--progress", "json").stdout
    full_epochs = [json.loads(l) for l in full.splitlines() if '"epoch"' in l and '"done"' not in l]
    run("train", *train_args(epochs=2, schedule="constant"), "--output", tmp_path / "half.h5", "--checkpoint", tmp_path / "ckpt.h5", "--progress", "none")
    resumed = run("train", "--data", "toy:8gaussians:12000:1", "--resume", tmp_path / "ckpt.h5", "--epochs", "4",
                  "--output", tmp_path / "resumed.h5", "--progress", "json").stdout
    resumed_epochs = [json.loads(l) for l in resumed.splitlines() if '"epoch"' in l and '"done"' not in l]
    assert [e["epoch"] for e in resumed_epochs] == [3, 4]
    for a, b in zip(full_epochs[2:], resumed_epochs):
        assert a["train_nll"] == b["train_nll"] and a["validation_nll"] == b["validation_nll"]
    with h5py.File(tmp_path / "full.h5", "r") as f, h5py.File(tmp_path / "resumed.h5", "r") as g:
        for name in f["layers"]:
            for key, ds in f["layers"][name].items():
                np.testing.assert_array_equal(ds[...], g["layers"][name][key][...])
    assert "checkpoint" in run("inspect", tmp_path / "ckpt.h5").stdout


def _epoch_events(stdout):
    return [json.loads(l) for l in stdout.splitlines() if '"event": "epoch"' in l or '"event":"epoch"' in l]


def test_resume_after_kill_9_reproduces_the_uninterrupted_run(tmp_path):
    """A run killed with SIGKILL after its first checkpoint, then resumed, ends with exactly the
    losses and parameters of the same run left alone (cosine schedule over the planned total)."""
    args = train_args(epochs=6, schedule="cosine")
    full = run("train", *args, "--output", tmp_path / "full.h5", "--progress", "json").stdout
    full_epochs = _epoch_events(full)
    assert [e["epoch"] for e in full_epochs] == [1, 2, 3, 4, 5, 6]

    ckpt = tmp_path / "ckpt.h5"
    proc = subprocess.Popen([CLI, "train", *map(str, args), "--output", str(tmp_path / "killed.h5"),
                             "--checkpoint", str(ckpt), "--progress", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:  # the checkpoint is written before the epoch event
            if '"epoch"' in line and json.loads(line).get("event") == "epoch":
                break
        proc.kill()  # SIGKILL
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == -9, "the run finished before it could be killed"
    assert not (tmp_path / "killed.h5").exists()
    with h5py.File(ckpt, "r") as f:
        done = int(f["training"].attrs["epochs_completed"])
    assert 1 <= done < 6

    resumed = run("train", "--data", "toy:8gaussians:12000:1", "--resume", ckpt, "--epochs", 6,
                  "--output", tmp_path / "resumed.h5", "--progress", "json").stdout
    resumed_epochs = _epoch_events(resumed)
    assert [e["epoch"] for e in resumed_epochs] == list(range(done + 1, 7))
    for a, b in zip(full_epochs[done:], resumed_epochs):
        assert (a["train_nll"], a["validation_nll"]) == (b["train_nll"], b["validation_nll"])
    assert full_epochs[-1]["train_nll"] == resumed_epochs[-1]["train_nll"]
    with h5py.File(tmp_path / "full.h5", "r") as f, h5py.File(tmp_path / "resumed.h5", "r") as g:
        compared = 0
        for name in f["layers"]:
            for key, ds in f["layers"][name].items():
                np.testing.assert_array_equal(ds[...], g["layers"][name][key][...])
                compared += 1
        assert compared > 0


def test_errors_are_reported_without_crashing(tmp_path):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("1,2\n3\n")
    proc = run("train", "--data", bad_csv, "--output", tmp_path / "m.h5", check=False)
    assert proc.returncode != 0 and "line 2" in proc.stderr
    proc = run("train", "--data", "toy:nosuchset", "--output", tmp_path / "m.h5", check=False)
    assert proc.returncode != 0 and "8gaussians" in proc.stderr
    proc = run("eval", tmp_path / "missing.h5", "--data", "toy:moons", check=False)
    assert proc.returncode != 0 and "missing.h5" in proc.stderr
    proc = run("train", *TRAIN, "--lr", "-1", "--output", tmp_path / "m.h5", check=False)
    assert proc.returncode != 0 and "learning rate" in proc.stderr
    assert not (tmp_path / "m.h5").exists()


def test_special_files_are_refused_at_once(tmp_path):
    """`inspect`, `eval` and `--data` on a FIFO (no writer) or a device answer at once (issue 25):
    they used to block in open(); `--output` onto a FIFO is refused and the FIFO stays."""
    fifo = tmp_path / "fifo.h5"
    os.mkfifo(fifo)
    for args in (("inspect", fifo), ("eval", fifo, "--data", "toy:moons:10"), ("inspect", "/dev/zero"),
                 ("train", "--data", fifo, "--epochs", "1", "--output", tmp_path / "m.h5")):
        proc = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0 and "not a regular file" in proc.stderr, (args, proc.stderr)
    proc = run("train", "--data", "toy:moons:500:1", "--layers", "2", "--hidden", "8", "--epochs", "1", "--output", fifo,
               check=False)
    assert proc.returncode != 0 and "not a regular file" in proc.stderr, proc.stderr
    assert fifo.is_fifo()


def test_conditional_training_eval_and_sampling_with_context_sources(tmp_path):
    rng = np.random.default_rng(0)
    c = rng.uniform(-2, 2, size=(6000, 1)).astype(np.float32)
    x = (np.concatenate([c, -c], axis=1) + 0.2 * rng.normal(size=(6000, 2))).astype(np.float32)
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"] = x[:5000]
        f["c"] = c[:5000]
        f["x_test"] = x[5000:]
        f["c_test"] = c[5000:]
    data = tmp_path / "data.h5"
    model = tmp_path / "maf.h5"
    done = json.loads(run("train", "--data", f"{data}:/x", "--context", f"{data}:/c", "--preset", "maf", "--layers", "3",
                          "--hidden", "32,32", "--epochs", "6", "--batch-size", "128", "--lr", "5e-3",
                          "--test", f"{data}:/x_test", "--test-context", f"{data}:/c_test", "--output", model,
                          "--progress", "json").stdout.splitlines()[-1])
    # The context carries the mean: the conditional NLL beats any model of x alone (about 2.9 nats).
    assert done["test_nll"] < 0.5, done
    assert "context         1 values per row" in run("inspect", model).stdout
    ev = json.loads(run("eval", model, "--data", f"{data}:/x_test", "--context", f"{data}:/c_test", "--json").stdout)
    assert abs(ev["nll"] - done["test_nll"]) < 1e-9
    # Refused: a conditional model without a context, mismatched rows.
    assert "give --context" in run("eval", model, "--data", f"{data}:/x_test", check=False).stderr
    assert "rows" in run("eval", model, "--data", f"{data}:/x_test", "--context", f"{data}:/c", check=False).stderr
    out = tmp_path / "s.npy"
    run("sample", model, "-n", "2000", "--seed", "3", "--context", "1.5", "-o", out)
    s = np.load(out)
    assert s.shape == (2000, 2) and abs(s[:, 0].mean() - 1.5) < 0.15 and abs(s[:, 1].mean() + 1.5) < 0.15
    plain = tmp_path / "plain.h5"
    run("train", *train_args(epochs=1), "--output", plain, "--progress", "none")
    assert "unconditional" in run("sample", plain, "--context", "1", check=False).stderr


def test_a_preset_with_a_conditional_base(tmp_path):
    rng = np.random.default_rng(1)
    c = rng.uniform(-2, 2, size=(4000, 1)).astype(np.float32)
    x = (np.concatenate([c, -c], axis=1) + 0.2 * rng.normal(size=(4000, 2))).astype(np.float32)
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x"], f["c"] = x[:3000], c[:3000]
        f["x_test"], f["c_test"] = x[3000:], c[3000:]
    data = tmp_path / "data.h5"
    model = tmp_path / "maf.h5"
    done = json.loads(run("train", "--data", f"{data}:/x", "--context", f"{data}:/c", "--preset", "maf", "--layers", "1",
                          "--hidden", "16", "--base", "conditional_diagonal_normal", "--epochs", "8", "--batch-size", "100",
                          "--lr", "1e-2", "--test", f"{data}:/x_test", "--test-context", f"{data}:/c_test",
                          "--output", model, "--progress", "json").stdout.splitlines()[-1])
    # x | c = (c, -c) + N(0, 0.2² I): the base's mean follows c; the true conditional NLL is -0.38 nats.
    assert done["test_nll"] < 0.0, done
    assert "base            conditional_diagonal_normal hidden=[] activation=\"relu\"" in run("inspect", model).stdout
    with h5py.File(model, "r") as f:
        assert f["base"].attrs["type"] == "conditional_diagonal_normal" and f["base/weight_0"].shape == (4, 1)
    refused = run("train", "--data", f"{data}:/x", "--preset", "maf", "--base", "conditional_diagonal_normal",
                  "--epochs", "1", "--output", tmp_path / "bad.h5", check=False)
    assert refused.returncode != 0 and "context" in refused.stderr


def test_autoregressive_presets_with_residual_blocks(tmp_path):
    model = tmp_path / "nsf.h5"
    run("train", "--data", "toy:moons:3000:1", "--preset", "nsf", "--autoregressive", "--residual-blocks", "2",
        "--layers", "2", "--hidden", "16,16", "--bins", "4", "--epochs", "1", "--batch-size", "256", "--output", model,
        "--progress", "none")
    out = run("inspect", model).stdout
    assert out.count("spline_autoregressive") == 2 and out.count("residual_blocks=2") == 2 and "hidden=[16]" in out
    with h5py.File(model, "r") as f:
        assert f["layers/0001/block_1_weight_1"].shape == (16, 16)
    s = tmp_path / "s.npy"
    run("sample", model, "-n", "100", "--seed", "1", "-o", s)
    assert np.all(np.isfinite(np.load(s)))
    proc = run("train", *train_args(epochs=1), "--preset", "maf", "--hidden", "16,8", "--residual-blocks", "1",
               "--output", tmp_path / "m.h5", check=False)
    assert proc.returncode != 0 and "equal hidden widths" in proc.stderr
    proc = run("train", *train_args(epochs=1), "--residual-blocks", "1", "--output", tmp_path / "r.h5", check=False)
    assert proc.returncode != 0 and "residual_blocks" in proc.stderr
