"""Shared fixtures: the demo model on the CPU, toy-data inputs, and the CLI to compare with.

Environment: PERCEPT_TOY_DATA (default: the checkout's toy_data/), PERCEPT_CLI (default: the
checkout's target/release/percept). Under CI=true a missing CLI or toy data is a failure, not a
skip.
"""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import percept

REPO = Path(__file__).resolve().parents[2]
TOY = Path(os.environ.get("PERCEPT_TOY_DATA", REPO / "toy_data"))
CLI = Path(os.environ.get("PERCEPT_CLI", REPO / "target" / "release" / "percept"))
IN_CI = os.environ.get("CI") == "true"

# Few denoising steps: the tests check plumbing and numerics, not quality.
STEPS = 4


def need(path: Path, what: str) -> Path:
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{what} not found at {path}")
        pytest.skip(f"{what} not found at {path}")
    return path


def load_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im).copy()


def save_png(path: Path, arr: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(arr).save(path)
    return path


def run_cli(*args) -> None:
    cli = need(CLI, "the percept CLI (cargo build --release)")
    env = {k: v for k, v in os.environ.items() if k not in ("PERCEPT_MODEL", "PERCEPT_SD2")}
    proc = subprocess.run([str(cli), *map(str, args)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"percept {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}"


def read_flo(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        magic = np.frombuffer(f.read(4), "<f4")[0]
        assert magic == np.float32(202021.25), f"{path}: not a .flo file"
        w, h = np.frombuffer(f.read(8), "<i4")
        return np.frombuffer(f.read(), "<f4").reshape(h, w, 2)


@pytest.fixture(scope="session")
def model() -> percept.Model:
    return percept.Model.load()


@pytest.fixture(scope="session")
def session(model) -> percept.Session:
    return percept.Session(model, device="cpu")


# Inputs: toy-data images cropped to a non-square size, so resizing to the model's 128 px and
# back is exercised.
CROP = (slice(8, 104), slice(0, 120))  # 96 x 120 (H x W)


@pytest.fixture(scope="session")
def depth_image() -> np.ndarray:
    p = need(TOY / "Hypersim_small" / "val" / "ai_001_010" / "rgb_cam_00_fr0000.png", "toy data")
    return load_image(p)[CROP]


@pytest.fixture(scope="session")
def flow_frames():
    d = need(TOY / "FlyingChairs_small" / "data", "toy data")
    return load_image(d / "00001_img1.ppm")[CROP], load_image(d / "00001_img2.ppm")[CROP]


@pytest.fixture(scope="session")
def amodal_pair():
    d = need(TOY / "Pix2Gestalt_small" / "val", "toy data")
    image = load_image(d / "occlusion" / "10000036_occlusion.png")
    mask = load_image(d / "visible_object_mask" / "10000036_visible_mask.png")
    return image[CROP], mask[CROP]
