"""The package version (kept apart so that _native can import it without cycles)."""

__version__ = "0.1.0"
VERSION_MAJOR = int(__version__.split(".")[0])
