"""Hand a trained network to someone else: `scinas.load(DIR)` and `scinas export`.

`load` rebuilds the trained network of a run directory (architecture from genotype.json, sizes
from config.json, weights from model.pt loaded with ``weights_only=True``) and wraps it in a
`Predictor`: raw images in (the units of the user's data, N×C×H×W), predictions out (class
logits, or regression targets in their original units), the run's normalisation included.

`export` writes that predictor as ONNX or a `torch.export` program (``pt2``: one self-contained
file, batch size free; TorchScript, deprecated in torch, is no longer written), or the weights as
safetensors (with the run's facts in the metadata), then loads the file back and
checks that it predicts what the original does.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch
from pydantic import ValidationError
from torch import nn

from .config import Config
from .errors import UserError, unknown
from .evaluation import model_output
from .fit import build_network
from .rundir import (
    DISK_ERRORS,
    check_output_file,
    disk_error,
    file_mode,
    is_run_dir,
    load_state,
    read_mapping,
    run_kind,
)
from .spaces import SPACES, load_genotype
from .symmetry import VIEWS
from .tasks import make_task

FORMATS = {
    "onnx": "model.onnx",
    "pt2": "model.pt2",
    "safetensors": "model.safetensors",
}


class Predictor(nn.Module):
    """A trained network with its input normalisation and output decoding."""

    def __init__(self, network: nn.Module, info: dict, output_groups=None, average=None):
        super().__init__()
        self.groups = [list(g) for g in (output_groups or [])]
        self.network = network.eval()
        self.info = info
        # test-time views (train.tta) and the task's average of their outputs
        self.views = list(info.get("tta") or [])
        self.average = average
        # one value per channel, broadcast over the sample's other axes: (1, C, 1, 1) for
        # images, (1, C, 1) for series
        per_channel = (1, -1) + (1,) * (len(info.get("input_shape", (1, 1, 1))) - 1)
        self.register_buffer("mean", torch.tensor(info["mean"]).view(per_channel))
        self.register_buffer("std", torch.tensor(info["std"]).view(per_channel))
        regression = (
            info["task"] == "regression" and info.get("target_mean") is not None and not self.groups
        )
        self.regression = regression
        k = info["num_outputs"]
        self.register_buffer(
            "target_mean", torch.tensor(info["target_mean"] if regression else [0.0] * k)
        )
        self.register_buffer(
            "target_std", torch.tensor(info["target_std"] if regression else [1.0] * k)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() - self.mean) / self.std
        out = model_output(self.network, x)
        if self.views:
            views = [model_output(self.network, VIEWS[v](x)) for v in self.views]
            out = self.average([out, *views])
        if self.regression:
            out = out * self.target_std + self.target_mean
        if self.groups:
            out = out.clone()
            for g in self.groups:
                out[:, g] = torch.softmax(out[:, g], dim=1)
        return out


def load_trained(run_dir: str | os.PathLike) -> tuple[nn.Module, dict, Config]:
    """Rebuild the trained network of a run directory (weights loaded, eval mode), with its
    data facts (data.json) and config."""
    path = Path(run_dir)
    if not is_run_dir(path):
        raise UserError(
            f"{path} is not a scinas run directory (no run.json). Give the --out of a "
            "finished `scinas run` or `scinas train`."
        )
    if not (path / "model.pt").is_file():
        raise UserError(
            f"{path} has no trained model (model.pt): it is a search-only run or did "
            "not finish. Train it with `scinas train --genotype DIR`."
        )
    cfg = _run_config(path)
    if (path / "recipe.json").is_file():  # the training recipe a lineage search chose
        recipe = read_mapping(path / "recipe.json")
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=recipe)})
    info = read_mapping(path / "data.json")
    missing = [k for k in ("input_shape", "num_outputs", "task", "mean", "std") if k not in info]
    if missing:
        raise UserError(
            f"{path / 'data.json'} is corrupt: it lacks {', '.join(missing)}. Restore it from a "
            "copy, or train the network again."
        )
    shape = tuple(info["input_shape"])
    kept = run_kind(path) == "run" and cfg.search.keeps_supernet
    if kept:  # search.derive=supernet: the final model is the supernet
        net = SPACES.get(cfg.search.space).build_supernet(cfg.search, shape, info["num_outputs"])
    else:
        net = build_network(load_genotype(path), cfg.train, shape, info["num_outputs"])
    net.load_state_dict(load_state(path / "model.pt"))
    return net.eval(), info, cfg


def _run_config(path: Path) -> Config:
    """The run's config.json as a Config; a file edited into an invalid one is named."""
    try:
        return Config.model_validate(read_mapping(path / "config.json"))
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise UserError(
            f"{path / 'config.json'} is not a valid scinas config ({loc}: {err['msg']}); restore "
            "it from a copy."
        ) from None


