"""The Ray Data example: percept.ray_data.Predictor in Dataset.map_batches.

Runs when Ray is installed (percept-py/test.sh installs ray[data] with a time limit); skipped
with the reason otherwise.
"""

import os

import numpy as np
import pytest

from conftest import STEPS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # from inside ray

ray = pytest.importorskip(
    "ray", reason=os.environ.get("PERCEPT_PY_RAY_SKIP", "ray is not installed (pip install 'ray[data]')")
)


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_map_batches_depth(ray_cluster, session, depth_image):
    import percept.ray_data

    images = [depth_image, depth_image[::-1].copy(), depth_image[:, ::-1].copy()]
    ds = ray.data.from_items([{"image": im} for im in images])
    out = ds.map_batches(
        percept.ray_data.Predictor,
        fn_constructor_kwargs={"task": "depth", "device": "cpu", "num_inference_steps": STEPS},
        batch_size=2,
        concurrency=1,
    ).take_all()
    assert len(out) == 3
    got = {row["image"].tobytes(): row["depth"] for row in out}
    for im in images:
        want = session.depth(im, num_inference_steps=STEPS).prediction
        np.testing.assert_allclose(got[im.tobytes()], want, rtol=0, atol=1e-6)
