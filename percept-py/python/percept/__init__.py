"""percept: depth, optical flow and amodal segmentation with one DiT-MoE diffusion model, run by
a native engine (Rust; CPU, or CUDA when a GPU and its driver are there). numpy in, numpy out.

    import numpy as np, percept
    model = percept.Model.load()                  # None: the demo model shipped in the package
    session = percept.Session(model, device="cpu")
    depth = session.depth(np.asarray(image), num_inference_steps=10).prediction   # H x W in [0, 1]

The call names follow diffusers' Marigold pipelines (num_inference_steps, ensemble_size,
match_input_resolution, output_uncertainty, latents, output_latent); the defaults are percept's.
"""

from ._percept import __version__
from ._errors import (
    CancelledError,
    DeviceError,
    DeviceNotAvailableError,
    InvalidArgumentError,
    ModelError,
    ModelNotFoundError,
    OutOfMemoryError,
    PerceptError,
    PerceptIOError,
)
from ._results import AmodalResult, DepthResult, FlowResult
from ._api import Model, Session

__all__ = [
    "__version__",
    "Model",
    "Session",
    "DepthResult",
    "FlowResult",
    "AmodalResult",
    "PerceptError",
    "InvalidArgumentError",
    "PerceptIOError",
    "ModelNotFoundError",
    "ModelError",
    "DeviceError",
    "DeviceNotAvailableError",
    "OutOfMemoryError",
    "CancelledError",
]
