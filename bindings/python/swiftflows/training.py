"""Training support for :meth:`swiftflows.Flow.fit` and :meth:`swiftflows.Flow.resume`.

The training loop itself runs in libswiftflows (``sf_train`` / ``sf_train_resume``, see
include/swiftflows.h, "Training"); this module holds the Python side of it:

- :class:`EpochReport`, one finished epoch (what ``fit`` returns a list of);
- :class:`TrainingCancelled`, raised when a progress callback asks to stop;
- the progress displays :class:`TextProgressBar` and :class:`TqdmProgressBar` (both are plain
  callables of a progress event, so they can also be passed as ``progress=``);
- the bridge between a Python progress callable and the C callback, which guarantees that no
  Python exception ever propagates into the library: an exception raised while handling an
  event (including ``KeyboardInterrupt`` from Ctrl-C) cancels training and is re-raised once
  the C call has returned.

Progress events are dicts with the keys ``kind`` (``"batch"``, ``"skipped"``, ``"epoch"`` or
``"stopped"``), ``epoch``, ``batch``, ``batches_per_epoch``, ``best_epoch``, ``loss``,
``samples_per_second``, ``elapsed_seconds``, ``report`` and ``message``; the keys that do not
apply to an event's kind are ``None``:

- ``"batch"`` (after every optimisation step): ``epoch``, ``batch`` (1-based within the epoch),
  ``batches_per_epoch``, ``loss`` (the minibatch's mean NLL in nats), ``samples_per_second``
  (training rows per second so far in the epoch), ``elapsed_seconds`` (since the run started);
- ``"skipped"`` (a step skipped for a non-finite loss or gradient, or undone because it would
  make a parameter non-finite or leave its range): ``epoch``, ``batch``, ``message`` (the
  reason);
- ``"epoch"`` (an epoch finished): ``epoch``, ``elapsed_seconds`` and ``report``, the
  :meth:`EpochReport.as_dict` of the epoch;
- ``"stopped"`` (early stopping ends the run): ``epoch`` and ``best_epoch``.
"""

import contextlib
import ctypes
import dataclasses
import math
import operator
import signal
import sys
import threading
import warnings

from ._native import OPTIMIZERS, PROGRESS_KINDS, SCHEDULES, ProgressFn, TrainOptionsStruct, lib
from .errors import SwiftFlowsError

__all__ = ["EpochReport", "TrainingCancelled", "TextProgressBar", "TqdmProgressBar", "default_progress_bar",
           "EVENT_KINDS", "OPTIMIZER_NAMES", "SCHEDULE_NAMES"]

#: The ``kind`` values of progress events.
EVENT_KINDS = ("batch", "skipped", "epoch", "stopped")
#: Accepted ``optimizer`` names.
OPTIMIZER_NAMES = tuple(OPTIMIZERS)
#: Accepted ``schedule`` names.
SCHEDULE_NAMES = tuple(SCHEDULES)

_UINT32_MAX = 2**32 - 1
_SF_ERR_CANCELLED = 10


# ---- results ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EpochReport:
    """One finished training epoch (``sf_epoch_report``).

    Attributes:
        epoch: 1-based epoch number (counted from the start of the run, also when resumed).
        train_nll: mean negative log-likelihood (nats) of the epoch's minibatches, each measured
            before its step.
        validation_nll: mean NLL (nats) on the validation rows after the epoch; ``None`` without
            validation rows.
        learning_rate: the learning rate of the epoch's last step.
        skipped_steps: steps skipped because the loss or a gradient was not finite.
        samples_per_second: training rows per second over the epoch.
        elapsed_seconds: seconds since the run (or the resumed run) started.
        improved: whether the validation NLL improved on the best so far.
    """

    epoch: int
    train_nll: float
    validation_nll: "float | None"
    learning_rate: float
    skipped_steps: int
    samples_per_second: float
    elapsed_seconds: float
    improved: bool

    @classmethod
    def from_struct(cls, s):
        """The report held in an :class:`~swiftflows._native.EpochReportStruct`."""
        validation = float(s.validation_nll)
        return cls(epoch=int(s.epoch), train_nll=float(s.train_nll),
                   validation_nll=None if math.isnan(validation) else validation,
                   learning_rate=float(s.learning_rate), skipped_steps=int(s.skipped_steps),
                   samples_per_second=float(s.samples_per_second), elapsed_seconds=float(s.elapsed_seconds),
                   improved=bool(s.improved))

    def as_dict(self):
        """The report as a plain dict (keys as the attributes)."""
        return dataclasses.asdict(self)


