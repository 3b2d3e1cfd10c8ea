"""The package's surface: version, model loading, sessions, input forms, and errors."""

import numpy as np
import pytest

import percept
from conftest import STEPS


def test_version_and_exports():
    assert isinstance(percept.__version__, str) and percept.__version__.count(".") == 2
    for name in percept.__all__:
        assert hasattr(percept, name), name
    assert issubclass(percept.InvalidArgumentError, ValueError)
    assert issubclass(percept.ModelNotFoundError, FileNotFoundError)
    assert issubclass(percept.CancelledError, percept.PerceptError)


def test_demo_model(model):
    assert model.resolution == 128
    assert 3_000_000 < model.parameter_count < 4_000_000
    assert "128" in repr(model)


def test_session_device(session):
    assert session.device.startswith("cpu")
    assert session.model is not None


def test_missing_model_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        percept.Model.load(tmp_path / "nope.safetensors")
    with pytest.raises(percept.PerceptError):
        percept.Model.load(tmp_path / "nope.safetensors")


def test_garbage_model_file_raises_percept_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(percept.PerceptError) as e:
        percept.Model.load(bad)
    assert not isinstance(e.value, FileNotFoundError)


def test_bad_device_is_a_value_error(model):
    with pytest.raises(ValueError, match="device"):
        percept.Session(model, device="tpu")
    with pytest.raises(TypeError):
        percept.Session("not a model", device="cpu")


