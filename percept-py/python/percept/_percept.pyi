# Type stubs of the compiled module percept._percept (percept-py/src/). The public API is the
# pure-Python layer (percept.Model, percept.Session), which checks arguments before calling here.
from typing import Any, Callable, List, Optional, Tuple

import numpy as np
import numpy.typing as npt

__version__: str

class Error(Exception):
    """An engine error; args are (kind, message). percept._errors.translate maps it to the
    PerceptError family."""

class Model:
    @staticmethod
    def load(path: str, sd2: Optional[str] = None) -> Model: ...
    @staticmethod
    def demo() -> Model: ...
    @staticmethod
    def from_bytes(data: bytes) -> Model: ...
    @staticmethod
    def synthetic_generalist() -> Model: ...
    @property
    def resolution(self) -> int: ...
    @property
    def description(self) -> str: ...
    @property
    def parameter_count(self) -> int: ...

_Image = npt.NDArray[Any]  # uint8 or float32, (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)
_F32 = npt.NDArray[np.float32]
_ProgressFn = Optional[Callable[[int, int], Any]]

class Session:
    def __init__(
        self, model: Model, device: str = "auto", threads: Optional[int] = None, precision: Optional[str] = None
    ) -> None: ...
    @property
    def device_name(self) -> str: ...
    def cancel(self) -> None: ...
    def warmup(self, batch: int, steps: int) -> None: ...
    def depth(
        self,
        images: List[_Image],
        num_inference_steps: int,
        ensemble_size: int,
        seed: int,
        batch_size: Optional[int],
        match_input_resolution: bool,
        output_uncertainty: bool,
        latents: Optional[_F32],
        output_latent: bool,
        progress: _ProgressFn,
    ) -> List[Tuple[_F32, Optional[_F32], Optional[_F32]]]: ...
    def flow(
        self,
        frames1: List[_Image],
        frames2: List[_Image],
        num_inference_steps: int,
        ensemble_size: int,
        seed: int,
        batch_size: Optional[int],
        match_input_resolution: bool,
        latents: Optional[_F32],
        output_latent: bool,
        progress: _ProgressFn,
    ) -> List[Tuple[_F32, Optional[_F32]]]: ...
    def amodal(
        self,
        images: List[_Image],
        masks: List[_Image],
        num_inference_steps: int,
        ensemble_size: int,
        seed: int,
        batch_size: Optional[int],
        match_input_resolution: bool,
        latents: Optional[_F32],
        output_latent: bool,
        progress: _ProgressFn,
    ) -> List[Tuple[_F32, npt.NDArray[np.bool_], Optional[_F32]]]: ...
