"""Exceptions raised by the swiftflows package."""

__all__ = ["SwiftFlowsError", "STATUS_NAMES"]

#: sf_status codes of include/swiftflows.h, by value.
STATUS_NAMES = {
    0: "SF_OK",
    1: "SF_ERR_INVALID_ARGUMENT",
    2: "SF_ERR_SHAPE",
    3: "SF_ERR_SPEC",
    4: "SF_ERR_IO",
    5: "SF_ERR_FORMAT",
    6: "SF_ERR_UNSUPPORTED_VERSION",
    7: "SF_ERR_UNKNOWN_TYPE",
    8: "SF_ERR_LIMIT",
    9: "SF_ERR_NUMERIC",
    10: "SF_ERR_CANCELLED",
    11: "SF_ERR_INTERNAL",
    12: "SF_ERR_CORRUPT",
    13: "SF_ERR_MEMORY",
}


class SwiftFlowsError(RuntimeError):
    """A call into libswiftflows failed.

    Attributes:
        status: the non-zero ``sf_status`` code (int).
        status_name: its symbolic name, e.g. ``"SF_ERR_FORMAT"`` (``"SF_ERR_<n>"`` for codes
            newer than this package).
        message: the library's description of the failure (``sf_last_error()``).
        function: the name of the C function that failed.
    """

    def __init__(self, status, message, function=None):
        self.status = int(status)
        self.status_name = STATUS_NAMES.get(self.status, "SF_ERR_%d" % self.status)
        self.message = message
        self.function = function
        super().__init__(self.status, message)

    def __str__(self):
        where = " in %s" % self.function if self.function else ""
        text = self.message or "(no message)"
        return "%s [%s%s]" % (text, self.status_name, where)

    def __reduce__(self):
        return (type(self), (self.status, self.message, self.function))
