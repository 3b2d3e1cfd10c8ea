"""Determinism, threads, cancellation, Ctrl-C and progress."""

import os
import signal
import threading

import numpy as np
import pytest

import percept
from conftest import STEPS


def test_repeated_calls_are_bit_identical(session, depth_image):
    a = session.depth(depth_image, num_inference_steps=STEPS, seed=5).prediction
    b = session.depth(depth_image, num_inference_steps=STEPS, seed=5).prediction
    assert a.tobytes() == b.tobytes()
    c = session.depth(depth_image, num_inference_steps=STEPS, seed=6).prediction
    assert not np.array_equal(a, c), "another seed should give another sample"


def test_batch_equals_single_calls(session, depth_image, flow_frames):
    other = depth_image[::-1].copy()
    batch = session.depth([depth_image, other], num_inference_steps=STEPS, seed=1)
    assert isinstance(batch, list) and len(batch) == 2
    for img, res in zip([depth_image, other], batch):
        single = session.depth(img, num_inference_steps=STEPS, seed=1).prediction
        np.testing.assert_allclose(res.prediction, single, rtol=0, atol=1e-6)
    f1, f2 = flow_frames
    flows = session.flow([f1, f2], [f2, f1], num_inference_steps=STEPS)
    assert [r.prediction.shape for r in flows] == [(*f1.shape[:2], 2)] * 2


def test_two_threads_two_sessions_match_one(model, session, depth_image, flow_frames):
    f1, f2 = flow_frames
    want_depth = session.depth(depth_image, num_inference_steps=STEPS, seed=2).prediction
    want_flow = session.flow(f1, f2, num_inference_steps=STEPS, seed=2).prediction
    got, errors = {}, []

    def work(name, fn):
        try:
            s = percept.Session(model, device="cpu")
            got[name] = [fn(s) for _ in range(2)]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [
        threading.Thread(target=work, args=("depth", lambda s: s.depth(depth_image, num_inference_steps=STEPS, seed=2).prediction)),
        threading.Thread(target=work, args=("flow", lambda s: s.flow(f1, f2, num_inference_steps=STEPS, seed=2).prediction)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    for d in got["depth"]:
        assert d.tobytes() == want_depth.tobytes()
    for f in got["flow"]:
        assert f.tobytes() == want_flow.tobytes()


def test_progress_callback_sees_every_step(session, depth_image):
    seen = []
    session.depth(depth_image, num_inference_steps=STEPS, progress=lambda step, steps: seen.append((step, steps)))
    assert seen == [(i, STEPS) for i in range(1, STEPS + 1)]


def test_progress_true_draws_a_tqdm_bar(session, depth_image, capsys):
    pytest.importorskip("tqdm", reason="tqdm is not installed (percept-py/test.sh installs it)")
    session.depth([depth_image, depth_image], num_inference_steps=STEPS, ensemble_size=2, progress=True)
    err = capsys.readouterr().err
    assert "depth" in err and "step" in err, err


def test_progress_returning_false_cancels(session, depth_image):
    with pytest.raises(percept.CancelledError):
        session.depth(depth_image, num_inference_steps=50, progress=lambda step, steps: step < 2)
    # Still usable, and unchanged.
    a = session.depth(depth_image, num_inference_steps=STEPS).prediction
    assert a.shape == depth_image.shape[:2]


def test_exception_in_progress_callback_propagates(session, depth_image):
    def boom(step, steps):
        raise RuntimeError("from the callback")

    with pytest.raises(RuntimeError, match="from the callback"):
        session.depth(depth_image, num_inference_steps=STEPS, progress=boom)


def test_cancel_from_another_thread(session, depth_image):
    started = threading.Event()
    canceller = threading.Thread(target=lambda: (started.wait(60), session.cancel()))
    canceller.start()
    steps_run = []

    def progress(step, steps):
        steps_run.append(step)
        started.set()

    with pytest.raises(percept.CancelledError):
        session.depth(depth_image, num_inference_steps=500, progress=progress)
    canceller.join()
    assert len(steps_run) < 500
    # The session is usable afterwards and gives the same result as before.
    a = session.depth(depth_image, num_inference_steps=STEPS, seed=9).prediction
    b = percept.Session(session.model, device="cpu").depth(depth_image, num_inference_steps=STEPS, seed=9).prediction
    assert a.tobytes() == b.tobytes()


def test_ctrl_c_raises_keyboard_interrupt_and_session_survives(session, depth_image):
    started = threading.Event()

    def send_sigint():
        started.wait(60)
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=send_sigint)
    sender.start()
    steps_run = []

    def progress(step, steps):
        steps_run.append(step)
        started.set()

    with pytest.raises(KeyboardInterrupt):
        session.depth(depth_image, num_inference_steps=500, progress=progress)
    sender.join()
    assert len(steps_run) < 500
    a = session.depth(depth_image, num_inference_steps=STEPS).prediction
    assert a.shape == depth_image.shape[:2]


def test_calling_a_session_from_its_progress_function_is_refused(session, depth_image):
    def reenter(step, steps):
        session.depth(depth_image, num_inference_steps=1)

    with pytest.raises(RuntimeError, match="inside a progress function"):
        session.depth(depth_image, num_inference_steps=STEPS, progress=reenter)
    assert session.depth(depth_image, num_inference_steps=STEPS).prediction.shape == depth_image.shape[:2]


def test_progress_true_without_tqdm_falls_back(session, depth_image, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    session.depth(depth_image, num_inference_steps=STEPS, progress=True)
    err = capsys.readouterr().err
    assert f"depth: step {STEPS}/{STEPS}" in err, err


def test_gil_is_released_while_computing(session, depth_image):
    """Python code in this thread runs while another thread's call computes."""
    started, steps, outcome = threading.Event(), [], {}

    def progress(step, total):
        steps.append(step)
        started.set()

    def work():
        try:
            session.depth(depth_image, num_inference_steps=400, progress=progress)
            outcome["result"] = "finished"
        except percept.CancelledError:
            outcome["result"] = "cancelled"

    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert started.wait(60)
        # Busy Python work: were the GIL held during the call, this thread could not run
        # until all 400 steps (tens of seconds) were done.
        total = 0
        for i in range(200_000):
            total += i
        assert len(steps) < 400, "the call ended before this thread could run: GIL held?"
    finally:
        session.cancel()
        worker.join(timeout=120)
    assert outcome["result"] == "cancelled"
