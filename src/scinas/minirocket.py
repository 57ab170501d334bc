"""MiniRocket with a ridge model: the fast, strong non-deep baseline for series in `scinas compare`
(method ``minirocket``), so that a table says whether a deep network was needed at all.

MiniRocket (Dempster, Schmidt and Webb 2021) turns each series into about 10,000 features, the
proportions of positive values of fixed convolutions at several dilations and biases; a ridge
model on them is within a point of the best deep classifiers of the UCR archive at a fraction of
their cost. The transform is sktime's (the optional extra ``scinas[series]``: sktime and numba);
the ridge is scikit-learn's, its penalty chosen by leave-one-out over the paper's grid
(``ALPHAS``), on the training split only as the deep methods' weights are. Classes take
`RidgeClassifierCV`, targets `RidgeCV` (standardised features, as sktime's own MiniRocket
classifier does). Test metrics go through the data's task like every other method's; a ridge's
class scores are not probabilities, so a classifier's test loss is left out."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .files import write_json

ALPHAS = np.logspace(-3, 3, 10)  # the MiniRocket paper's ridge penalties
EXTRA = "pip install 'scinas[series]'"


def _transform_class():
    try:
        from sktime.transformations.panel.rocket import MiniRocketMultivariate
    except ImportError as e:
        raise UserError(
            f"the method minirocket needs sktime and numba, which are not installed ({e}): "
            f"{EXTRA}, or leave minirocket out of --methods."
        ) from None
    return MiniRocketMultivariate


def check(ctx) -> None:
    """Refuse (UserError) what minirocket cannot take: data that are not series, multi-label
    targets, grouped regression outputs, or a missing sktime."""
    d = ctx.data
    if len(d.input_shape) != 2:
        raise UserError(
            f"the method minirocket takes series (samples C×L); these samples are "
            f"{'×'.join(map(str, d.input_shape))}: leave it out of --methods, or read the data "
            "as series with --layout."
        )
    if d.input_shape[1] < 9:
        raise UserError(
            f"the method minirocket's kernels are 9 steps long; these series have "
            f"{d.input_shape[1]}: leave it out of --methods."
        )
    if d.task == "multilabel" or ctx.cfg.data.output_groups:
        raise UserError(
            "the method minirocket predicts one class or plain regression targets, not "
            f"{'multi-label targets' if d.task == 'multilabel' else 'grouped outputs'}: "
            "leave it out of --methods."
        )
    _transform_class()


def _features(transform, x: torch.Tensor) -> np.ndarray:
    return np.asarray(transform.transform(x.double().cpu().numpy()), dtype=np.float64)


def fit_and_test(ctx, out: Path, reporter) -> dict:
    """`_fit_and_test`, torch's thread count kept (sktime's numba sets it to every core)."""
    from .parallel import torch_threads_kept

    with torch_threads_kept():
        return _fit_and_test(ctx, out, reporter)


def _fit_and_test(ctx, out: Path, reporter) -> dict:
    """Fit MiniRocket and a ridge model on ``ctx``'s training split (``train.max_samples`` of
    it, as the networks train on) and test it; writes ``out/results.json`` and returns the
    record's test metrics, parameter count (the ridge's coefficients; MiniRocket's kernels are
    fixed) and seconds."""
    from sklearn.linear_model import RidgeClassifierCV, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .fit import subset

    check(ctx)
    cfg, d, task = ctx.cfg, ctx.data, ctx.task
    t0 = time.perf_counter()
    x, y = subset(d.train.x, d.train.y, cfg.train.max_samples, cfg.seed)
    transform = _transform_class()(random_state=cfg.seed)
    transform.fit(x.double().cpu().numpy())
    train_features = _features(transform, x)
    classify = d.task == "classification"
    ridge = RidgeClassifierCV(alphas=ALPHAS) if classify else RidgeCV(alphas=ALPHAS)
    model = make_pipeline(StandardScaler(), ridge)
    model.fit(train_features, y.cpu().numpy())
    fitted = time.perf_counter() - t0
    test_features = _features(transform, d.test.x)
    if classify:
        scores = torch.as_tensor(model.decision_function(test_features), dtype=torch.float64)
        if scores.ndim == 1:  # two classes: one score, the second class's
            scores = torch.stack([-scores, scores], dim=1)
        metrics = task.metrics(scores, d.test.y)
        metrics.pop("loss", None)  # ridge scores are not log-probabilities
    else:
        pred = torch.as_tensor(model.predict(test_features), dtype=torch.float64)
        pred = pred.reshape(len(pred), -1)
        metrics = task.metrics(task.encode_targets(pred), d.test.y)
    coef = model[-1].coef_
    params = int(np.size(coef) + np.size(model[-1].intercept_))
    seconds = time.perf_counter() - t0
    result = {
        "method": "minirocket",
        "test": metrics,
        "params": params,
        "features": int(train_features.shape[1]),
        "alpha": float(model[-1].alpha_),
        "train_samples": len(x),
        "fit_seconds": fitted,
        "wall_seconds": seconds,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", result)
    pm = task.primary_metric
    reporter.log(
        f"minirocket: {result['features']:,} features of {len(x)} training series, ridge "
        f"alpha {result['alpha']:.3g}: test {pm} {metrics[pm]:.4f} in {seconds:.1f}s"
    )
    return {"test": metrics, "params": params, "flops": None, "wall_seconds": seconds}


def compile_kernels() -> float:
    """Fit MiniRocket once on random series, so that numba compiles its kernels into its cache
    (next to sktime's code: about 20 s on 2 cores, once per installation, instead of in the
    first compare); returns the seconds it took."""
    from .parallel import torch_threads_kept

    t0 = time.perf_counter()
    x = np.random.default_rng(0).normal(size=(4, 2, 32))
    with torch_threads_kept():
        _transform_class()(random_state=0).fit_transform(x)
    return time.perf_counter() - t0


if __name__ == "__main__":
    print(f"MiniRocket's kernels compiled (or found in numba's cache) in {compile_kernels():.1f}s")
