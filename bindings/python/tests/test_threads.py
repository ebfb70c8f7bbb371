"""Concurrent use of one Flow from several Python threads (ctypes.CDLL releases the GIL)."""

import threading

import numpy as np

import swiftflows
from swiftflows import Flow

from conftest import all_layers_spec, randomized

THREADS = 8


def run_in_threads(target, count=THREADS):
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def worker(k):
        try:
            barrier.wait()
            results[k] = target(k)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_concurrent_calls_match_a_single_thread(rng):
    flow = randomized(Flow.from_spec(all_layers_spec(6), seed=2), seed=3)
    inputs = [rng.standard_normal((700 + 37 * k, 6)) for k in range(THREADS)]

    def work(k):
        out = []
        for rep in range(3):
            out.append(flow.log_prob(inputs[k]))
            out.append(flow.forward(inputs[k]))
            out.append(flow.inverse(inputs[k]))
            out.append(flow.sample(300 + k, seed=k, return_log_prob=True))
        return out

    expected = [work(k) for k in range(THREADS)]  # one thread
    got = run_in_threads(work)
    for k in range(THREADS):
        for e, g in zip(expected[k], got[k]):
            for ea, ga in zip(e if isinstance(e, tuple) else (e,), g if isinstance(g, tuple) else (g,)):
                np.testing.assert_array_equal(ga, ea)


def test_concurrent_saves_and_specs(tmp_path):
    flow = swiftflows.NICE(5, layers=2, hidden=(8,), seed=4)
    expected_spec = flow.spec
    expected_bytes_params = Flow.from_bytes(flow.to_bytes()).log_prob(np.ones((3, 5)))

    def work(k):
        path = tmp_path / ("m%d.h5" % k)
        flow.save(path)
        return flow.spec, Flow.load(path).log_prob(np.ones((3, 5))), Flow.from_bytes(flow.to_bytes()).spec

    for spec, lp, spec2 in run_in_threads(work):
        assert spec == expected_spec and spec2 == expected_spec
        np.testing.assert_array_equal(lp, expected_bytes_params)


def test_close_waits_for_running_calls_and_later_calls_fail_cleanly(rng):
    flow = randomized(swiftflows.RealNVP(16, layers=8, hidden=(64, 64), seed=1), seed=1)
    x = rng.standard_normal((20000, 16))
    started = threading.Event()
    outcome = {}

    def compute():
        started.set()
        try:
            outcome["lp"] = flow.log_prob(x)
        except ValueError as exc:  # the close() may win the race: then a clean error
            outcome["error"] = exc

    t = threading.Thread(target=compute)
    t.start()
    started.wait()
    flow.close()
    t.join()
    assert "lp" in outcome or "closed" in str(outcome["error"])
    if "lp" in outcome:
        assert outcome["lp"].shape == (20000,) and np.all(np.isfinite(outcome["lp"]))
    assert flow.closed
