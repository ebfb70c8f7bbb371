"""The SwiftFlows file checksum (docs/model-format.md, "File checksum and pre-checks").

Files written by SwiftFlows start with a 512-byte HDF5 user block holding
``SWIFTFLOWS-CHECKSUM 1\\nsize <bytes>\\ncrc32 <8 hex digits>\\n`` (zero-padded): the file's size and
the CRC-32 of every byte after the user block. The library refuses a file whose bytes do not match
(``SF_ERR_CORRUPT``). HDF5 programs such as h5py skip the user block, so they read these files as
usual; after a deliberate edit with one (``h5py.File(path, "r+")``), call :func:`reseal` so that
SwiftFlows loads the file again.

The block is computed and written by the library (``sf_file_checksum_block``,
``sf_file_reseal_memory``, ``sf_file_reseal``); this module only wraps those calls.
"""

import ctypes
import os

from ._native import lib
from .errors import SwiftFlowsError

__all__ = ["USER_BLOCK_SIZE", "checksum_header", "is_sealed", "reseal", "reseal_bytes"]

#: Size of the user block that holds the header (``SF_FILE_CHECKSUM_BLOCK_SIZE``).
USER_BLOCK_SIZE = 512
_SF_ERR_FORMAT = 5


def _no_user_block(call, *args):
    """Runs a reseal call; the library's SF_ERR_FORMAT (no user block) becomes ValueError."""
    try:
        call(*args)
    except SwiftFlowsError as exc:
        if exc.status == _SF_ERR_FORMAT:
            raise ValueError(exc.message) from None
        raise


def checksum_header(data):
    """The 512-byte checksum block for the file bytes ``data`` (its own first 512 bytes are ignored)."""
    data = bytes(data)
    out = ctypes.create_string_buffer(USER_BLOCK_SIZE)
    lib.sf_file_checksum_block(data, len(data), out, USER_BLOCK_SIZE)
    return out.raw


def is_sealed(data):
    """Whether ``data`` starts with a SwiftFlows checksum block that matches the bytes."""
    data = bytes(data)
    return len(data) > USER_BLOCK_SIZE and data[:USER_BLOCK_SIZE] == checksum_header(data)


def reseal_bytes(data):
    """``data`` (an HDF5 file image with a 512-byte user block) with a fresh checksum block.

    Raises ValueError if the image has no 512-byte user block (e.g. written by h5py, which needs
    no checksum: SwiftFlows loads such files as they are).
    """
    buf = ctypes.create_string_buffer(bytes(data), len(data))
    _no_user_block(lib.sf_file_reseal_memory, buf, len(data))
    return buf.raw


def reseal(path):
    """Rewrites the checksum block of the SwiftFlows file at ``path`` after a deliberate edit by
    another HDF5 program. Only do this for files you changed on purpose: it makes SwiftFlows
    accept whatever bytes the file now holds. The file is replaced atomically (``sf_file_reseal``).
    Raises ValueError if the file has no 512-byte user block, SwiftFlowsError if it cannot be
    read or written."""
    _no_user_block(lib.sf_file_reseal, os.fsencode(os.fspath(path)))
