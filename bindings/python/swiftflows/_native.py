"""Loading libswiftflows.so and declaring its C API (include/swiftflows.h) for ctypes.

Discovery order:
1. the environment variable ``SWIFTFLOWS_LIBRARY`` (a path to the shared library; when it is
   set, it is the only place tried);
2. a copy inside the package: ``swiftflows/_lib/libswiftflows.so``;
3. the repository's build folder: walking up from this file, the first
   ``build/lib/libswiftflows.so``.

The library is opened with ``ctypes.CDLL``, which releases the GIL during every call.
"""

import ctypes
import json
import operator
import os
from ctypes import (CFUNCTYPE, POINTER, c_char_p, c_double, c_float, c_int, c_int32, c_size_t, c_uint32,
                    c_uint64, c_void_p)
from pathlib import Path

from ._version import VERSION_MAJOR, __version__
from .errors import SwiftFlowsError

__all__ = ["lib", "library_path", "library_version", "set_num_threads", "get_num_threads", "set_memory_limit",
           "get_memory_limit", "DEFAULT_MEMORY_LIMIT",
           "ModelPtr", "float_ptr", "double_ptr", "MAX_EVENT_RANK", "EpochReportStruct", "ProgressStruct",
           "TrainOptionsStruct", "ProgressFn", "OPTIMIZERS", "SCHEDULES", "PROGRESS_KINDS",
           "preset_names", "preset_defaults", "toy_names", "toy_entropy"]

LIBRARY_NAME = "libswiftflows.so"
ENV_VAR = "SWIFTFLOWS_LIBRARY"
MAX_EVENT_RANK = 4  # SF_MAX_EVENT_RANK
DEFAULT_MEMORY_LIMIT = 2 << 30  # SF_DEFAULT_MEMORY_LIMIT


class _SFModel(ctypes.Structure):
    """The opaque ``sf_model``."""


ModelPtr = POINTER(_SFModel)
float_ptr = POINTER(c_float)
double_ptr = POINTER(c_double)

# ---- training structs (include/swiftflows.h, "Training"); C enums are passed as int ----------

#: sf_optimizer values by the names the Python API accepts.
OPTIMIZERS = {"adam": 0, "adamax": 1, "sgd": 2}
#: sf_schedule values by the names the Python API accepts.
SCHEDULES = {"constant": 0, "cosine": 1, "step": 2}
#: sf_progress_kind names by value.
PROGRESS_KINDS = {0: "batch", 1: "skipped", 2: "epoch", 3: "stopped"}


class EpochReportStruct(ctypes.Structure):
    """``sf_epoch_report``: one finished epoch."""
    _fields_ = [
        ("epoch", c_uint32),
        ("skipped_steps", c_uint32),
        ("train_nll", c_double),
        ("validation_nll", c_double),
        ("learning_rate", c_double),
        ("samples_per_second", c_double),
        ("elapsed_seconds", c_double),
        ("improved", c_int32),
    ]


class ProgressStruct(ctypes.Structure):
    """``sf_progress``: what a progress callback receives (valid only during the callback)."""
    _fields_ = [
        ("kind", c_int),  # sf_progress_kind
        ("epoch", c_uint32),
        ("batch", c_uint32),
        ("batches_per_epoch", c_uint32),
        ("best_epoch", c_uint32),
        ("loss", c_double),
        ("samples_per_second", c_double),
        ("elapsed_seconds", c_double),
        ("report", POINTER(EpochReportStruct)),
        ("message", c_char_p),
    ]


#: ``sf_progress_fn``: int (*)(const sf_progress *, void *user_data); non-zero cancels.
ProgressFn = CFUNCTYPE(c_int, POINTER(ProgressStruct), c_void_p)


