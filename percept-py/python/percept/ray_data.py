"""Scale-out with Ray Data: an actor class for ``Dataset.map_batches``.

Each actor loads the model once and keeps one Session; Ray sends it batches of rows. With
images of one size in an ``"image"`` column (H x W x 3 uint8, as ``ray.data.read_images``
gives)::

    import ray, percept.ray_data
    ds = ray.data.read_images("s3://bucket/frames/")          # column "image"
    ds = ds.map_batches(
        percept.ray_data.Predictor,
        fn_constructor_kwargs={"task": "depth", "model": "generalist.safetensors",
                               "device": "cuda", "num_inference_steps": 50},
        batch_size=8, concurrency=4, num_gpus=1,             # one GPU per actor
    )
    ds.write_numpy("out/", column="depth")

Tasks and columns: "depth" reads ``image`` and adds ``depth`` (N x H x W float32); "flow"
reads ``frame1``/``frame2`` and adds ``flow`` (N x H x W x 2); "amodal" reads ``image``/``mask``
and adds ``amodal`` (N x H x W x 3) and ``amodal_mask`` (N x H x W bool). Column names can be
changed with ``input_columns``/``output_column``. Ray is not a dependency of percept; this
module imports nothing from it.
"""

from typing import Any, Dict, Optional, Sequence

import numpy as np

from ._api import Model, Session

__all__ = ["Predictor"]

_INPUTS = {"depth": ("image",), "flow": ("frame1", "frame2"), "amodal": ("image", "mask")}


class Predictor:
    """Callable actor for ``map_batches``: ``Predictor(task, model=None, device="auto", **options)``.

    model: a model path, or None for the demo model. options: the task's keyword arguments
    (num_inference_steps, ensemble_size, seed, ...).
    """

    def __init__(
        self,
        task: str = "depth",
        model: Optional[str] = None,
        device: str = "auto",
        input_columns: Optional[Sequence[str]] = None,
        output_column: Optional[str] = None,
        **options: Any,
    ):
        if task not in _INPUTS:
            raise ValueError(f"task: expected one of {sorted(_INPUTS)}, got {task!r}")
        self.task = task
        self.inputs = tuple(input_columns) if input_columns is not None else _INPUTS[task]
        if len(self.inputs) != len(_INPUTS[task]):
            raise ValueError(f"input_columns: task {task!r} reads {len(_INPUTS[task])} column(s), got {self.inputs}")
        self.output = output_column or task
        self.options = options
        self.session = Session(Model.load(model), device=device)

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        columns = [list(batch[c]) for c in self.inputs]
        method = getattr(self.session, self.task)
        results = method(*columns, **self.options)
        out = dict(batch)
        out[self.output] = np.stack([r.prediction for r in results])
        if self.task == "amodal":
            out[self.output + "_mask"] = np.stack([r.mask for r in results])
        return out