class TrainingCancelled(SwiftFlowsError):
    """Training stopped because the progress callback returned a true value
    (``SF_ERR_CANCELLED``). The model keeps the parameters of its last step and stays usable.

    Attributes (besides those of :class:`SwiftFlowsError`):
        history: the :class:`EpochReport` of every epoch finished before the cancellation.
    """

    def __init__(self, status, message, function=None, history=()):
        super().__init__(status, message, function)
        self.history = list(history)

    def __reduce__(self):
        return (type(self), (self.status, self.message, self.function, self.history))


# ---- options ------------------------------------------------------------------------------------

def _uint(value, name, maximum=_UINT32_MAX):
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError("%s must be an integer, got %s" % (name, type(value).__name__)) from None
    if not 0 <= value <= maximum:
        raise ValueError("%s must lie in [0, %d], got %d" % (name, maximum, value))
    return value


def _real(value, name):
    if isinstance(value, (str, bytes)):
        raise TypeError("%s must be a real number, got %s" % (name, type(value).__name__))
    try:
        return float(value)
    except TypeError:
        raise TypeError("%s must be a real number, got %s" % (name, type(value).__name__)) from None


def _choice(value, name, table):
    key = value.lower() if isinstance(value, str) else value
    if key not in table:
        raise ValueError("unknown %s %r; choose one of %s" % (name, value, ", ".join(repr(k) for k in table)))
    return table[key]


def make_options(*, epochs, batch_size, lr, validation_fraction, seed, optimizer, weight_decay, clip_norm,
                 schedule, warmup, min_lr_factor, patience, restore_best, checkpoint, momentum, betas, eps,
                 step_size, gamma, min_delta):
    """An ``sf_train_options`` from the library's defaults and the given values.

    Python types and the ranges of the C field types are checked here (``TypeError`` /
    ``ValueError``); everything else (e.g. ``lr > 0``, ``epochs >= 1``) is checked by the library,
    which raises :class:`SwiftFlowsError` (``SF_ERR_INVALID_ARGUMENT``) with a message.
    ``checkpoint`` must already be encoded (bytes or None); ``seed`` already checked.
    """
    o = TrainOptionsStruct()
    lib.sf_train_options_init(ctypes.byref(o))
    o.epochs = _uint(epochs, "epochs")
    o.batch_size = _uint(batch_size, "batch_size")
    o.optimizer = _choice(optimizer, "optimizer", OPTIMIZERS)
    o.learning_rate = _real(lr, "lr")
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError):
        raise TypeError("betas must be a pair of numbers, got %r" % (betas,)) from None
    o.beta1 = _real(beta1, "betas[0]")
    o.beta2 = _real(beta2, "betas[1]")
    o.epsilon = _real(eps, "eps")
    o.weight_decay = _real(weight_decay, "weight_decay")
    o.momentum = _real(momentum, "momentum")
    o.clip_norm = 0.0 if clip_norm is None else _real(clip_norm, "clip_norm")
    o.schedule = _choice(schedule, "schedule", SCHEDULES)
    o.warmup_steps = _uint(warmup, "warmup")
    o.min_lr_factor = _real(min_lr_factor, "min_lr_factor")
    o.step_size = _uint(step_size, "step_size")
    o.gamma = _real(gamma, "gamma")
    o.validation_fraction = _real(validation_fraction, "validation")
    o.patience = _uint(patience, "patience")
    o.min_delta = _real(min_delta, "min_delta")
    o.restore_best = 1 if restore_best else 0
    o.seed = seed
    o.checkpoint_path = checkpoint
    return o


# ---- progress events and the C callback ----------------------------------------------------------

def _event(p):
    """A progress event dict from an ``sf_progress`` (see the module documentation)."""
    kind = PROGRESS_KINDS.get(p.kind, "unknown")
    event = {"kind": kind, "epoch": int(p.epoch), "batch": None, "batches_per_epoch": None, "best_epoch": None,
             "loss": None, "samples_per_second": None, "elapsed_seconds": None, "report": None, "message": None}
    if kind == "batch":
        event.update(batch=int(p.batch), batches_per_epoch=int(p.batches_per_epoch), loss=float(p.loss),
                     samples_per_second=float(p.samples_per_second), elapsed_seconds=float(p.elapsed_seconds))
    elif kind == "skipped":
        raw = p.message
        event.update(batch=int(p.batch), message=raw.decode("utf-8", "replace") if raw else "")
    elif kind == "epoch":
        event["elapsed_seconds"] = float(p.elapsed_seconds)
        if p.report:
            event["report"] = EpochReport.from_struct(p.report.contents).as_dict()
    elif kind == "stopped":
        event["best_epoch"] = int(p.best_epoch)
    return event


