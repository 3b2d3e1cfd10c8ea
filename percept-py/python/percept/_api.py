"""Model and Session: the package's public classes (diffusers' Marigold names, percept's defaults)."""

import os
from typing import Any, Callable, List, Optional, Union

import numpy as np

from . import _percept
from ._errors import ModelNotFoundError, call
from ._images import as_batch
from ._progress import make_progress
from ._results import AmodalResult, DepthResult, FlowResult

__all__ = ["Model", "Session"]

PathLike = Union[str, "os.PathLike[str]"]
Progress = Union[bool, Callable[[int, int], Any], None]


class Model:
    """A loaded model: weights and configs, shared by every Session made from it (loading is
    the slow part; make several sessions from one model rather than loading it twice)."""

    def __init__(self, _inner: "_percept.Model"):
        self._inner = _inner

    @classmethod
    def load(cls, path: Optional[PathLike] = None, sd2: Optional[PathLike] = None) -> "Model":
        """Load a model.

        path: None for the demo model shipped in the package (128 px, 3 M parameters, trained on
            percept's toy data: for trying the API, not for real photos); a percept
            ``.safetensors`` (as ``percept convert`` writes), or the authors' ``.pt`` checkpoint
            (``config.json`` beside it).
        sd2: the Stable-Diffusion-2 folder (diffusers layout) for the VAE and scheduler, when the
            model file does not carry them (the published ``.pt`` does not).

        Raises FileNotFoundError (ModelNotFoundError) when ``path`` or ``sd2`` does not exist,
        ModelError when the file is not a usable model.
        """
        if path is None:
            if sd2 is not None:
                raise ValueError("sd2 is for a model file given as path; the demo model carries its own VAE")
            return cls(call(_percept.Model.demo))
        path = os.fspath(path)
        for what, p in (("model", path), ("sd2 folder", None if sd2 is None else os.fspath(sd2))):
            if p is not None and not os.path.exists(p):
                raise ModelNotFoundError(2, f"{what} not found", p)
        return cls(call(_percept.Model.load, path, None if sd2 is None else os.fspath(sd2)))

    @classmethod
    def from_bytes(cls, data: bytes) -> "Model":
        """A percept ``.safetensors`` file's bytes (config in its metadata)."""
        return cls(call(_percept.Model.from_bytes, data))

    @classmethod
    def synthetic_generalist(cls) -> "Model":
        """The published model's shapes (512 px, 2.7 B parameters) with synthetic weights: for
        timing and memory checks, its outputs mean nothing."""
        return cls(call(_percept.Model.synthetic_generalist))

    @property
    def resolution(self) -> int:
        """The model's input side in pixels (inputs are resized to it and results back)."""
        return self._inner.resolution

    @property
    def description(self) -> str:
        return self._inner.description

    @property
    def parameter_count(self) -> int:
        return self._inner.parameter_count

    def __repr__(self) -> str:
        return f"<percept.Model {self.description!r}, {self.resolution} px, {self.parameter_count:,} parameters>"


