"""The end of a run: test metrics of the final network (or the kept supernet), results.json and the
report."""

from __future__ import annotations

import sys
import time

import numpy as np

from .checkpoint import Checkpointer
from .evaluation import paired
from .flops import count_flops, count_parameters
from .run_context import SearchContext
from .rundir import (
    RunDir,
    load_state,
)
from .signals import Interrupted
from .spaces import SPACES
from .strategies import SearchResult
from .symmetry import VIEWS
from .train import predict


def view_outputs(net, views, batches) -> tuple:
    """``net``'s raw outputs on a split, plain and under each of ``views`` (a dict), and the
    targets: one pass each, from which `Symmetrised`'s average of any of the views follows."""
    plain, targets = predict(net, batches)
    viewed = {v: predict(net, ((VIEWS[v](xb), yb) for xb, yb in batches))[0] for v in views}
    return plain, viewed, targets


def confirmed_views(task, outputs, views, z: float = 2.0) -> tuple[list[str], dict]:
    """The ``views`` that do not raise the trained network's mean validation loss beyond ``z``
    standard errors when its outputs are averaged with them, and each view's paired loss
    decrease and its noise; ``outputs``: `view_outputs` on the validation split. Over a symmetry
    of the data the average cannot raise the expected loss (Jensen); the search found the views
    with a network trained for a segment, where a view the data does not have can pass (a
    network that has not yet learnt what the view changes), and this network has trained for
    the whole budget."""
    plain, viewed, targets = outputs
    base = task.sample_losses(plain.cpu(), targets.cpu())
    kept, checks = [], {}
    for v in views:
        out = task.average_views([plain, viewed[v]])
        decrease, noise = paired(base, task.sample_losses(out.cpu(), targets.cpu()))
        keep = not decrease < -z * noise
        checks[v] = {"loss_decrease": decrease, "noise": noise, "kept": keep}
        if keep:
            kept.append(v)
    return kept, checks


def final_results(
    s: SearchContext, net, genotype, run: RunDir | None, val: dict, confirm_views: bool = False
) -> dict:
    """Evaluate the final network once on the test split; save it and its predictions. With
    ``confirm_views`` the test-time views (train.tta, found by the search) are those of them
    that do not raise the validation loss beyond noise (`confirmed_views`). Each split passes
    through the network once plain and once per view (what a deadline keeps for testing)."""
    data, task = s.data, s.task
    views, checks = list(s.cfg.train.tta), None
    test_batches = s.place.batches(data.test.x, data.test.y, 256)
    if views:
        val_out = view_outputs(net, views, s.place.batches(data.val.x, data.val.y, 256))
    if views and confirm_views:
        z = getattr(s.cfg.search, "noise_z", 2.0)  # the lineage's margin, where it ran
        views, checks = confirmed_views(task, val_out, views, z)
        s.reporter.log(
            "test-time views on the trained network's validation split: "
            + ", ".join(
                f"{v} {'kept' if c['kept'] else 'dropped'} (loss {-c['loss_decrease']:+.4f} "
                f"± {c['noise']:.4f})"
                for v, c in checks.items()
            )
        )
    without = None
    if views:  # the test-time views' figures next to the network's alone
        plain, viewed, targets = view_outputs(net, views, test_batches)
        outputs = task.average_views([plain, *(viewed[v] for v in views)])
        without = {"val": val, "test": task.metrics(plain, targets)}
        val_plain, val_viewed, val_targets = val_out
        val = task.metrics(
            task.average_views([val_plain, *(val_viewed[v] for v in views)]), val_targets
        )
    else:
        outputs, targets = predict(net, test_batches)
    test = task.metrics(outputs, targets)
    params = count_parameters(net)
    results = {
        "task": task.name,
        "dataset": data.name,
        "metric": task.primary_metric,
        "test": test,
        "val": val,
        "params": params,
        "flops": count_flops(net, data.input_shape),
        "genotype": genotype.to_dict(),
    }
    if without is not None:
        results["tta"] = {"views": list(views), "without": without}
    if checks is not None:
        results["tta_checks"] = checks
    if run is not None:
        run.save_state("model.pt", net)
        run.log_event({"event": "test", **test})
        np.savez(
            run.file("predictions_test.npz"),
            y_true=targets.numpy(),
            y_pred=task.decode_outputs(outputs.double()).numpy(),
            outputs=outputs.numpy(),
        )
    mflops = results["flops"] / 1e6
    s.reporter.log(f"test: {format_metrics(test)} | {params:,} params, {mflops:.1f} MFLOPs")
    if without is not None:
        pm = task.primary_metric
        s.reporter.log(
            f"test-time views {', '.join(views)}: test {pm} {test[pm]:.4f}, "
            f"{without['test'][pm]:.4f} without them"
        )
    return results


