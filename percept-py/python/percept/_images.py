"""Inputs as the compiled module takes them: C-contiguous numpy arrays, uint8 or float32 in
[0, 1], shaped H x W (gray), H x W x 1, H x W x 3 (RGB) or H x W x 4 (RGBA).

Accepted from the caller: numpy arrays (uint8, bool, or float16/32/64 in [0, 1]), PIL images,
anything ``numpy.asarray`` takes; and lists/tuples of those, or a 4-D array, for batches.
"""

from typing import Any, List, Sequence, Tuple

import numpy as np

__all__ = ["as_batch", "as_image"]

_FLOAT_DTYPES = (np.float16, np.float32, np.float64)


def _is_pil(obj: Any) -> bool:
    return type(obj).__module__.startswith("PIL.") and hasattr(obj, "mode")


def _from_pil(img: Any) -> np.ndarray:
    mode = img.mode
    if mode in ("RGB", "RGBA", "L"):
        return np.asarray(img)
    if mode == "1":
        return np.asarray(img, dtype=np.uint8) * np.uint8(255)
    if mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(img, dtype=np.float32) / np.float32(65535.0)
    if mode == "LA":
        return np.asarray(img.convert("L"))
    # P (palette), CMYK, YCbCr, HSV, I, F...: let PIL convert to RGB.
    return np.asarray(img.convert("RGB"))


def as_image(obj: Any, name: str) -> np.ndarray:
    """One image as the engine takes it, or ValueError/TypeError naming ``name``."""
    if _is_pil(obj):
        arr = _from_pil(obj)
    elif isinstance(obj, np.ndarray):
        arr = obj
    elif isinstance(obj, (str, bytes)) or hasattr(obj, "__fspath__"):
        raise TypeError(
            f"{name}: got a path ({obj!r}); pass the image itself, e.g. numpy.asarray(PIL.Image.open(path))"
        )
    else:
        try:
            arr = np.asarray(obj)
        except Exception as e:  # noqa: BLE001 - whatever numpy could not take
            raise TypeError(f"{name}: expected a numpy array or a PIL image, got {type(obj).__name__}") from e
        if arr.dtype == object:
            raise TypeError(f"{name}: expected a numpy array or a PIL image, got {type(obj).__name__}")

    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"{name}: expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {tuple(arr.shape)}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name}: empty image (shape {tuple(arr.shape)})")

    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * np.uint8(255)
    elif arr.dtype in _FLOAT_DTYPES:
        arr = arr.astype(np.float32, copy=False)
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: contains NaN or infinity")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{name}: float images must be in [0, 1], got values in [{lo:g}, {hi:g}] "
                "(divide uint8 data by 255, or pass it as uint8)"
            )
    else:
        raise ValueError(
            f"{name}: dtype {arr.dtype} is not supported; use uint8 (0-255), bool, or float in [0, 1]"
        )
    return np.ascontiguousarray(arr)


def _is_batch(obj: Any) -> bool:
    return isinstance(obj, (list, tuple)) or (isinstance(obj, np.ndarray) and obj.ndim == 4)


def as_batch(obj: Any, name: str) -> Tuple[List[np.ndarray], bool]:
    """(images, is_batch): a list/tuple/4-D array is a batch, anything else one image."""
    if not _is_batch(obj):
        return [as_image(obj, name)], False
    items: Sequence[Any] = list(obj)
    if len(items) == 0:
        raise ValueError(f"{name}: an empty batch")
    return [as_image(x, f"{name}[{i}]") for i, x in enumerate(items)], True