def test_cpu_threads_option(model, depth_image, session):
    one = percept.Session(model, device="cpu", threads=1)
    a = one.depth(depth_image, num_inference_steps=STEPS).prediction
    b = session.depth(depth_image, num_inference_steps=STEPS).prediction
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_cpu_bf16_precision_is_close_to_f32_and_checked(model, depth_image, session):
    bf16 = percept.Session(model, device="cpu", precision="bf16")
    assert "bf16" in bf16.device
    a = bf16.depth(depth_image, num_inference_steps=STEPS).prediction
    b = session.depth(depth_image, num_inference_steps=STEPS).prediction
    # bf16 storage: close to f32, but not the same numbers.
    assert np.abs(a - b).max() > 0
    assert np.linalg.norm(a - b) / np.linalg.norm(b) < 5e-2
    with pytest.raises(ValueError, match="precision"):
        percept.Session(model, device="cpu", precision="f16")


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((32, 32, 2), np.uint8), "shape"),
        (np.zeros((32,), np.uint8), "shape"),
        (np.zeros((2, 32, 32, 3, 1), np.uint8), "shape"),
        (np.zeros((0, 32, 3), np.uint8), "empty"),
        (np.zeros((32, 32, 3), np.int64), "dtype"),
        (np.zeros((32, 32, 3), np.uint16), "dtype"),
        (np.full((32, 32, 3), 2.0, np.float32), r"\[0, 1\]"),
        (np.full((32, 32, 3), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_images_raise_value_error(session, bad, match):
    with pytest.raises(ValueError, match=match):
        session.depth(bad, num_inference_steps=STEPS)


def test_bad_arguments(session, depth_image, flow_frames):
    with pytest.raises(ValueError, match="num_inference_steps"):
        session.depth(depth_image, num_inference_steps=0)
    with pytest.raises(ValueError, match="ensemble_size"):
        session.depth(depth_image, ensemble_size=0)
    with pytest.raises(ValueError, match="seed"):
        session.depth(depth_image, seed=-1)
    with pytest.raises(ValueError, match="output_uncertainty"):
        session.depth(depth_image, output_uncertainty=True)
    with pytest.raises(TypeError, match="num_inference_steps"):
        session.depth(depth_image, num_inference_steps=2.5)
    with pytest.raises(TypeError, match="path"):
        session.depth("photo.png")
    with pytest.raises(ValueError, match="empty batch"):
        session.depth([])
    f1, f2 = flow_frames
    with pytest.raises(ValueError, match="same size"):
        session.flow(f1, f2[:50], num_inference_steps=STEPS)
    with pytest.raises(ValueError, match="same length"):
        session.flow([f1, f1], [f2], num_inference_steps=STEPS)
    with pytest.raises(ValueError, match="same size"):
        session.amodal(f1, np.zeros((10, 10), np.uint8), num_inference_steps=STEPS)


def test_input_forms_agree(session, depth_image):
    """uint8, float32 in [0, 1], float64, RGBA, PIL and a non-contiguous view: one image."""
    from PIL import Image

    base = session.depth(depth_image, num_inference_steps=STEPS).prediction
    as_float = depth_image.astype(np.float32) / 255
    rgba = np.concatenate([depth_image, np.full(depth_image.shape[:2] + (1,), 255, np.uint8)], axis=2)
    padded = np.zeros((depth_image.shape[0], depth_image.shape[1] * 2, 3), np.uint8)
    padded[:, ::2] = depth_image
    for name, form in [
        ("float32", as_float),
        ("float64", as_float.astype(np.float64)),
        ("rgba", rgba),
        ("pil", Image.fromarray(depth_image)),
        ("strided view", padded[:, ::2]),
    ]:
        got = session.depth(form, num_inference_steps=STEPS).prediction
        np.testing.assert_allclose(got, base, rtol=0, atol=1e-4, err_msg=name)


def test_grayscale_input(session, depth_image):
    gray = depth_image.mean(axis=2).astype(np.uint8)
    for form in (gray, gray[:, :, None]):
        res = session.depth(form, num_inference_steps=STEPS)
        assert res.prediction.shape == gray.shape


def test_mask_forms_agree(session, amodal_pair):
    image, mask = amodal_pair
    base = session.amodal(image, mask, num_inference_steps=STEPS)
    for form in (mask > 127, (mask > 127).astype(np.float32)):
        got = session.amodal(image, form, num_inference_steps=STEPS)
        np.testing.assert_array_equal(got.mask, base.mask)
        np.testing.assert_allclose(got.prediction, base.prediction, rtol=0, atol=1e-5)


def test_model_resolution_output_and_latent(session, depth_image):
    res = session.depth(depth_image, num_inference_steps=STEPS, match_input_resolution=False, output_latent=True)
    assert res.prediction.shape == (128, 128)
    assert res.latent is not None and res.latent.dtype == np.float32 and res.latent.ndim == 4
    # Feeding a latent of the right shape as initial noise gives a result (and a different one
    # from the seed's when the noise differs).
    noise = np.random.default_rng(0).standard_normal(res.latent.shape).astype(np.float32)
    a = session.depth(depth_image, num_inference_steps=STEPS, latents=noise).prediction
    b = session.depth(depth_image, num_inference_steps=STEPS, latents=noise).prediction
    seeded = session.depth(depth_image, num_inference_steps=STEPS).prediction
    assert a.shape == depth_image.shape[:2]
    assert a.tobytes() == b.tobytes() and not np.array_equal(a, seeded)
    with pytest.raises(ValueError, match="latents"):
        session.depth(depth_image, num_inference_steps=STEPS, latents=noise[:, :2])


def test_cuda_without_a_driver_raises_device_not_available(model):
    try:
        s = percept.Session(model, device="cuda")
    except percept.DeviceNotAvailableError as e:
        assert isinstance(e, RuntimeError) and "driver" in str(e)
    else:
        pytest.skip(f"a CUDA device is present ({s.device})")


def test_cuda_emulator_session_matches_cpu(model, session, depth_image):
    """The device string reaches the CUDA backend: its kernels run on the CPU emulator (slow:
    one step) and agree with the CPU backend to float rounding."""
    emu = percept.Session(model, device="cuda-emu")
    assert "emu" in emu.device
    a = emu.depth(depth_image, num_inference_steps=1).prediction
    b = session.depth(depth_image, num_inference_steps=1).prediction
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