def trained_supernet(s: SearchContext, searched: SearchResult, run: RunDir | None):
    """The search's trained supernet (read back from supernet.pt when resumed after it)."""
    model = searched.model
    if model is None:  # resumed after the search finished
        sc, data = s.cfg.search, s.data
        space = SPACES.get(sc.space)
        supernet = space.build_supernet(sc, data.input_shape, data.num_outputs, s.device)
        model = s.place.module(supernet)
        model.load_state_dict(load_state(run.file("supernet.pt")))
    return model


def supernet_results(s: SearchContext, searched: SearchResult, run: RunDir | None) -> dict:
    """search.derive=supernet: the trained supernet itself is the final model (no retraining);
    genotype.json keeps its top-2 cell for display. Under DDP only process 0 (the one with the
    run directory) scores it."""
    if run is None:
        return {}
    model = trained_supernet(s, searched, run)
    s.reporter.log("search.derive=supernet: the trained supernet is the final model")
    results = final_results(s, model, searched.genotype, run, searched.val_metrics)
    results.update(final_model="supernet", train_seconds=0.0)
    return results


def format_metrics(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))


def write_run_report(run: RunDir) -> None:
    """The run's report.html (unless the config's report is false); a failure here never
    fails the run (it can be redone)."""
    from .report import write_report

    if not run.report:
        return

    try:
        write_report(run.path)
    except Interrupted:
        raise Interrupted(
            f"stopped while writing the report of the finished run; write it with "
            f"`scinas report {run.path}`"
        ) from None
    except Exception as e:
        print(
            f"warning: the report could not be written ({e}); run `scinas report "
            f"{run.path}` to retry",
            file=sys.stderr,
            flush=True,
        )


def finish(run: RunDir | None, results: dict, t0: float) -> dict:
    results["wall_seconds"] = time.perf_counter() - t0
    if "trained_at" in results:  # seconds from the run's start to the end of its training
        results["trained_seconds"] = results.pop("trained_at") - t0
    if run is not None:
        results["checkpoint_seconds"] = run.checkpoint_seconds
        run.write_json("results.json", results)
        Checkpointer(run, "train").clear()
        write_run_report(run)
    return results


def run_recipe(searched: dict | None, results: dict, run_dir) -> dict | None:
    """The run's recipe: the search's (a lineage's changes), with train.augment=auto's choice
    where the search left the final training that choice, and the test-time views the trained
    network kept; rewritten to ``recipe.json``, which export, evaluate and scinas.load apply."""
    if searched is None:
        return results.get("recipe")  # train.augment=auto's, or none
    if not (results.get("recipe") or "tta_checks" in results):
        return searched
    recipe = {**searched, **results.get("recipe", {})}
    if "tta_checks" in results:  # the views the trained network kept
        kept = results.get("tta", {}).get("views", [])
        recipe = {k: v for k, v in recipe.items() if k != "tta"} | ({"tta": kept} if kept else {})
    if run_dir is not None:
        run_dir.write_json("recipe.json", recipe)
    return recipe
