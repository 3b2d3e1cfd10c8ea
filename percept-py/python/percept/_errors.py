"""The PerceptError family: what the engine's errors become in Python.

Each class also derives from the builtin exception a Python user would catch for that kind of
failure (ValueError for bad arguments, OSError for files, MemoryError, RuntimeError for device
trouble), so ``except ValueError`` keeps working.
"""

from typing import Dict, Type

from . import _percept

__all__ = [
    "PerceptError",
    "InvalidArgumentError",
    "ModelNotFoundError",
    "PerceptIOError",
    "ModelError",
    "DeviceError",
    "DeviceNotAvailableError",
    "OutOfMemoryError",
    "CancelledError",
]


class PerceptError(Exception):
    """Base class of every error percept raises (KeyboardInterrupt and TypeError aside).

    ``kind`` names the engine's error kind ("InvalidArgument", "Io", "Weights", "Config",
    "NoDevice", "Device", "OutOfMemory", "Cancelled", "Internal").
    """

    kind = "Internal"


class InvalidArgumentError(PerceptError, ValueError):
    """A bad argument: an image's shape or dtype, a value out of range, mismatched inputs."""

    kind = "InvalidArgument"


class PerceptIOError(PerceptError, OSError):
    """A file could not be read or written."""

    kind = "Io"


class ModelNotFoundError(PerceptIOError, FileNotFoundError):
    """The model file (or SD-2 folder) given does not exist."""


class ModelError(PerceptError):
    """The model's weights or config are unusable (wrong tensors, shapes, or config)."""

    kind = "Weights"


class DeviceError(PerceptError, RuntimeError):
    """The device failed (CUDA driver, kernel launch)."""

    kind = "Device"


class DeviceNotAvailableError(DeviceError):
    """The device asked for is not there (no CUDA driver, no such GPU)."""

    kind = "NoDevice"


class OutOfMemoryError(PerceptError, MemoryError):
    """The device (or host) ran out of memory: try a smaller batch_size or ensemble_size."""

    kind = "OutOfMemory"


class CancelledError(PerceptError):
    """The call was stopped by Session.cancel() or by a progress function returning False."""

    kind = "Cancelled"


_BY_KIND: Dict[str, Type[PerceptError]] = {
    "InvalidArgument": InvalidArgumentError,
    "Io": PerceptIOError,
    "Weights": ModelError,
    "Config": ModelError,
    "NoDevice": DeviceNotAvailableError,
    "Device": DeviceError,
    "OutOfMemory": OutOfMemoryError,
    "Cancelled": CancelledError,
}


def translate(err: "_percept.Error") -> PerceptError:
    """The PerceptError for an engine error ``_percept.Error(kind, message)``."""
    if len(err.args) == 2:
        kind, message = err.args
    else:
        kind, message = "Internal", str(err)
    cls = _BY_KIND.get(kind, PerceptError)
    exc = cls(message)
    exc.kind = kind
    return exc


def call(fn, *args, **kwargs):
    """Call into the compiled module, raising engine errors as the PerceptError family."""
    try:
        return fn(*args, **kwargs)
    except _percept.Error as err:
        raise translate(err) from None