class TrainOptionsStruct(ctypes.Structure):
    """``sf_train_options``; always fill it with ``sf_train_options_init`` first."""
    _fields_ = [
        ("struct_size", c_size_t),
        ("epochs", c_uint32),
        ("batch_size", c_uint32),
        ("optimizer", c_int),  # sf_optimizer
        ("learning_rate", c_double),
        ("beta1", c_double),
        ("beta2", c_double),
        ("epsilon", c_double),
        ("weight_decay", c_double),
        ("momentum", c_double),
        ("clip_norm", c_double),
        ("schedule", c_int),  # sf_schedule
        ("warmup_steps", c_uint32),
        ("min_lr_factor", c_double),
        ("step_size", c_uint32),
        ("gamma", c_double),
        ("validation_fraction", c_double),
        ("patience", c_uint32),
        ("min_delta", c_double),
        ("restore_best", c_int32),
        ("seed", c_uint64),
        ("checkpoint_path", c_char_p),
        ("progress", ProgressFn),
        ("user_data", c_void_p),
    ]


def _candidates():
    """(description, path) pairs to try, in order."""
    env = os.environ.get(ENV_VAR)
    if env:
        return [("$%s" % ENV_VAR, Path(env))]
    here = Path(__file__).resolve().parent
    places = [("package copy", here / "_lib" / LIBRARY_NAME)]
    for parent in here.parents:
        places.append(("build folder", parent / "build" / "lib" / LIBRARY_NAME))
    return places


def _open_library():
    tried = []
    for what, path in _candidates():
        if not path.is_file():
            tried.append("%s: %s (not found)" % (what, path))
            continue
        try:
            return ctypes.CDLL(str(path)), path
        except OSError as exc:
            tried.append("%s: %s (could not be loaded: %s)" % (what, path, exc))
    raise ImportError(
        "swiftflows: cannot find a usable %s. Build it with `make lib` in the repository, or set "
        "%s to its path. Places tried:\n  %s" % (LIBRARY_NAME, ENV_VAR, "\n  ".join(tried)))


def _errcheck(result, func, args):
    """Turns a non-zero sf_status into SwiftFlowsError (message from sf_last_error)."""
    if result != 0:
        raw = lib.sf_last_error()
        message = raw.decode("utf-8", "replace") if raw else ""
        raise SwiftFlowsError(result, message, func.__name__)
    return result


