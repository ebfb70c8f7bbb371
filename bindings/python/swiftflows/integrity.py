"""The SwiftFlows file checksum (docs/model-format.md, "File checksum and pre-checks").

Files written by SwiftFlows start with a 512-byte HDF5 user block holding
``SWIFTFLOWS-CHECKSUM 1\\nsize <bytes>\\ncrc32 <8 hex digits>\\n`` (zero-padded): the file's size and
the CRC-32 of every byte after the user block. The library refuses a file whose bytes do not match
(``SF_ERR_CORRUPT``). HDF5 programs such as h5py skip the user block, so they read these files as
usual; after a deliberate edit with one (``h5py.File(path, "r+")``), call :func:`reseal` so that
SwiftFlows loads the file again.
"""

import os
import zlib

__all__ = ["USER_BLOCK_SIZE", "checksum_header", "is_sealed", "reseal", "reseal_bytes"]

#: Size of the user block that holds the header.
USER_BLOCK_SIZE = 512
_MAGIC = b"SWIFTFLOWS-CHECKSUM "
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def checksum_header(data):
    """The 512-byte checksum block for the file bytes ``data`` (its own first 512 bytes are ignored)."""
    data = memoryview(data)
    text = b"SWIFTFLOWS-CHECKSUM 1\nsize %d\ncrc32 %08x\n" % (len(data), zlib.crc32(data[USER_BLOCK_SIZE:]) & 0xFFFFFFFF)
    return text + bytes(USER_BLOCK_SIZE - len(text))


def is_sealed(data):
    """Whether ``data`` starts with a SwiftFlows checksum block that matches the bytes."""
    data = bytes(data)
    return len(data) > USER_BLOCK_SIZE and data[:USER_BLOCK_SIZE] == checksum_header(data)


def reseal_bytes(data):
    """``data`` (an HDF5 file image with a 512-byte user block) with a fresh checksum block.

    Raises ValueError if the image has no 512-byte user block (e.g. written by h5py, which needs
    no checksum: SwiftFlows loads such files as they are).
    """
    data = bytes(data)
    if data[USER_BLOCK_SIZE:USER_BLOCK_SIZE + len(_HDF5_SIGNATURE)] != _HDF5_SIGNATURE:
        raise ValueError("not an HDF5 file with a %d-byte user block: there is no checksum to update"
                         % USER_BLOCK_SIZE)
    return checksum_header(data) + data[USER_BLOCK_SIZE:]


def reseal(path):
    """Rewrites the checksum block of the SwiftFlows file at ``path`` after a deliberate edit by
    another HDF5 program. Only do this for files you changed on purpose: it makes SwiftFlows
    accept whatever bytes the file now holds. The file is replaced atomically."""
    path = os.fspath(path)
    with open(path, "rb") as fh:
        data = fh.read()
    sealed = reseal_bytes(data)
    tmp = "%s.reseal.%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as fh:
            fh.write(sealed)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