def load(run_dir: str | os.PathLike) -> Predictor:
    """The trained network of a run directory, ready to predict on raw images."""
    net, info, cfg = load_trained(run_dir)
    if not cfg.train.tta:
        return Predictor(net, info, cfg.data.output_groups).eval()
    task = make_task(
        info["task"],
        info["num_outputs"],
        info.get("target_mean"),
        info.get("target_std"),
        loss=cfg.data.loss,
        output_groups=cfg.data.output_groups,
    )
    info = {**info, "tta": list(cfg.train.tta)}
    return Predictor(net, info, cfg.data.output_groups, task.average_views).eval()


def export(run_dir: str | os.PathLike, fmt: str, output: str | os.PathLike | None = None) -> Path:
    """Write the run's predictor (or weights) in ``fmt``; returns the path written."""
    if fmt == "torchscript":
        raise UserError(
            "TorchScript export was replaced by torch.export (torch deprecates TorchScript): "
            "--format pt2 writes the same predictor as a model.pt2 file; load it with "
            "torch.export.load(PATH).module()."
        )
    if fmt not in FORMATS:
        raise unknown("export format", fmt, FORMATS)
    path = Path(output) if output else Path(run_dir) / FORMATS[fmt]
    if output is not None:
        check_output_file(path)  # before the network is rebuilt
    predictor = load(run_dir)
    example = torch.rand(2, *predictor.info["input_shape"]) * 255
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise disk_error(e, str(path)) from None
    os.fchmod(fd, file_mode())  # as a plain open() would make it, not mkstemp's 0o600
    os.close(fd)
    try:
        {"onnx": _onnx, "pt2": _pt2, "safetensors": _safetensors}[fmt](
            predictor, example, Path(tmp)
        )
        _verify(fmt, Path(tmp), predictor, example, run_dir)
        os.replace(tmp, path)
    except OSError as e:
        if e.errno not in DISK_ERRORS:
            raise
        raise disk_error(e, str(path)) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _onnx(predictor, example, path: Path) -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UserError(
            "ONNX export needs the onnx package: pip install 'scinas[export]' (or onnx)."
        ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            predictor,
            (example,),
            str(path),
            dynamo=False,
            input_names=["images"],
            output_names=["outputs"],
            dynamic_axes={"images": {0: "batch"}, "outputs": {0: "batch"}},
        )


def _pt2(predictor, example, path: Path) -> None:
    """The predictor as a `torch.export` program with a free batch size."""
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    batch = torch.export.Dim("batch")
    torch_log = logging.getLogger("torch")
    level = torch_log.level
    torch_log.setLevel(logging.ERROR)  # its tracing warnings dump graphs on a failure
    try:
        with torch.no_grad():
            program = torch.export.export(predictor, (example,), dynamic_shapes=({0: batch},))
    except GuardOnDataDependentSymNode:
        raise _not_exportable("its control flow depends on the values of its input") from None
    except torch._dynamo.exc.TorchDynamoException as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if first.startswith("Constraints violated"):  # the free batch size was refused
            first = "it works at one batch size only"
        raise _not_exportable(first[:200]) from None
    finally:
        torch_log.setLevel(level)
    torch.export.save(program, str(path))


def _not_exportable(why: str) -> UserError:
    return UserError(
        f"torch.export cannot export this network ({why}): export it with --format onnx, or "
        "its weights with --format safetensors."
    )


def _safetensors(predictor, example, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in predictor.network.state_dict().items()}
    meta = {k: json.dumps(v) for k, v in predictor.info.items()}
    save_file(state, str(path), metadata=meta)


def _verify(fmt: str, path: Path, predictor, example, run_dir) -> None:
    """Load the written file back and compare its predictions with the original's."""
    with torch.no_grad():
        expected = predictor(example)
        if fmt == "pt2":
            got = torch.export.load(str(path)).module()(example)
        elif fmt == "safetensors":
            from safetensors.torch import load_file

            fresh = load(run_dir)
            fresh.network.load_state_dict(load_file(str(path)))
            got = fresh(example)
        else:
            try:
                import onnxruntime as ort
            except ImportError:
                return  # written, not verifiable here
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            got = torch.from_numpy(session.run(None, {"images": example.numpy()})[0])
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-4):
        raise RuntimeError(f"the exported {fmt} model does not reproduce the original outputs")