# name: (restype, argtypes, returns an sf_status)
_SIGNATURES = {
    "sf_version_string": (c_char_p, [], False),
    "sf_version_number": (c_int, [], False),
    "sf_status_string": (c_char_p, [c_int], False),
    "sf_last_error": (c_char_p, [], False),
    "sf_set_num_threads": (c_int, [c_int], True),
    "sf_get_num_threads": (c_int, [], False),
    "sf_set_memory_limit": (c_int, [c_uint64], True),
    "sf_get_memory_limit": (c_uint64, [], False),
    "sf_cancel": (c_int, [ModelPtr], True),
    "sf_model_create": (c_int, [c_char_p, c_uint64, POINTER(ModelPtr)], True),
    "sf_model_load": (c_int, [c_char_p, POINTER(ModelPtr)], True),
    "sf_model_load_memory": (c_int, [c_void_p, c_size_t, POINTER(ModelPtr)], True),
    "sf_model_save": (c_int, [ModelPtr, c_char_p], True),
    "sf_model_save_memory": (c_int, [ModelPtr, POINTER(c_void_p), POINTER(c_size_t)], True),
    "sf_model_spec": (c_int, [ModelPtr, POINTER(c_void_p)], True),
    "sf_buffer_free": (None, [c_void_p], False),
    "sf_model_free": (None, [ModelPtr], False),
    "sf_model_event_size": (c_int, [ModelPtr, POINTER(c_size_t)], True),
    "sf_model_event_shape": (c_int, [ModelPtr, POINTER(c_size_t), c_size_t, POINTER(c_size_t)], True),
    "sf_model_num_parameters": (c_int, [ModelPtr, POINTER(c_size_t)], True),
    "sf_forward": (c_int, [ModelPtr, float_ptr, c_size_t, float_ptr, double_ptr], True),
    "sf_inverse": (c_int, [ModelPtr, float_ptr, c_size_t, float_ptr, double_ptr], True),
    "sf_log_prob": (c_int, [ModelPtr, float_ptr, c_size_t, double_ptr], True),
    "sf_sample": (c_int, [ModelPtr, c_size_t, c_uint64, float_ptr, double_ptr], True),
    "sf_sample_temperature": (c_int, [ModelPtr, c_size_t, c_uint64, c_float, float_ptr, double_ptr], True),
    "sf_train_options_init": (None, [POINTER(TrainOptionsStruct)], False),
    "sf_train": (c_int, [ModelPtr, float_ptr, c_size_t, float_ptr, c_size_t, POINTER(TrainOptionsStruct),
                         POINTER(EpochReportStruct), c_size_t, POINTER(c_size_t)], True),
    "sf_train_resume": (c_int, [c_char_p, float_ptr, c_size_t, float_ptr, c_size_t, c_uint32, ProgressFn, c_void_p,
                                POINTER(EpochReportStruct), c_size_t, POINTER(c_size_t), POINTER(ModelPtr)], True),
    "sf_train_resume_v2": (c_int, [c_char_p, float_ptr, c_size_t, c_size_t, float_ptr, c_size_t, c_uint32, ProgressFn,
                                   c_void_p, POINTER(EpochReportStruct), c_size_t, POINTER(c_size_t),
                                   POINTER(ModelPtr)], True),
    "sf_model_context_size": (c_int, [ModelPtr, POINTER(c_size_t)], True),
    "sf_forward_context": (c_int, [ModelPtr, float_ptr, float_ptr, c_size_t, float_ptr, double_ptr], True),
    "sf_inverse_context": (c_int, [ModelPtr, float_ptr, float_ptr, c_size_t, float_ptr, double_ptr], True),
    "sf_log_prob_context": (c_int, [ModelPtr, float_ptr, float_ptr, c_size_t, double_ptr], True),
    "sf_sample_context": (c_int, [ModelPtr, c_size_t, c_uint64, float_ptr, c_size_t, float_ptr, double_ptr], True),
    "sf_train_context": (c_int, [ModelPtr, float_ptr, float_ptr, c_size_t, float_ptr, float_ptr, c_size_t,
                                 POINTER(TrainOptionsStruct), POINTER(EpochReportStruct), c_size_t, POINTER(c_size_t)],
                         True),
    "sf_train_resume_context": (c_int, [c_char_p, float_ptr, float_ptr, c_size_t, c_size_t, c_size_t, float_ptr,
                                        float_ptr, c_size_t, c_uint32, ProgressFn, c_void_p, POINTER(EpochReportStruct),
                                        c_size_t, POINTER(c_size_t), POINTER(ModelPtr)], True),
    "sf_toy_conditional_dataset": (c_int, [c_char_p, c_size_t, c_uint64, float_ptr, float_ptr, double_ptr], True),
    "sf_toy_dataset": (c_int, [c_char_p, c_size_t, c_uint64, float_ptr], True),
    "sf_toy_dataset_count": (c_size_t, [], False),
    "sf_toy_dataset_name": (c_char_p, [c_size_t], False),
    "sf_toy_dataset_entropy": (c_int, [c_char_p, double_ptr, POINTER(c_int)], True),
    "sf_preset_count": (c_size_t, [], False),
    "sf_preset_name": (c_char_p, [c_size_t], False),
    "sf_preset_defaults": (c_int, [c_char_p, POINTER(c_void_p)], True),
    "sf_file_checksum_block": (c_int, [c_void_p, c_size_t, c_void_p, c_size_t], True),
    "sf_file_reseal_memory": (c_int, [c_void_p, c_size_t], True),
    "sf_file_reseal": (c_int, [c_char_p], True),
}


def _declare(library, path):
    """Sets restype/argtypes (and the status check) of every sf_ function."""
    for name, (restype, argtypes, checked) in _SIGNATURES.items():
        try:
            func = getattr(library, name)
        except AttributeError:
            raise ImportError("swiftflows: %s does not export %s (an incompatible build?)"
                              % (path, name)) from None
        func.restype = restype
        func.argtypes = argtypes
        if checked:
            func.errcheck = _errcheck


