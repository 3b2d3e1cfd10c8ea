"""The package gives what the CLI gives for the same input, seed and steps (demo model, CPU)."""

import numpy as np

from conftest import STEPS, load_image, read_flo, run_cli, save_png


def test_depth_matches_cli(session, depth_image, tmp_path):
    src = save_png(tmp_path / "scene.png", depth_image)
    run_cli("depth", src, "--steps", STEPS, "--seed", 3, "--backend", "cpu", "--out", tmp_path / "out")
    cli = np.load(tmp_path / "out" / "scene_depth.npy")

    res = session.depth(depth_image, num_inference_steps=STEPS, seed=3)
    depth = res.prediction
    assert depth.shape == depth_image.shape[:2] == cli.shape
    assert depth.dtype == np.float32
    assert 0.0 <= depth.min() and depth.max() <= 1.0 and depth.max() - depth.min() > 0.1
    np.testing.assert_allclose(depth, cli, rtol=0, atol=1e-5)
    assert res.uncertainty is None and res.latent is None


def test_depth_ensemble_matches_cli(session, depth_image, tmp_path):
    src = save_png(tmp_path / "scene.png", depth_image)
    run_cli("depth", src, "--steps", STEPS, "--ensemble", 3, "--backend", "cpu", "--out", tmp_path / "out")
    cli = np.load(tmp_path / "out" / "scene_depth.npy")

    res = session.depth(depth_image, num_inference_steps=STEPS, ensemble_size=3, output_uncertainty=True)
    np.testing.assert_allclose(res.prediction, cli, rtol=0, atol=1e-5)
    assert res.uncertainty.shape == depth_image.shape[:2] and res.uncertainty.dtype == np.float32
    assert np.isfinite(res.uncertainty).all() and res.uncertainty.max() > 0


def test_flow_matches_cli(session, flow_frames, tmp_path):
    f1, f2 = flow_frames
    save_png(tmp_path / "pair_img1.png", f1)
    save_png(tmp_path / "pair_img2.png", f2)
    run_cli(
        "flow", tmp_path / "pair_img1.png", tmp_path / "pair_img2.png",
        "--steps", STEPS, "--seed", 0, "--backend", "cpu", "--out", tmp_path / "out",
    )
    cli = read_flo(tmp_path / "out" / "pair_img1_flow.flo")

    flow = session.flow(f1, f2, num_inference_steps=STEPS).prediction
    assert flow.shape == (*f1.shape[:2], 2) == cli.shape
    assert flow.dtype == np.float32
    assert np.abs(flow).max() > 0.1  # the chairs move
    np.testing.assert_allclose(flow, cli, rtol=0, atol=1e-4)


def test_amodal_matches_cli(session, amodal_pair, tmp_path):
    image, mask = amodal_pair
    save_png(tmp_path / "7_occlusion.png", image)
    save_png(tmp_path / "7_visible_mask.png", mask)
    run_cli(
        "segment", tmp_path / "7_occlusion.png", tmp_path / "7_visible_mask.png",
        "--steps", STEPS, "--seed", 0, "--backend", "cpu", "--out", tmp_path / "out",
    )
    cli_rgb = load_image(tmp_path / "out" / "7_occlusion_amodal.png").astype(np.int32)
    cli_mask = load_image(tmp_path / "out" / "7_occlusion_mask.png")

    res = session.amodal(image, mask, num_inference_steps=STEPS)
    assert res.prediction.shape == image.shape[:2] + (3,) and res.prediction.dtype == np.float32
    assert 0.0 <= res.prediction.min() and res.prediction.max() <= 1.0
    assert res.mask.shape == image.shape[:2] and res.mask.dtype == np.bool_
    # The CLI's PNG is the same float result quantised to 8 bits.
    assert np.abs(np.round(res.prediction * 255).astype(np.int32) - cli_rgb).max() <= 1
    np.testing.assert_array_equal(res.mask, cli_mask > 127)
    assert 0 < res.mask.sum() < res.mask.size
