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
from ctypes import byref, c_size_t, c_void_p

import numpy as np

from ._native import ModelPtr, double_ptr, float_ptr, lib

__all__ = ["Flow"]

_UINT64_MAX = 2**64 - 1
_REJECTED_KINDS = {"U": "strings", "S": "bytes", "c": "complex numbers", "M": "datetimes",
                   "m": "timedeltas", "V": "structured values"}


def _fptr(a):
    return a.ctypes.data_as(float_ptr)


def _dptr(a):
    return None if a is None else a.ctypes.data_as(double_ptr)


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

    A Flow may be used from several threads at once; :meth:`close` waits for running calls.
    """

    def __init__(self, spec, seed=0):
        """Same as :meth:`from_spec`."""
        self._attach(_create(spec, seed))

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def _from_handle(cls, handle):
        self = cls.__new__(cls)
        self._attach(handle)
        return self

    def _attach(self, handle):
        self._ptr = None
        self._cond = threading.Condition(threading.Lock())
        self._active = 0
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

    def _acquire(self):
        cond = self._cond
        with cond:
            if not self._ptr:
                raise ValueError("I/O operation on a closed Flow")
            self._active += 1
            return self._ptr

    def _release(self):
        cond = self._cond
        with cond:
            self._active -= 1
            if self._active == 0:
                cond.notify_all()

    @property
    def closed(self):
        """True once :meth:`close` has been called."""
        return not getattr(self, "_ptr", None)

    def close(self):
        """Releases the model (idempotent). Waits for calls running in other threads."""
        cond = getattr(self, "_cond", None)
        if cond is None:
            return
        with cond:
            while self._active:
                cond.wait()
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
        self._check_open()
        arr = np.asarray(x)
        kind = arr.dtype.kind
        if kind in _REJECTED_KINDS:
            raise TypeError("%s must hold real numbers, got %s (dtype %s)"
                            % (name, _REJECTED_KINDS[kind], arr.dtype))
        if kind == "O" and not all(isinstance(v, numbers.Real) for v in arr.flat):
            bad = next(v for v in arr.flat if not isinstance(v, numbers.Real))
            raise TypeError("%s must hold real numbers, got an element of type %s"
                            % (name, type(bad).__name__))
        event = self._event_shape
        k = len(event)
        if arr.ndim < k or tuple(arr.shape[arr.ndim - k:]) != event:
            raise ValueError("%s: expected an array of shape (..., %s), got %s"
                             % (name, ", ".join(str(d) for d in event), tuple(arr.shape)))
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not arr.flags.aligned:
            arr = arr.copy()
        batch = tuple(arr.shape[:arr.ndim - k])
        return arr, batch, math.prod(batch)

    def log_prob(self, x):
        """log p(x) in nats (float64, shape = batch shape of x)."""
        x, batch, n = self._events(x, "x")
        out = np.empty(batch, dtype=np.float64)
        handle = self._acquire()
        try:
            lib.sf_log_prob(handle, _fptr(x), n, _dptr(out))
        finally:
            self._release()
        return _scalar_if_0d(out)

    def forward(self, x):
        """``(z, logdet)``: z = f(x) (float32) and log|det df/dx| (float64)."""
        x, batch, n = self._events(x, "x")
        z = np.empty(x.shape, dtype=np.float32)
        logdet = np.empty(batch, dtype=np.float64)
        handle = self._acquire()
        try:
            lib.sf_forward(handle, _fptr(x), n, _fptr(z), _dptr(logdet))
        finally:
            self._release()
        return z, _scalar_if_0d(logdet)

    def inverse(self, z):
        """``(x, logdet)``: x = f^-1(z) (float32) and log|det df^-1/dz| (float64)."""
        z, batch, n = self._events(z, "z")
        x = np.empty(z.shape, dtype=np.float32)
        logdet = np.empty(batch, dtype=np.float64)
        handle = self._acquire()
        try:
            lib.sf_inverse(handle, _fptr(z), n, _fptr(x), _dptr(logdet))
        finally:
            self._release()
        return x, _scalar_if_0d(logdet)

    def sample(self, n, seed=None, temperature=1.0, return_log_prob=False):
        """Draws ``n`` samples (float32, shape ``(n,) + event_shape``).

        Sample ``i`` depends only on ``(seed, i)``; ``seed=None`` draws a random 64-bit seed.
        ``temperature`` scales the base distribution's standard deviation. With
        ``return_log_prob=True`` returns ``(samples, log_prob)``, the log-density of the model
        (at temperature 1) at each sample.
        """
        self._check_open()
        n = _count_arg(n)
        seed = _seed_arg(seed)
        temperature = float(temperature)
        out = np.empty((n,) + self._event_shape, dtype=np.float32)
        log_prob = np.empty(n, dtype=np.float64) if return_log_prob else None
        handle = self._acquire()
        try:
            if temperature == 1.0:
                lib.sf_sample(handle, n, seed, _fptr(out), _dptr(log_prob))
            else:
                lib.sf_sample_temperature(handle, n, seed, temperature, _fptr(out), _dptr(log_prob))
        finally:
            self._release()
        return (out, log_prob) if return_log_prob else out