lib, library_path = _open_library()
_declare(lib, library_path)

_number = lib.sf_version_number()
if _number // 10000 != VERSION_MAJOR:
    raise ImportError("swiftflows %s needs libswiftflows major version %d, but %s is version %s"
                      % (__version__, VERSION_MAJOR, library_path,
                         lib.sf_version_string().decode("ascii", "replace")))
del _number


def _check_train_options_layout():
    """The library's sf_train_options must have the layout of TrainOptionsStruct: the library
    writes its own sizeof into struct_size, which must equal ctypes' size of the mirror."""
    probe = TrainOptionsStruct()
    probe.struct_size = 0
    lib.sf_train_options_init(ctypes.byref(probe))
    if probe.struct_size != ctypes.sizeof(TrainOptionsStruct):
        raise ImportError("swiftflows: %s has sizeof(sf_train_options) = %d, but this package's mirror has %d bytes "
                          "(a header/package mismatch)" % (library_path, probe.struct_size,
                                                           ctypes.sizeof(TrainOptionsStruct)))


_check_train_options_layout()


def _names(count, name):
    """The static strings name(0 .. count() - 1) of the library, decoded."""
    return tuple(name(i).decode("utf-8") for i in range(count()))


def preset_names():
    """Names of the library's presets (``sf_preset_name``), e.g. ``("realnvp", ...)``."""
    return _names(lib.sf_preset_count, lib.sf_preset_name)


def preset_defaults(preset):
    """``{option: default}`` of the library's preset ``preset`` (``sf_preset_defaults``); None
    marks an option without a default (required, or left out unless given)."""
    out = c_void_p()
    lib.sf_preset_defaults(preset.encode("utf-8"), ctypes.byref(out))
    try:
        text = ctypes.string_at(out.value)
    finally:
        lib.sf_buffer_free(out)
    return json.loads(text.decode("utf-8"))


def toy_names():
    """Names of the library's toy data sets (``sf_toy_dataset_name``)."""
    return _names(lib.sf_toy_dataset_count, lib.sf_toy_dataset_name)


def toy_entropy(name):
    """The library's entropy (nats) of the toy set ``name``, or None where it is not known
    (``sf_toy_dataset_entropy``)."""
    value, known = c_double(), c_int()
    lib.sf_toy_dataset_entropy(name.encode("utf-8"), ctypes.byref(value), ctypes.byref(known))
    return value.value if known.value else None


def library_version():
    """The loaded library's version string, e.g. ``"0.1.0"``."""
    return lib.sf_version_string().decode("ascii", "replace")


def _c_int(value, what):
    value = operator.index(value)
    if not -2**31 <= value < 2**31:
        raise ValueError("%s out of range: %d" % (what, value))
    return value


def set_num_threads(num_threads):
    """Sets the number of threads the library uses for batch work (process-wide).

    Results do not depend on it. Raising it above the largest count used so far first warms
    OpenBLAS's work buffers for the new threads (``sf_set_num_threads``: a few milliseconds per
    thread, once).
    """
    lib.sf_set_num_threads(_c_int(num_threads, "num_threads"))


def get_num_threads():
    """The number of threads the library uses for batch work."""
    return int(lib.sf_get_num_threads())


def set_memory_limit(num_bytes):
    """Sets the most bytes one call into the library may allocate (process-wide; at least 1 MiB).

    Creating or loading a model, a training run and an evaluation each check what they need
    against it before allocating, and fail with ``SF_ERR_LIMIT`` instead (``sf_set_memory_limit``;
    default ``DEFAULT_MEMORY_LIMIT``, 2 GiB, or the environment variable
    ``SWIFTFLOWS_MEMORY_LIMIT``).
    """
    value = operator.index(num_bytes)
    if not 0 <= value < 2**64:
        raise ValueError("num_bytes out of range: %d" % value)
    lib.sf_set_memory_limit(value)


def get_memory_limit():
    """The memory limit in bytes (``sf_get_memory_limit``)."""
    return int(lib.sf_get_memory_limit())