class ProgressBridge:
    """The C progress callback of one training call.

    Forwards events to ``callback`` (a callable of an event dict, or None) and collects the
    epoch reports it sees. The callback cancels training by returning a true value. Any
    exception raised while handling an event (by the callback, or a ``KeyboardInterrupt``
    delivered while Python code runs here) is stored in :attr:`error` and cancels training;
    no exception ever reaches the library. The bridge is installed even without a callback so
    that Ctrl-C stops a run at the next step instead of at its end.
    """

    def __init__(self, callback=None):
        self.callback = callback
        self.error = None
        self.requested_stop = False
        self.epoch_reports = []
        self.c_function = ProgressFn(self._on_progress)

    def _on_progress(self, progress, user_data):
        try:
            if self.error is not None or self.requested_stop:
                return 1
            event = _event(progress.contents)
            if event["report"] is not None:
                self.epoch_reports.append(EpochReport(**event["report"]))
            if self.callback is not None and self.callback(event):
                self.requested_stop = True
                return 1
            return 0
        except BaseException as exc:  # noqa: B902 - must not propagate into C (KeyboardInterrupt included)
            self.error = exc
            return 1


def collect_history(buffer, count, bridge):
    """The full history: ``count`` epochs, from ``buffer`` (an array of EpochReportStruct)
    where it held them, else from the reports the bridge saw during the call."""
    capacity = len(buffer)
    history = [EpochReport.from_struct(buffer[i]) for i in range(min(count, capacity))]
    if count > capacity:
        seen = {r.epoch: r for r in bridge.epoch_reports}
        missing = [epoch for epoch in range(capacity + 1, count + 1) if epoch not in seen]
        history.extend(seen[epoch] for epoch in range(capacity + 1, count + 1) if epoch in seen)
        if missing:  # pragma: no cover - needs a checkpoint with more finished epochs than the buffer
            warnings.warn("the training history lacks %d of %d epochs (from epoch %d): more than %d epochs were "
                          "finished before the checkpoint" % (len(missing), count, missing[0], capacity),
                          RuntimeWarning, stacklevel=3)
    return history


