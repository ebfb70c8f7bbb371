"""The Flow class: a Python handle over an ``sf_model``."""

import ctypes
import json
import math
import numbers
import operator
import os
import secrets
import threading
from collections.abc import Mapping
from ctypes import byref, c_double, c_float, c_size_t, c_void_p

import numpy as np

from . import training as _training
from ._native import EpochReportStruct, ModelPtr, double_ptr, float_ptr, lib

__all__ = ["Flow"]

_UINT64_MAX = 2**64 - 1
_REJECTED_KINDS = {"U": "strings", "S": "bytes", "c": "complex numbers", "M": "datetimes",
                   "m": "timedeltas", "V": "structured values"}


_FLOAT32 = np.dtype(np.float32)


def _fptr(a):
    """A float* argument for the C-contiguous float32 array ``a``, without copying: a c_float
    aliasing its first element (ctypes passes it by reference; a few times cheaper than
    ``a.ctypes.data_as``, which matters for batch-1 calls), or a pointer for read-only or empty
    arrays, which ``from_buffer`` refuses."""
    try:
        return c_float.from_buffer(a)
    except (TypeError, ValueError):
        return a.ctypes.data_as(float_ptr)


def _dptr(a):
    """The double* counterpart of :func:`_fptr` (None stays None)."""
    if a is None:
        return None
    try:
        return c_double.from_buffer(a)
    except (TypeError, ValueError):
        return a.ctypes.data_as(double_ptr)


def _scalar_if_0d(a):
    return a[()] if a.ndim == 0 else a


def _seed_arg(seed):
    if seed is None:
        return secrets.randbits(64)
    try:
        seed = operator.index(seed)
    except TypeError:
        raise TypeError("seed must be an integer or None, got %s" % type(seed).__name__) from None
    if not 0 <= seed <= _UINT64_MAX:
        raise ValueError("seed must be in [0, 2**64), got %d" % seed)
    return seed


def _count_arg(n):
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError("n must be an integer, got %s" % type(n).__name__) from None
    if n < 0:
        raise ValueError("n must be >= 0, got %d" % n)
    return n


def _check_real(arr, name):
    """Raises TypeError unless the ndarray ``arr`` holds real numbers."""
    kind = arr.dtype.kind
    if kind in _REJECTED_KINDS:
        raise TypeError("%s must hold real numbers, got %s (dtype %s)" % (name, _REJECTED_KINDS[kind], arr.dtype))
    if kind == "O" and not all(isinstance(v, numbers.Real) for v in arr.flat):
        bad = next(v for v in arr.flat if not isinstance(v, numbers.Real))
        raise TypeError("%s must hold real numbers, got an element of type %s" % (name, type(bad).__name__))


def _float32_contiguous(arr):
    """``arr`` as an aligned, C-contiguous float32 array (no copy when it already is one)."""
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    return arr if arr.flags.aligned else arr.copy()


def _row_array(x, name):
    """x (shape ``(n, ...)``) as an aligned, C-contiguous float32 array; returns (array, n, values
    per row), for calls whose event shape the library checks (``sf_train_resume_v2``)."""
    arr = np.asarray(x)
    _check_real(arr, name)
    if arr.ndim < 2 or arr.shape[0] == 0 or 0 in arr.shape[1:]:
        raise ValueError("%s: expected a non-empty array of rows, shape (n, ...), got %s" % (name, tuple(arr.shape)))
    arr = _float32_contiguous(arr)
    return arr, arr.shape[0], math.prod(arr.shape[1:])


def _path_arg(path):
    encoded = os.fsencode(os.fspath(path))  # str, bytes or os.PathLike; TypeError otherwise
    if b"\0" in encoded:
        raise ValueError("path contains a NUL character: %r" % (path,))
    return encoded


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError("spec value of type %s is not JSON serialisable" % type(value).__name__)