def _count(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _seed(seed: Any) -> int:
    seed = _count("seed", seed, 0)
    if seed >= 2**64:
        raise ValueError(f"seed must be below 2**64, got {seed}")
    return seed


def _latents(latents: Any) -> Optional[np.ndarray]:
    if latents is None:
        return None
    a = np.asarray(latents)
    if a.dtype.kind != "f":
        raise ValueError(f"latents: expected a float array, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.ndim != 4:
        raise ValueError(f"latents: expected shape (N, C, h, w), got {a.shape}")
    return a


class Session:
    """A model on a device, ready to run depth, flow and amodal segmentation.

    device: "auto" (a CUDA GPU if one works, else the CPU), "cpu", "cuda" or "cuda:N".
    threads: CPU worker threads (device="cpu" only; default: all cores).
    precision: "f32" or "bf16" (default: bf16 on a GPU, f32 on the CPU). bf16 stores weights and
    activations in bf16 with f32 sums: half the memory, within about 1e-2 of f32.

    Calls release the GIL while they compute, so sessions in several threads run in parallel;
    one session runs one call at a time (calls from other threads wait). Ctrl-C stops a running
    call with KeyboardInterrupt; ``cancel()`` from another thread stops it with CancelledError;
    either way the session stays usable. The same inputs, seed and options give bit-identical
    results on the CPU.
    """

    def __init__(
        self, model: Model, device: str = "auto", *, threads: Optional[int] = None, precision: Optional[str] = None
    ):
        if not isinstance(model, Model):
            raise TypeError(f"model: expected a percept.Model, got {type(model).__name__}")
        if not isinstance(device, str):
            raise TypeError(f"device: expected a str such as \"cpu\" or \"cuda:0\", got {type(device).__name__}")
        if threads is not None:
            threads = _count("threads", threads)
        if precision is not None and precision not in ("f32", "bf16"):
            raise ValueError(f"precision: expected \"f32\" or \"bf16\", got {precision!r}")
        self._model = model
        self._inner = call(_percept.Session, model._inner, device, threads, precision)

    @property
    def model(self) -> Model:
        return self._model

    @property
    def device(self) -> str:
        """Where this session runs, e.g. "cpu (2 threads, AMX GEMM)"."""
        return self._inner.device_name

    def cancel(self) -> None:
        """Stop the call running in another thread at its next denoising step (it raises
        CancelledError); the session stays usable."""
        self._inner.cancel()

    def warmup(self, batch_size: int = 1, num_inference_steps: int = 1) -> None:
        """Run the model once so the first real call does not pay for setup (GPU kernels)."""
        call(self._inner.warmup, _count("batch_size", batch_size), _count("num_inference_steps", num_inference_steps))

    def __repr__(self) -> str:
        return f"<percept.Session on {self.device}>"

    def _run(self, method, desc: str, progress: Progress, *args):
        callback, close = make_progress(progress, desc)
        try:
            return call(method, *args, callback)
        finally:
            close()

    def depth(
        self,
        image: Any,
        num_inference_steps: int = 50,
        ensemble_size: int = 1,
        seed: int = 0,
        batch_size: Optional[int] = None,
        match_input_resolution: bool = True,
        output_uncertainty: bool = False,
        latents: Optional[np.ndarray] = None,
        output_latent: bool = False,
        progress: Progress = False,
    ) -> Union[DepthResult, List[DepthResult]]:
        """Relative depth (Marigold's convention: affine-invariant, 0 near and 1 far).

        image: H x W x 3 uint8 or float32 in [0, 1] (also H x W x 4, grayscale H x W, bool,
            float64, PIL images); a list of them (or an N x H x W x C array) for a batch, which
            returns a list.
        num_inference_steps: DDIM steps. ensemble_size: predictions per image, aligned and
            combined by the median (Marigold's ensembling). seed: the noise; the same seed gives
            the same result. batch_size: inputs per model batch (None: the engine's default);
            does not change results.
        match_input_resolution: True: the result at the input's size; False: at the model's.
        output_uncertainty: also return the members' spread (needs ensemble_size > 1).
        latents: initial noise instead of the seed's, float32 (N, C, h, w).
        output_latent: also return the final latent.
        progress: True for a progress bar (tqdm if installed), or a function f(step, steps)
            called after each denoising step (return False to stop: CancelledError).

        Returns DepthResult (.prediction H x W float32 in [0, 1], .uncertainty, .latent).
        """
        images, is_batch = as_batch(image, "image")
        steps, ens, seed = _count("num_inference_steps", num_inference_steps), _count("ensemble_size", ensemble_size), _seed(seed)
        if output_uncertainty and ens < 2:
            raise ValueError("output_uncertainty needs ensemble_size > 1 (the uncertainty is the members' spread)")
        bs = None if batch_size is None else _count("batch_size", batch_size)
        raw = self._run(
            self._inner.depth, "depth", progress,
            images, steps, ens, seed, bs, bool(match_input_resolution), bool(output_uncertainty),
            _latents(latents), bool(output_latent),
        )
        results = [DepthResult(prediction=d, uncertainty=u, latent=l) for d, u, l in raw]
        return results if is_batch else results[0]

    def flow(
        self,
        frame1: Any,
        frame2: Any,
        num_inference_steps: int = 50,
        ensemble_size: int = 1,
        seed: int = 0,
        batch_size: Optional[int] = None,
        match_input_resolution: bool = True,
        latents: Optional[np.ndarray] = None,
        output_latent: bool = False,
        progress: Progress = False,
    ) -> Union[FlowResult, List[FlowResult]]:
        """Optical flow from frame1 to frame2 (same size; images as for ``depth``; lists of
        equal length for a batch). ensemble_size > 1 averages the members.

        Returns FlowResult (.prediction H x W x 2 float32: u, v in pixels at the returned
        size, .latent).
        """
        firsts, batch1 = as_batch(frame1, "frame1")
        seconds, batch2 = as_batch(frame2, "frame2")
        if batch1 != batch2 or len(firsts) != len(seconds):
            raise ValueError(
                f"frame1 and frame2 must both be single images or lists of the same length "
                f"(got {len(firsts) if batch1 else 'an image'} and {len(seconds) if batch2 else 'an image'})"
            )
        raw = self._run(
            self._inner.flow, "flow", progress,
            firsts, seconds, _count("num_inference_steps", num_inference_steps),
            _count("ensemble_size", ensemble_size), _seed(seed),
            None if batch_size is None else _count("batch_size", batch_size),
            bool(match_input_resolution), _latents(latents), bool(output_latent),
        )
        results = [FlowResult(prediction=f, latent=l) for f, l in raw]
        return results if batch1 else results[0]

    def amodal(
        self,
        image: Any,
        mask: Any,
        num_inference_steps: int = 50,
        ensemble_size: int = 1,
        seed: int = 0,
        batch_size: Optional[int] = None,
        match_input_resolution: bool = True,
        latents: Optional[np.ndarray] = None,
        output_latent: bool = False,
        progress: Progress = False,
    ) -> Union[AmodalResult, List[AmodalResult]]:
        """Amodal completion: the whole object whose visible part ``mask`` marks.

        mask: same size as the image; a pixel is "visible object" where its mean value is
        above one half (bool, uint8 0/255, float 0/1, or a PIL "L"/"1" image).
        ensemble_size > 1 takes the members' median.

        Returns AmodalResult (.prediction H x W x 3 float32 RGB in [0, 1], .mask H x W bool,
        .latent).
        """
        images, batch1 = as_batch(image, "image")
        masks, batch2 = as_batch(mask, "mask")
        if batch1 != batch2 or len(images) != len(masks):
            raise ValueError(
                f"image and mask must both be single images or lists of the same length "
                f"(got {len(images) if batch1 else 'an image'} and {len(masks) if batch2 else 'a mask'})"
            )
        raw = self._run(
            self._inner.amodal, "amodal", progress,
            images, masks, _count("num_inference_steps", num_inference_steps),
            _count("ensemble_size", ensemble_size), _seed(seed),
            None if batch_size is None else _count("batch_size", batch_size),
            bool(match_input_resolution), _latents(latents), bool(output_latent),
        )
        results = [AmodalResult(prediction=p, mask=m, latent=l) for p, m, l in raw]
        return results if batch1 else results[0]