@contextlib.contextmanager
def deferred_interrupts(bridge):
    """While the library trains, runs the SIGINT handler (Ctrl-C) inside a wrapper that stores
    its exception (``KeyboardInterrupt``) in ``bridge.error`` instead of raising it.

    Python runs signal handlers at the next bytecode boundary of the main thread, which during
    training is inside the progress callback: possibly at the callback's very first instruction,
    before any ``try`` can catch what the handler raises (ctypes would then print the exception
    and continue training). With the wrapper, the bridge cancels the run at the next step and
    the exception is re-raised after the C call. Only on the main thread (where handlers run)
    and only when a Python handler is installed (not SIG_DFL / SIG_IGN).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):
        yield
        return

    def handler(signum, frame):
        try:
            previous(signum, frame)
        except BaseException as exc:  # noqa: B902 - KeyboardInterrupt is the point
            if bridge.error is None:
                bridge.error = exc

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_training(call, bridge, buffer, progress_display=None):
    """Runs ``call(out_count)`` (an sf_train / sf_train_resume call writing the epoch count to
    the c_size_t ``out_count``) and returns the history.

    Re-raises an exception caught by the bridge (after the C call returned), including a
    ``KeyboardInterrupt`` from Ctrl-C during the call; turns a cancellation requested by the
    callback into :class:`TrainingCancelled`.
    """
    count = ctypes.c_size_t(0)
    try:
        try:
            with deferred_interrupts(bridge):
                call(count)
        except SwiftFlowsError as err:
            if bridge.error is not None:
                error, bridge.error = bridge.error, None
                raise error from None
            if err.status == _SF_ERR_CANCELLED:
                raise TrainingCancelled(err.status, err.message, err.function,
                                        collect_history(buffer, count.value, bridge)) from None
            raise
        if bridge.error is not None:  # Ctrl-C after the last callback of a finished run
            error, bridge.error = bridge.error, None
            raise error
    finally:
        if progress_display is not None:
            progress_display.close()
    return collect_history(buffer, count.value, bridge)


# ---- progress displays ----------------------------------------------------------------------------

def _format_time(seconds):
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return "%d:%02d:%02d" % (hours, minutes, secs) if hours else "%02d:%02d" % (minutes, secs)


def _format_rate(rate):
    if rate is None or not math.isfinite(rate):
        return "?"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if rate >= factor:
            return "%.1f%s" % (rate / factor, suffix)
    return "%.1f" % rate


def _epoch_label(epoch, epochs):
    return "epoch %d/%d" % (epoch, epochs) if epochs else "epoch %d" % epoch


def _epoch_summary(report):
    parts = ["train_nll=%.4f" % report["train_nll"]]
    if report["validation_nll"] is not None:
        parts.append("val_nll=%.4f%s" % (report["validation_nll"], " *" if report["improved"] else ""))
    parts.append("lr=%.3g" % report["learning_rate"])
    if report["skipped_steps"]:
        parts.append("skipped=%d" % report["skipped_steps"])
    return ", ".join(parts)


def _stop_message(event):
    return "early stopping after epoch %d (best validation epoch: %d)" % (event["epoch"], event["best_epoch"])


def _isatty(stream):
    try:
        return bool(stream.isatty())
    except Exception:  # closed or exotic streams
        return False


class TextProgressBar:
    """A minimal tqdm-style progress display on a text stream (no dependencies).

    On a terminal (``dynamic``), one line per epoch is redrawn in place at most every
    ``min_interval`` seconds::

        epoch 3/10:  45%|#########           | 35/78 [00:01<00:01, 25.3k samples/s, loss=3.1234]

    and left behind, completed with the epoch's results, when the epoch ends::

        epoch 3/10: 100%|####################| 78/78 [00:02, 25.1k samples/s] train_nll=3.1102, val_nll=3.1500 *, lr=0.001

    (``*`` marks a validation improvement.) On other streams (files, pipes, captured output) only
    the finished-epoch lines are written. The ETA covers the current epoch.

    Args:
        epochs: the planned number of epochs, shown as ``epoch k/epochs`` (None: unknown).
        file: the stream (default: ``sys.stderr`` at construction).
        width: characters of the bar.
        min_interval: seconds between redraws of the running line.
        dynamic: redraw a running line (default: whether ``file`` is a terminal).
    """

    def __init__(self, epochs=None, file=None, width=20, min_interval=0.1, dynamic=None):
        self.epochs = epochs
        self.file = file if file is not None else sys.stderr
        self.width = max(1, int(width))
        self.min_interval = float(min_interval)
        self.dynamic = _isatty(self.file) if dynamic is None else bool(dynamic)
        self._epoch = None
        self._epoch_started = 0.0  # library clock (elapsed_seconds) at the start of the epoch
        self._last = None  # the last batch event of the epoch
        self._last_draw = -math.inf
        self._line_length = 0
        self._skipped = 0

    def __call__(self, event):
        kind = event["kind"]
        if kind == "batch":
            if event["epoch"] != self._epoch:
                self._epoch = event["epoch"]
                self._skipped = 0
            self._last = event
            now = event["elapsed_seconds"]
            last_of_epoch = event["batch"] >= event["batches_per_epoch"]
            if self.dynamic and not last_of_epoch and now - self._last_draw >= self.min_interval:
                self._last_draw = now
                self._draw(self._running_line(event))
        elif kind == "skipped":
            self._skipped += 1
        elif kind == "epoch":
            self._finish_epoch(event)
        elif kind == "stopped":
            self._clear()
            self._write(_stop_message(event) + "\n")
        return False

    def _bar(self, done, total):
        filled = int(self.width * done / total) if total else self.width
        return "#" * filled + " " * (self.width - filled)

    def _running_line(self, e):
        done, total = e["batch"], e["batches_per_epoch"]
        seconds = max(0.0, e["elapsed_seconds"] - self._epoch_started)
        eta = seconds / done * (total - done) if done else None
        postfix = "loss=%.4f" % e["loss"]
        if self._skipped:
            postfix += ", skipped=%d" % self._skipped
        return "%s: %3d%%|%s| %d/%d [%s<%s, %s samples/s, %s]" % (
            _epoch_label(e["epoch"], self.epochs), 100 * done // max(total, 1), self._bar(done, total), done, total,
            _format_time(seconds), _format_time(eta), _format_rate(e["samples_per_second"]), postfix)

    def _finish_epoch(self, event):
        report = event["report"]
        last = self._last if self._last is not None and self._last["epoch"] == event["epoch"] else None
        label = _epoch_label(event["epoch"], self.epochs)
        seconds = max(0.0, event["elapsed_seconds"] - self._epoch_started)
        if last is not None:
            total = last["batches_per_epoch"]
            head = "%s: 100%%|%s| %d/%d [%s, %s samples/s]" % (
                label, self._bar(total, total), total, total, _format_time(seconds),
                _format_rate(report["samples_per_second"] if report else None))
        else:  # every step of the epoch was skipped
            head = "%s: [%s]" % (label, _format_time(seconds))
        line = head + (" " + _epoch_summary(report) if report else "")
        self._clear()
        self._write(line + "\n")
        self._epoch_started = event["elapsed_seconds"]
        self._last_draw = -math.inf

    def _draw(self, line):
        pad = max(0, self._line_length - len(line))
        self._write("\r" + line + " " * pad)
        self._line_length = len(line)

    def _clear(self):
        if self._line_length:
            self._write("\r" + " " * self._line_length + "\r")
            self._line_length = 0

    def _write(self, text):
        try:
            self.file.write(text)
            self.file.flush()
        except (OSError, ValueError):  # a closed or broken stream must not stop training
            pass

    def close(self):
        """Ends a partly drawn line (e.g. after a cancelled run)."""
        if self._line_length:
            self._write("\n")
            self._line_length = 0


class TqdmProgressBar:
    """Progress as one tqdm bar per epoch (left on screen, completed with the epoch's results).

    Args:
        epochs: the planned number of epochs, shown as ``epoch k/epochs`` (None: unknown).
        file: the stream (default: tqdm's, stderr).
        tqdm_class: the bar class (default: ``tqdm.auto.tqdm``, which also renders in notebooks).
        min_interval: tqdm's ``mininterval`` (seconds between redraws).
    """

    def __init__(self, epochs=None, file=None, tqdm_class=None, min_interval=0.1):
        if tqdm_class is None:
            from tqdm.auto import tqdm as tqdm_class
        self.epochs = epochs
        self.file = file
        self.tqdm_class = tqdm_class
        self.min_interval = float(min_interval)
        self._bar = None
        self._epoch = None
        self._skipped = 0

    def _new_bar(self, epoch, total):
        self.close()
        self._epoch = epoch
        self._skipped = 0
        self._bar = self.tqdm_class(total=total, desc=_epoch_label(epoch, self.epochs), unit="batch", leave=True,
                                    file=self.file, mininterval=self.min_interval, dynamic_ncols=True)

    def __call__(self, event):
        kind = event["kind"]
        if kind == "batch":
            if self._bar is None or event["epoch"] != self._epoch:
                self._new_bar(event["epoch"], event["batches_per_epoch"])
            postfix = "loss=%.4f, %s samples/s" % (event["loss"], _format_rate(event["samples_per_second"]))
            if self._skipped:
                postfix += ", skipped=%d" % self._skipped
            self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(1)
        elif kind == "skipped":
            self._skipped += 1
        elif kind == "epoch":
            summary = _epoch_summary(event["report"]) if event["report"] else ""
            if self._bar is not None and event["epoch"] == self._epoch:
                self._bar.set_postfix_str(summary, refresh=False)
                self.close()
            else:
                self.tqdm_class.write("%s: %s" % (_epoch_label(event["epoch"], self.epochs), summary), file=self.file)
        elif kind == "stopped":
            self.close()
            self.tqdm_class.write(_stop_message(event), file=self.file)
        return False

    def close(self):
        """Closes the current bar, if any."""
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()


def default_progress_bar(epochs=None):
    """A :class:`TqdmProgressBar` if tqdm can be imported, else a :class:`TextProgressBar` on
    stderr."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return TextProgressBar(epochs=epochs)
    return TqdmProgressBar(epochs=epochs, tqdm_class=tqdm)


def progress_handlers(progress, epochs=None):
    """``(callback, display)`` for a ``progress=`` argument: the callable the bridge calls and
    the display that the caller must close afterwards (None unless made here)."""
    if progress is None or progress is False:
        return None, None
    if progress is True:
        display = default_progress_bar(epochs)
        return display, display
    if callable(progress):
        return progress, None
    raise TypeError("progress must be True, False or a callable taking an event dict, got %s"
                    % type(progress).__name__)
