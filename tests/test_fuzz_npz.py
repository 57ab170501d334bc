"""Property-based test over .npz inputs (issue 17): random shapes, dtypes, NaN/inf, label values
and split sizes. Every example ends in a finished tiny run or in one UserError with nothing
written; never another exception.

Bounded: a fixed set of derandomized examples on a tiny config (a finished one takes about 2 s
on 2 CPU cores, a refusal well under one); the report is not drawn. The exit-code side of the
same contract is checked with real processes in test_cli.py and test_hostile.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TINY
from scinas.config import build_config
from scinas.errors import UserError
from scinas.progress import Reporter

EXAMPLES = 40
DTYPES = ["uint8", "int16", "int64", "float16", "float32", "float64", "bool"]
# What can be wrong with an input; each example has none to three of them, so that some of the
# examples are valid and run, and the others each probe a hostile corner.
TWISTS = [
    "nan",  # a NaN or an infinity among the images
    "extreme",  # values beyond float32's range
    "zero_side",  # a side of size 0 (N×0 features; H, W or C of 0)
    "small_side",  # a side of 0..3 pixels
    "huge_label",  # 10**9, 2**62 or 5000 as a class label
    "negative_label",
    "float_labels",  # continuous targets: regression
    "nan_labels",
    "multilabel",  # an N×K 0/1 matrix
    "column_labels",  # (N, 1)
    "length_mismatch",
    "split_shape",  # a val/test split whose images differ in shape from train's
    "empty_split",
    "few_samples",  # 0..5 training samples
]


@st.composite
def npz_inputs(draw) -> dict[str, np.ndarray]:
    twists = set(draw(st.lists(st.sampled_from(TWISTS), max_size=3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    layout = draw(st.sampled_from(["features", "nhw", "nhwc", "nchw"]))
    side = st.integers(0, 3) if "small_side" in twists else st.integers(4, 10)
    if layout == "features":
        shape = (draw(st.integers(1, 6)),)
    elif layout == "nhw":
        shape = (draw(side), draw(side))
    else:
        h, w, c = draw(side), draw(side), draw(st.integers(1, 4))
        shape = (h, w, c) if layout == "nhwc" else (c, h, w)
    if "zero_side" in twists:
        i = draw(st.integers(0, len(shape) - 1))
        shape = (*shape[:i], 0, *shape[i + 1 :])
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(0, 5)) if "few_samples" in twists else draw(st.integers(24, 48))
    k = draw(st.integers(2, 4))

    def images(m: int, shape: tuple) -> np.ndarray:
        scale = 1e300 if "extreme" in twists else 255.0
        x = np.abs(rng.normal(0, scale, (m, *shape)))
        if "nan" in twists and x.size:
            x.flat[rng.integers(x.size)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        with np.errstate(all="ignore"):
            return x.astype(dtype)

    def labels(m: int) -> np.ndarray:
        y = np.arange(m) % k
        if "float_labels" in twists:
            return rng.normal(0, 1, m).astype(np.float32)
        if "nan_labels" in twists:
            y = rng.normal(0, 1, m)
            y[: min(1, m)] = np.nan
        elif "multilabel" in twists:
            y = rng.integers(0, 2, (m, k))
        elif "column_labels" in twists:
            y = y[:, None]
        if "huge_label" in twists and m:
            y.flat[-1] = draw(st.sampled_from([10**9, 2**62, 5000]))
        if "negative_label" in twists and m:
            y.flat[0] = -1
        return y

    arrays = {"x_train": images(n, shape), "y_train": labels(n)}
    if "length_mismatch" in twists:
        arrays["y_train"] = labels(max(0, n + draw(st.sampled_from([-1, 1]))))
    for split in ("val", "test"):
        if draw(st.booleans()):
            m = 0 if "empty_split" in twists else draw(st.integers(4, 12))
            other = (*shape[:-1], shape[-1] + 1) if "split_shape" in twists else shape
            arrays[f"x_{split}"] = images(m, other)
            arrays[f"y_{split}"] = labels(m)
    return arrays


@pytest.fixture(autouse=True)
def _no_report(monkeypatch):
    """The report is drawn after the run: seconds of matplotlib per example, no input in it."""
    monkeypatch.setattr("scinas.report.write_report", lambda *a, **k: None)


_OUTCOMES = {"finished": 0, "refused": 0}


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples every time: a failure is reproducible
    database=None,  # writes no .hypothesis folder
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(arrays=npz_inputs())
def test_any_npz_ends_in_a_run_or_one_clear_refusal(arrays):
    from scinas.pipeline import run

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.npz"
        np.savez(data, **arrays)
        out = Path(tmp) / "out"
        cfg = build_config(overrides=TINY, data__dataset=str(data))
        try:
            results = run(cfg, out, reporter=Reporter(quiet=True))
        except UserError as e:
            message = str(e)
            assert message.strip() and "Traceback" not in message
            assert "allow_pickle" not in message and "weights_only" not in message
            assert not out.exists(), f"refused ({message}) but {out} was written"
            _OUTCOMES["refused"] += 1
        else:
            assert (out / "results.json").is_file() and results["test"]
            _OUTCOMES["finished"] += 1


def test_fuzz_examples_cover_both_outcomes():
    """Runs after the property (file order): the examples reach both endings, so the property
    is not only about refusals."""
    if sum(_OUTCOMES.values()) < EXAMPLES:
        pytest.skip("runs with the property test")
    assert _OUTCOMES["finished"] >= 3 and _OUTCOMES["refused"] >= 3, _OUTCOMES