def _spec_text(spec):
    if isinstance(spec, Mapping):
        text = json.dumps(dict(spec), allow_nan=False, default=_json_default)
    elif isinstance(spec, str):
        text = spec
    elif isinstance(spec, (bytes, bytearray)):
        text = bytes(spec).decode("utf-8")
    else:
        raise TypeError("spec must be a dict or a JSON string, got %s" % type(spec).__name__)
    encoded = text.encode("utf-8")
    if b"\0" in encoded:
        raise ValueError("spec contains a NUL character")
    return encoded


def _create(spec, seed):
    text = _spec_text(spec)
    seed = _seed_arg(seed)
    out = ModelPtr()
    lib.sf_model_create(text, seed, byref(out))
    return out


def _restore(cls, data):
    """Unpickling helper."""
    return cls.from_bytes(data)


class Flow:
    """A normalizing flow ``z = f(x)`` with an exact log-density, backed by libswiftflows.

    Build one with :meth:`from_spec` (or ``Flow(spec, seed)``), :meth:`load`, :meth:`from_bytes`
    or a preset (:func:`swiftflows.RealNVP`, :func:`swiftflows.NICE`).

    Arrays: inputs are any real array-like whose trailing dimensions equal :attr:`event_shape`;
    leading dimensions are batch dimensions of any shape (none for a single event). Data outputs
    are float32 with the input's shape; log-densities and log-determinants are float64 with the
    batch shape (a NumPy scalar for a single event).

    A Flow may be used from several threads at once; :meth:`close` refuses new calls and waits for
    running ones; :meth:`cancel` stops running ones.
    """

    def __init__(self, spec, seed=0):
        """Same as :meth:`from_spec`. Calling it again on a Flow replaces its model: the previous
        one is closed first (as :meth:`close` does), so nothing leaks."""
        handle = _create(spec, seed)
        try:
            self.close()
        except BaseException:
            lib.sf_model_free(handle)
            raise
        self._attach(handle)

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def _from_handle(cls, handle):
        self = cls.__new__(cls)
        self._attach(handle)
        return self

    def _attach(self, handle):
        self._ptr = None
        # _cond waits on _lock; the per-call bookkeeping takes _lock directly (its C-level
        # __enter__ is several times cheaper than Condition's, which is Python code).
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._closers = 0  # close() calls waiting on _cond for running calls to finish
        self._closing = False  # set by close(): no new call is admitted
        self._active = 0
        self._training_threads = set()  # idents of threads inside fit() on this flow
        if not handle:
            raise RuntimeError("libswiftflows returned SF_OK but no model")  # pragma: no cover
        self._ptr = handle
        try:
            ndim = c_size_t()
            lib.sf_model_event_shape(handle, None, 0, byref(ndim))
            extents = (c_size_t * max(ndim.value, 1))()
            lib.sf_model_event_shape(handle, extents, ndim.value, byref(ndim))
            self._event_shape = tuple(int(extents[i]) for i in range(ndim.value))
            size = c_size_t()
            lib.sf_model_event_size(handle, byref(size))
            self._event_size = int(size.value)
            count = c_size_t()
            lib.sf_model_num_parameters(handle, byref(count))
            self._num_parameters = int(count.value)
            context = c_size_t()
            lib.sf_model_context_size(handle, byref(context))
            self._context_size = int(context.value)
            self._num_layers = len(self._spec_from(handle).get("layers", ()))
        except BaseException:
            self._ptr = None
            lib.sf_model_free(handle)
            raise
        if self._event_size != math.prod(self._event_shape):
            raise RuntimeError("libswiftflows: event size %d does not match event shape %s"
                               % (self._event_size, self._event_shape))  # pragma: no cover

    @classmethod
    def from_spec(cls, spec, seed=0):
        """A new flow from an architecture spec (a dict or a JSON string, see
        docs/model-format.md); parameters are initialised from ``seed`` (0 <= seed < 2**64)."""
        return cls._from_handle(_create(spec, seed))

    @classmethod
    def load(cls, path):
        """Loads a model file (HDF5) from ``path`` (str, bytes or os.PathLike)."""
        encoded = _path_arg(path)
        out = ModelPtr()
        lib.sf_model_load(encoded, byref(out))
        return cls._from_handle(out)

    @classmethod
    def from_bytes(cls, data):
        """Loads a model from an in-memory HDF5 file image (bytes-like), as made by :meth:`to_bytes`."""
        if isinstance(data, str):
            raise TypeError("from_bytes needs a bytes-like object, not str")
        view = memoryview(data)
        if not view.c_contiguous:
            view = memoryview(view.tobytes())
        view = view.cast("B") if view.ndim != 1 or view.format != "B" else view
        buf = np.frombuffer(view, dtype=np.uint8)
        out = ModelPtr()
        lib.sf_model_load_memory(buf.ctypes.data_as(c_void_p), buf.size, byref(out))
        return cls._from_handle(out)

    # ---- handle management --------------------------------------------------------------

    def _refuse_in_training_callback(self):
        # Called with self._lock (_cond's lock) held. The training thread holds the model's write lock (and
        # this Flow's active count) until sf_train returns: using the flow from a progress
        # callback would deadlock.
        if self._training_threads and threading.get_ident() in self._training_threads:
            raise RuntimeError("this Flow is being trained: it cannot be used from its own training progress "
                               "callback")

    def _acquire(self):
        with self._lock:
            if not self._ptr or self._closing:
                raise ValueError("I/O operation on a closed Flow")
            self._refuse_in_training_callback()
            self._active += 1
            return self._ptr

    def _release(self):
        with self._lock:
            self._active -= 1
            if self._active == 0 and self._closers:
                self._cond.notify_all()

    @property
    def closed(self):
        """True once :meth:`close` has been called (also while it waits for running calls)."""
        return not getattr(self, "_ptr", None) or getattr(self, "_closing", False)

    def cancel(self):
        """Cancels the calls running on this flow in other threads (``sf_cancel``): each raises
        :class:`SwiftFlowsError` with status ``SF_ERR_CANCELLED`` at its next check (between chunks
        of rows, every ODE step of a ``cnf`` layer, every training step). Calls made afterwards
        run normally. Returns at once; a no-op on a closed flow. Safe from any thread."""
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            if self._ptr:
                lib.sf_cancel(self._ptr)

    def close(self):
        """Releases the model (idempotent). From the moment it is called, new calls on the flow
        raise ``ValueError`` (closed); it then waits for calls running in other threads."""
        cond = getattr(self, "_cond", None)
        if cond is None:
            return
        with cond:
            self._refuse_in_training_callback()
            self._closing = True
            while self._active:
                self._closers += 1
                try:
                    cond.wait()
                finally:
                    self._closers -= 1
            handle, self._ptr = self._ptr, None
        if handle:
            lib.sf_model_free(handle)

    def __enter__(self):
        if self.closed:
            raise ValueError("I/O operation on a closed Flow")
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self, _free=lib.sf_model_free):
        handle = getattr(self, "_ptr", None)
        if handle:
            self._ptr = None
            try:
                _free(handle)
            except Exception:  # pragma: no cover - interpreter shutdown
                pass

    def __reduce__(self):
        return (_restore, (type(self), self.to_bytes()))

    def __repr__(self):
        if self.closed:
            return "%s(closed)" % type(self).__name__
        return "%s(event_shape=%s, layers=%d, parameters=%d)" % (
            type(self).__name__, self._event_shape, self._num_layers, self._num_parameters)

    # ---- properties ---------------------------------------------------------------------

    def _check_open(self):
        if self.closed:
            raise ValueError("I/O operation on a closed Flow")

    @property
    def event_shape(self):
        """The shape of one event, e.g. ``(2,)`` or ``(1, 28, 28)``."""
        self._check_open()
        return self._event_shape

    @property
    def event_size(self):
        """Number of scalars per event (the product of :attr:`event_shape`)."""
        self._check_open()
        return self._event_size

    @property
    def num_parameters(self):
        """Number of learnable scalar parameters."""
        self._check_open()
        return self._num_parameters

    @staticmethod
    def _spec_from(handle):
        out = c_void_p()
        lib.sf_model_spec(handle, byref(out))
        try:
            text = ctypes.string_at(out.value) if out.value else b"{}"
        finally:
            lib.sf_buffer_free(out)
        return json.loads(text.decode("utf-8"))

    @property
    def spec(self):
        """The resolved architecture spec (a new dict on every access)."""
        handle = self._acquire()
        try:
            return self._spec_from(handle)
        finally:
            self._release()

    # ---- saving -------------------------------------------------------------------------

    def save(self, path):
        """Saves the model as an HDF5 file (replacing ``path`` atomically)."""
        encoded = _path_arg(path)
        handle = self._acquire()
        try:
            lib.sf_model_save(handle, encoded)
        finally:
            self._release()

    def to_bytes(self):
        """The model as an in-memory HDF5 file image (bytes)."""
        data, size = c_void_p(), c_size_t()
        handle = self._acquire()
        try:
            lib.sf_model_save_memory(handle, byref(data), byref(size))
        finally:
            self._release()
        try:
            return ctypes.string_at(data.value, size.value) if size.value else b""
        finally:
            lib.sf_buffer_free(data)

    # ---- evaluation ---------------------------------------------------------------------

    def _events(self, x, name):
        """x as a C-contiguous float32 array of shape batch + event_shape; returns (x, batch, n)."""
        event = self._event_shape
        k = len(event)
        # Fast path (batch-1 calls are dominated by Python overhead): already a C-contiguous,
        # aligned float32 ndarray of the right event shape. (A closed flow is refused by
        # _acquire, with the same error as _check_open's.)
        if (type(x) is np.ndarray and x.dtype == _FLOAT32 and x.ndim >= k and x.flags.c_contiguous
                and x.flags.aligned and x.shape[x.ndim - k:] == event):
            batch = x.shape[:x.ndim - k]
            return x, batch, math.prod(batch)
        self._check_open()
        arr = np.asarray(x)
        _check_real(arr, name)
        if arr.ndim < k or tuple(arr.shape[arr.ndim - k:]) != event:
            raise ValueError("%s: expected an array of shape (..., %s), got %s"
                             % (name, ", ".join(str(d) for d in event), tuple(arr.shape)))
        arr = _float32_contiguous(arr)
        batch = tuple(arr.shape[:arr.ndim - k])
        return arr, batch, math.prod(batch)

    @property
    def context_size(self):
        """Context values per row of a conditional flow ``p(x | c)``; 0 for an unconditional flow."""
        return self._context_size

    def _context(self, context, batch, name="context"):
        """``context`` for ``batch`` data rows as a C-contiguous float32 array of shape
        ``batch + (context_size,)`` (one row of shape ``(context_size,)`` is broadcast), or None
        for an unconditional flow; raises for a missing or unexpected context."""
        c = self._context_size
        if c == 0:
            if context is not None:
                raise ValueError("%s: the flow is unconditional (context_size 0); pass no context" % name)
            return None
        if context is None:
            raise ValueError("%s: the flow is conditional (context_size %d); pass context=" % (name, c))
        arr = np.asarray(context)
        _check_real(arr, name)
        want = tuple(batch) + (c,)
        if arr.shape == (c,) and want != (c,):
            arr = np.broadcast_to(arr, want)
        if arr.shape != want:
            raise ValueError("%s: expected shape %s (or (%d,) for one context), got %s" % (name, want, c, arr.shape))
        return _float32_contiguous(arr)

    def log_prob(self, x, context=None):
        """log p(x) in nats (float64, shape = batch shape of x); for a conditional flow
        ``log p(x | context)``, with ``context`` of shape ``batch + (context_size,)`` or one row
        ``(context_size,)`` for all."""
        x, batch, n = self._events(x, "x")
        out = np.empty(batch, dtype=np.float64)
        if self._context_size == 0 and context is None:
            handle = self._acquire()
            try:
                lib.sf_log_prob(handle, _fptr(x), n, _dptr(out))
            finally:
                self._release()
            return _scalar_if_0d(out)
        c = self._context(context, batch)
        handle = self._acquire()
        try:
            lib.sf_log_prob_context(handle, _fptr(x), _fptr(c), n, _dptr(out))
        finally:
            self._release()
        return _scalar_if_0d(out)

    def forward(self, x, context=None):
        """``(z, logdet)``: z = f(x) (float32) and log|det df/dx| (float64); ``context`` as for
        :meth:`log_prob`."""
        x, batch, n = self._events(x, "x")
        c = self._context(context, batch)
        z = np.empty(x.shape, dtype=np.float32)
        logdet = np.empty(batch, dtype=np.float64)
        handle = self._acquire()
        try:
            if c is None:
                lib.sf_forward(handle, _fptr(x), n, _fptr(z), _dptr(logdet))
            else:
                lib.sf_forward_context(handle, _fptr(x), _fptr(c), n, _fptr(z), _dptr(logdet))
        finally:
            self._release()
        return z, _scalar_if_0d(logdet)

    def inverse(self, z, context=None):
        """``(x, logdet)``: x = f^-1(z) (float32) and log|det df^-1/dz| (float64); ``context`` as
        for :meth:`log_prob`."""
        z, batch, n = self._events(z, "z")
        c = self._context(context, batch)
        x = np.empty(z.shape, dtype=np.float32)
        logdet = np.empty(batch, dtype=np.float64)
        handle = self._acquire()
        try:
            if c is None:
                lib.sf_inverse(handle, _fptr(z), n, _fptr(x), _dptr(logdet))
            else:
                lib.sf_inverse_context(handle, _fptr(z), _fptr(c), n, _fptr(x), _dptr(logdet))
        finally:
            self._release()
        return x, _scalar_if_0d(logdet)

    def sample(self, n, seed=None, temperature=1.0, return_log_prob=False, context=None):
        """Draws ``n`` samples (float32, shape ``(n,) + event_shape``).

        Sample ``i`` depends only on ``(seed, i)``; ``seed=None`` draws a random 64-bit seed.
        ``temperature`` scales the base distribution's standard deviation. With
        ``return_log_prob=True`` returns ``(samples, log_prob)``, the log-density of the model
        (at temperature 1) at each sample.

        A conditional flow needs ``context``: one row ``(context_size,)`` for all samples, ``n``
        rows (one per sample), or ``m`` rows with ``m`` dividing ``n`` (``n // m`` samples for each,
        in blocks: rows ``j*(n//m) … (j+1)*(n//m) - 1`` come from context row ``j``).
        """
        self._check_open()
        n = _count_arg(n)
        seed = _seed_arg(seed)
        temperature = float(temperature)
        out = np.empty((n,) + self._event_shape, dtype=np.float32)
        log_prob = np.empty(n, dtype=np.float64) if return_log_prob else None
        if self._context_size > 0 or context is not None:
            if self._context_size == 0:
                raise ValueError("context: the flow is unconditional (context_size 0); pass no context")
            if temperature != 1.0:
                raise ValueError("temperature: conditional flows sample at temperature 1")
            if context is None:
                raise ValueError("context: the flow is conditional (context_size %d); pass context=" % self._context_size)
            arr = np.asarray(context)
            _check_real(arr, "context")
            if arr.ndim == 1:
                arr = arr.reshape(1, -1)
            if arr.ndim != 2 or arr.shape[1] != self._context_size:
                raise ValueError("context: expected shape (m, %d) or (%d,), got %s"
                                 % (self._context_size, self._context_size, np.shape(context)))
            rows = arr.shape[0]
            if rows == 0 or (n > 0 and n % rows != 0):
                raise ValueError("context: %d rows do not divide n = %d" % (rows, n))
            arr = _float32_contiguous(arr)
            handle = self._acquire()
            try:
                lib.sf_sample_context(handle, n, seed, _fptr(arr), rows, _fptr(out), _dptr(log_prob))
            finally:
                self._release()
            return (out, log_prob) if return_log_prob else out
        handle = self._acquire()
        try:
            if temperature == 1.0:
                lib.sf_sample(handle, n, seed, _fptr(out), _dptr(log_prob))
            else:
                lib.sf_sample_temperature(handle, n, seed, temperature, _fptr(out), _dptr(log_prob))
        finally:
            self._release()
        return (out, log_prob) if return_log_prob else out

    # ---- training -----------------------------------------------------------------------

    def _rows(self, x, name):
        """x as a C-contiguous float32 array of shape (n,) + event_shape (no copy when it already
        is one); returns (array, n)."""
        arr, batch, n = self._events(x, name)
        if len(batch) != 1:
            raise ValueError("%s: expected an array of shape (n, %s), got %s"
                             % (name, ", ".join(str(d) for d in self._event_shape), tuple(np.shape(x))))
        return arr, n

    def _validation_arg(self, validation):
        """(fraction, rows or None, row count) for fit's ``validation`` argument."""
        if validation is None:
            return 0.0, None, 0
        if isinstance(validation, bool):
            raise TypeError("validation must be a fraction or an array of rows, not a bool")
        if isinstance(validation, numbers.Real):
            return float(validation), None, 0
        rows, n = self._rows(validation, "validation")
        if n == 0:
            raise ValueError("validation: the array has no rows (pass validation=0 to train without validation)")
        return 0.0, rows, n

    def fit(self, x, epochs=50, batch_size=256, lr=1e-3, validation=0.1, seed=0, optimizer="adam",
            weight_decay=0.0, clip_norm=None, schedule="constant", warmup=0, min_lr_factor=0.0, patience=0,
            restore_best=True, checkpoint=None, progress=True, *, momentum=0.9, betas=(0.9, 0.999), eps=1e-8,
            step_size=1000, gamma=0.5, min_delta=0.0, context=None, validation_context=None):
        """Trains the flow in place by maximum likelihood (``sf_train``) and returns the history.

        A conditional flow (``context_size > 0``) trains on ``log p(x | context)``: ``context``
        holds one row of ``context_size`` values per row of ``x`` (shape ``(n, context_size)``) and
        travels with it through the validation split and every shuffle; with an array of
        ``validation`` rows, ``validation_context`` holds theirs (``sf_train_context``).

        Each epoch visits the training rows in a seeded random order in minibatches of
        ``batch_size`` and takes one optimiser step per minibatch. The result depends only on the
        model, the data and these arguments (not on the thread count): the same initial model,
        data and ``seed`` give bit-identical parameters. While training runs, calls on this flow
        from other threads wait until it returns.

        Args:
            x: training rows, shape ``(n,) + event_shape``. A C-contiguous float32 array is used
                in place (zero-copy); anything else is converted to one first. Rows with NaN or
                infinite values are refused (``SF_ERR_NUMERIC``, naming the row and column).
            epochs: passes over the training rows (>= 1).
            batch_size: rows per optimisation step (the last batch of an epoch may be smaller).
            lr: the base learning rate (> 0).
            validation: a fraction in [0, 1) of ``x`` held out (seeded by ``seed``) to measure
                the validation NLL after every epoch, or an array of validation rows; 0 or None
                trains without validation (no early stopping, no best-epoch restoring).
            seed: seeds the validation split and the shuffles (0 <= seed < 2**64; None: random).
            optimizer: ``"adam"`` (AdamW: decoupled weight decay), ``"adamax"`` or ``"sgd"``
                (heavy-ball ``momentum``).
            weight_decay: decoupled weight decay (>= 0).
            clip_norm: clip the global gradient L2 norm to this value; None (or 0) disables.
            schedule: learning-rate decay after the warm-up: ``"constant"``, ``"cosine"`` (to
                ``min_lr_factor * lr`` at the last step) or ``"step"`` (times ``gamma`` every
                ``step_size`` steps).
            warmup: steps of linear learning-rate warm-up.
            min_lr_factor: cosine schedule: final rate / ``lr``, in [0, 1].
            patience: stop after this many epochs without a validation improvement larger than
                ``min_delta`` (0 disables early stopping).
            restore_best: at the end, restore the parameters of the epoch with the best
                validation NLL.
            checkpoint: a path (str, bytes or os.PathLike) where a checkpoint (model + optimiser
                state, HDF5) is written atomically after every epoch, for :meth:`resume`; None
                for none. A checkpoint is also an ordinary model file (:meth:`load`).
            progress: True shows a progress bar on stderr (tqdm if it can be imported, else
                :class:`swiftflows.training.TextProgressBar`); False or None shows nothing; a
                callable receives every progress event as a dict (see
                :mod:`swiftflows.training`) and cancels training by returning a true value.
            momentum: SGD momentum in [0, 1).
            betas: Adam/Adamax moment decays ``(beta1, beta2)``, each in [0, 1).
            eps: Adam/Adamax epsilon (> 0).
            step_size: step schedule: steps between decays (>= 1).
            gamma: step schedule: decay factor in (0, 1].
            min_delta: early stopping: the improvement (nats) that counts.

        Returns:
            A list of :class:`swiftflows.training.EpochReport`, one per finished epoch
            (``report.as_dict()`` gives the keys epoch, train_nll, validation_nll (None without
            validation), learning_rate, skipped_steps, samples_per_second, elapsed_seconds,
            improved).

        Raises:
            ValueError, TypeError: ``x`` or ``validation`` of the wrong shape or type; arguments
                of the wrong type or out of the range of their C type (e.g. negative epochs).
            SwiftFlowsError: the library refused the options (``SF_ERR_INVALID_ARGUMENT``, e.g.
                ``lr <= 0``, ``epochs == 0``, no rows), non-finite data or 100 consecutive
                non-finite steps (``SF_ERR_NUMERIC``), or a checkpoint could not be written
                (``SF_ERR_IO``); the message says which.
            TrainingCancelled: the progress callable returned a true value; its ``history``
                holds the finished epochs. The flow keeps the parameters of its last step.
            KeyboardInterrupt, or any exception raised by the progress callable: training is
                cancelled at the next step (the flow keeps the parameters of its last step and
                stays usable), then the exception is re-raised.
        """
        self._check_open()
        x, n = self._rows(x, "x")
        fraction, x_val, n_val = self._validation_arg(validation)
        c = self._context(context, (n,))
        c_val = None
        if x_val is not None:
            c_val = self._context(validation_context, (n_val,), "validation_context")
        elif validation_context is not None:
            raise ValueError("validation_context: give it with an array of validation rows")
        options = _training.make_options(
            epochs=epochs, batch_size=batch_size, lr=lr, validation_fraction=fraction, seed=_seed_arg(seed),
            optimizer=optimizer, weight_decay=weight_decay, clip_norm=clip_norm, schedule=schedule, warmup=warmup,
            min_lr_factor=min_lr_factor, patience=patience, restore_best=restore_best,
            checkpoint=None if checkpoint is None else _path_arg(checkpoint), momentum=momentum, betas=betas,
            eps=eps, step_size=step_size, gamma=gamma, min_delta=min_delta)
        # Every epoch's report also arrives as a progress event, so a capped buffer loses nothing.
        history = (EpochReportStruct * min(max(options.epochs, 1), _FIT_HISTORY_CAPACITY))()
        handle = self._acquire()
        me = threading.get_ident()
        with self._cond:
            self._training_threads.add(me)
        try:
            callback, display = _training.progress_handlers(progress, epochs=options.epochs)
            bridge = _training.ProgressBridge(callback)
            options.progress = bridge.c_function

            def call(count):
                if c is None:
                    lib.sf_train(handle, _fptr(x), n, None if x_val is None else _fptr(x_val), n_val,
                                 byref(options), history, len(history), byref(count))
                else:
                    lib.sf_train_context(handle, _fptr(x), _fptr(c), n, None if x_val is None else _fptr(x_val),
                                         None if c_val is None else _fptr(c_val), n_val, byref(options), history,
                                         len(history), byref(count))

            return _training.run_training(call, bridge, history, display)
        finally:
            with self._cond:
                self._training_threads.discard(me)
            self._release()

    @classmethod
    def resume(cls, checkpoint, x, validation=None, epochs=None, progress=True, context=None,
               validation_context=None):
        """Continues the training run saved in ``checkpoint`` (``sf_train_resume_context``).

        A conditional run needs its ``context`` rows again (and ``validation_context`` with
        ``validation`` rows), as given to :meth:`fit`.

        The run must be given the same training rows ``x`` (and the same validation rows, if
        :meth:`fit` was given an array; with a validation fraction, pass None: the split is
        recomputed from the stored seed). The resumed run then ends in exactly the state an
        uninterrupted run would have reached, and keeps writing the checkpoint after every epoch.

        Args:
            checkpoint: path of a checkpoint written by ``fit(..., checkpoint=...)``.
            x: the training rows, as for :meth:`fit`.
            validation: the validation rows of the original run, or None.
            epochs: the new planned number of epochs (>= 1); None keeps the checkpoint's.
            progress: as for :meth:`fit`.

        Returns:
            ``(flow, history)``: the trained flow (a new Flow) and the
            :class:`swiftflows.training.EpochReport` of every epoch since the run began
            (including those before the checkpoint).

        Raises:
            SwiftFlowsError: an unreadable checkpoint (``SF_ERR_IO``, ``SF_ERR_FORMAT``, e.g. a
                model file without training state), data that differ from the checkpoint's
                (``SF_ERR_INVALID_ARGUMENT``), or a failure as in :meth:`fit`.
            TrainingCancelled, KeyboardInterrupt, callback exceptions: as in :meth:`fit`; no
                flow is returned, the checkpoint holds the last finished epoch.
        """
        path = _path_arg(checkpoint)
        if isinstance(validation, (bool, numbers.Real)):
            raise TypeError("validation: pass the validation rows of the original run, or None (a validation "
                            "fraction is stored in the checkpoint)")
        if epochs is None:
            planned = 0
        else:
            planned = _training._uint(epochs, "epochs")
            if planned == 0:
                raise ValueError("epochs must be at least 1 (None keeps the checkpoint's planned epochs)")
        # The library reads the checkpoint once and checks the rows' width against its model.
        x, n, row_size = _row_array(x, "x")
        x_val, n_val = None, 0
        if validation is not None:
            x_val, n_val, val_size = _row_array(validation, "validation")
            if val_size != row_size:
                raise ValueError("validation rows hold %d values, the training rows %d" % (val_size, row_size))
        c, context_size, c_val = None, 0, None
        if context is not None:
            c, c_rows, context_size = _row_array(context, "context")
            if c_rows != n:
                raise ValueError("context: %d rows for %d training rows" % (c_rows, n))
        if validation_context is not None:
            c_val, cv_rows, cv_size = _row_array(validation_context, "validation_context")
            if cv_rows != n_val or cv_size != context_size:
                raise ValueError("validation_context: expected shape (%d, %d), got (%d, %d)"
                                 % (n_val, context_size, cv_rows, cv_size))
        history = (EpochReportStruct * _RESUME_HISTORY_CAPACITY)()
        out = ModelPtr()
        callback, display = _training.progress_handlers(progress, epochs=epochs)
        bridge = _training.ProgressBridge(callback)

        def call(count):
            lib.sf_train_resume_context(path, _fptr(x), None if c is None else _fptr(c), n, row_size, context_size,
                                        None if x_val is None else _fptr(x_val), None if c_val is None else _fptr(c_val),
                                        n_val, planned, bridge.c_function, None, history, len(history), byref(count),
                                        byref(out))

        reports = _training.run_training(call, bridge, history, display)
        return cls._from_handle(out), reports


# Epoch-report buffers: fit sees every epoch as an event as well, so its buffer may be capped;
# a resumed run's history also holds the epochs before the checkpoint (not re-sent as events).
_FIT_HISTORY_CAPACITY = 4096
_RESUME_HISTORY_CAPACITY = 1 << 16
