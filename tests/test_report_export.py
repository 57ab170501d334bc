"""Export and reload, the HTML report (also rendered in headless Chromium), diagnostics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import scinas
from conftest import REPORT, TINY, scinas_cli
from scinas.context import setup
from scinas.export import FORMATS, Predictor, _pt2, export, load
from scinas.report import write_report
from scinas.strategies.diagnostics import edge_entropy, op_shares, warn_collapse

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run on an npz whose name holds HTML (the report must escape it)."""
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (240, 10, 12), dtype=np.uint8)
    y = (x[:, :5].mean((1, 2)) > x[:, 5:].mean((1, 2))).astype(np.int64)
    data = folder / "<b>bold&co.npz"
    np.savez(data, x_train=x, y_train=y)
    out = tmp_path_factory.mktemp("run") / "run"
    cfg = scinas.build_config(
        "tiny", overrides=[*TINY, REPORT, "search.epochs=2"], data__dataset=str(data)
    )
    scinas.run(cfg, out)
    return out, cfg


def test_load_reproduces_the_saved_test_predictions(finished):
    out, cfg = finished
    predictor = load(out)
    test = setup(cfg).data.test
    with torch.no_grad():
        pred = predictor(test.x)
    saved = np.load(out / "predictions_test.npz")
    np.testing.assert_allclose(pred.numpy(), saved["outputs"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_export_formats_reload_with_equal_predictions(finished, tmp_path, fmt):
    out, cfg = finished
    path = export(out, fmt, tmp_path / f"model.{fmt}")
    assert path.is_file() and path.stat().st_size > 1000
    x = setup(cfg).data.test.x[:16]
    with torch.no_grad():
        expected = load(out)(x)
        if fmt == "pt2":  # at another batch size than the export's example
            got = torch.export.load(str(path)).module()(x.float())
        elif fmt == "safetensors":
            from safetensors import safe_open
            from safetensors.torch import load_file

            fresh = load(out)
            fresh.network.load_state_dict(load_file(str(path)))
            got = fresh(x)
            with safe_open(str(path), "pt") as f:
                assert json.loads(f.metadata()["task"]) == "classification"
        else:
            ort = pytest.importorskip("onnxruntime")
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            got = torch.from_numpy(session.run(None, {"images": x.float().numpy()})[0])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_export_bad_format_and_bad_dir(finished, tmp_path):
    out, _ = finished
    before = sorted(p.name for p in out.iterdir())
    res = scinas_cli("export", out, "--format", "onxx")
    assert res.returncode == 2 and "Did you mean 'onnx'" in res.stderr
    assert "Traceback" not in res.stderr
    assert sorted(p.name for p in out.iterdir()) == before
    res = scinas_cli("export", tmp_path)
    assert res.returncode == 2 and "not a scinas run directory" in res.stderr


def test_torchscript_names_its_replacement_and_writes_nothing(finished, tmp_path):
    out, _ = finished
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(scinas.UserError, match="--format pt2"):
        export(out, "torchscript")
    assert sorted(p.name for p in out.iterdir()) == before


class _ValueBranch(torch.nn.Module):
    """A network whose control flow depends on its input's values."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3)

    def forward(self, x):
        y = self.conv(x).mean((2, 3))
        return y if y.sum() > 0 else -y


class _OneBatchSize(torch.nn.Module):
    """A network that works at its example's batch size only."""

    def forward(self, x):
        return x.reshape(2, -1)[:, :3]


@pytest.mark.parametrize(
    "network, why",
    [(_ValueBranch, "control flow depends"), (_OneBatchSize, "one batch size only")],
)
def test_a_network_torch_export_cannot_take_gets_a_user_error(tmp_path, network, why):
    info = {"mean": [0.0], "std": [1.0], "task": "classification", "num_outputs": 3}
    predictor = Predictor(network(), info)
    path = tmp_path / "model.pt2"
    with pytest.raises(scinas.UserError, match=f"{why}.*--format onnx"):
        _pt2(predictor, torch.rand(2, 1, 6, 6), path)
    assert not path.exists()


def test_a_run_with_report_false_writes_none_and_scinas_report_writes_it_later(tmp_path):
    out = tmp_path / "run"
    cfg = scinas.build_config("tiny", overrides=[*TINY, "report=false"])
    scinas.run(cfg, out, reporter=scinas.progress.Reporter(quiet=True))
    assert (out / "results.json").is_file()
    assert not (out / "report.html").exists() and not (out / "figures").exists()
    res = scinas_cli("report", out)
    assert res.returncode == 0, res.stderr
    assert (out / "report.html").stat().st_size > 10_000  # the figures, embedded
    assert list((out / "figures").glob("*.png")) and list((out / "figures").glob("*.svg"))


def test_report_is_self_contained_escaped_and_small(finished):
    out, _ = finished
    page = out / "report.html"  # written by `run` itself
    assert page.is_file()
    text = page.read_text()
    assert page.stat().st_size < 2_000_000
    assert "<b>bold" not in text and "&lt;b&gt;bold&amp;co" in text
    assert "src='http" not in text and "<script" not in text
    assert text.count("data:image/png;base64,") >= 5  # cells, weights, curves, diagnostics
    for name in ("cell_normal", "weights_normal", "curves_search", "curves_train", "diagnostics"):
        assert (out / "figures" / f"{name}.png").is_file()
        assert (out / "figures" / f"{name}.svg").is_file()
    assert "discretisation gap" in text


def test_report_of_unfinished_run_and_bad_dir(tmp_path, finished):
    out, _ = finished
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)
    (partial / "results.json").unlink()
    page = write_report(partial)
    assert "not finished" in page.read_text()
    with pytest.raises(scinas.UserError, match="not a scinas run directory"):
        write_report(tmp_path / "nothing")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (CI installs Debian's chromium)")
def test_report_renders_in_headless_chromium(finished):
    playwright = pytest.importorskip("playwright.sync_api")
    out, _ = finished
    errors = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(Path(out / "report.html").as_uri())
        n_images = page.evaluate("document.images.length")
        loaded = page.evaluate(
            "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
        )
        title = page.title()
        browser.close()
    assert n_images >= 5 and loaded
    assert errors == []
    assert title.startswith("scinas report")


def test_diagnostics_numbers():
    assert op_shares(["skip_connect", "max_pool_3x3", "sep_conv_3x3", "none"]) == {
        "skip": 0.25,
        "pool": 0.25,
        "none": 0.25,
        "parameter_free": 0.75,
    }
    assert edge_entropy([[0.25] * 4, [1.0, 0, 0, 0]]) == pytest.approx([1.0, 0.0], abs=1e-6)

    class R:
        lines = []

        def log(self, m):
            self.lines.append(m)

    r = R()
    assert warn_collapse({"parameter_free": 0.75}, 7, r) and "collapse" in r.lines[0]
    assert "fewer search epochs" in r.lines[0]
    assert warn_collapse({"parameter_free": 0.75}, 1, r)  # first epoch: untrained convs
    assert "warmup_epochs=N" in r.lines[1] and "fewer search epochs" not in r.lines[1]
    assert not warn_collapse({"parameter_free": 0.25}, 7, r)


def test_search_epochs_log_diagnostics(finished):
    out, _ = finished
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    diag = [e["diagnostics"] for e in rows if e["event"] == "search_epoch"]
    assert len(diag) == 2
    for d in diag:
        assert 0 <= d["parameter_free"] <= 1 and 0 <= d["mean_entropy"] <= 1
        assert len(d["entropy"]["normal"]) == 14
