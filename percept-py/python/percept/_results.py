"""What the tasks return: numpy arrays at the input's size, in the layout diffusers' Marigold
pipelines use for one image (H x W for depth, H x W x C otherwise)."""

from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["DepthResult", "FlowResult", "AmodalResult"]


def _describe(name: str, a: Optional[np.ndarray]) -> str:
    return f"{name}=None" if a is None else f"{name}=<{a.dtype} {'x'.join(map(str, a.shape))}>"


class _Result:
    def __repr__(self) -> str:
        fields = ", ".join(_describe(k, v) for k, v in self.__dict__.items())
        return f"{type(self).__name__}({fields})"


@dataclass(repr=False, eq=False)
class DepthResult(_Result):
    """Relative depth of one image.

    prediction: H x W float32 in [0, 1] (0 near, 1 far; affine-invariant, as Marigold's).
    uncertainty: H x W float32, the ensemble members' spread (``output_uncertainty=True``).
    latent: the final latent, float32 (``output_latent=True``).
    """

    prediction: np.ndarray
    uncertainty: Optional[np.ndarray] = None
    latent: Optional[np.ndarray] = None


@dataclass(repr=False, eq=False)
class FlowResult(_Result):
    """Optical flow from frame1 to frame2.

    prediction: H x W x 2 float32, (u, v) in pixels at the returned size.
    latent: the final latent, float32 (``output_latent=True``).
    """

    prediction: np.ndarray
    latent: Optional[np.ndarray] = None


@dataclass(repr=False, eq=False)
class AmodalResult(_Result):
    """Amodal completion: the whole object, hidden parts drawn in.

    prediction: H x W x 3 float32 RGB in [0, 1].
    mask: H x W bool, the whole object's pixels.
    latent: the final latent, float32 (``output_latent=True``).
    """

    prediction: np.ndarray
    mask: np.ndarray
    latent: Optional[np.ndarray] = None
