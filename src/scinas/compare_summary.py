"""The summary of a comparison: compare.json written after every run, each method's mean and
spread over seeds, Welch's tests against the reference method, and the printed table."""

from __future__ import annotations

from .compare_methods import COMPARE_METHODS
from .stats import ci95, mean_std, welch

# seconds a method's run keeps for its report and saving, after its testing (whose time the
# trainer keeps from its measured validation passes), until its first run has measured them
FINISH_RESERVE = 2.0


class _State:
    """The finished runs of a compare and their summary (compare.json)."""

    def __init__(self, task, methods, seeds, budget, share, plans, done: list[dict], seconds):
        self.task, self.metric = task, task.primary_metric
        self.methods, self.seeds, self.budget, self.share = methods, seeds, budget, share
        self.plans = plans
        self.runs = [r for r in done if r["method"] in methods]
        self.helper_runs = [r for r in done if r["method"] not in methods]  # darts for others
        self.seconds = seconds
        self.finish_reserve: dict[str, float] = {}

    def find(self, method: str, seed: int) -> dict | None:
        for r in self.runs + self.helper_runs:
            if r["method"] == method and r["seed"] == seed:
                return r
        return None

    def add(self, record: dict) -> None:
        (self.runs if record["method"] in self.methods else self.helper_runs).append(record)

    def summary(self, complete: bool) -> dict:
        methods = {}
        for name in self.methods:
            mine = [r for r in self.runs if r["method"] == name]
            ok = [r for r in mine if r["status"] == "done"]
            values = [r["value"] for r in ok]
            entry = {"values": values, "seeds_done": [r["seed"] for r in ok]}
            entry["failed"] = {str(r["seed"]): r["reason"] for r in mine if r["status"] == "failed"}
            lineages = {str(r["seed"]): r["lineage"] for r in ok if "lineage" in r}
            if lineages:
                entry["lineage"] = lineages
            recipes = {str(r["seed"]): r["recipe"] for r in ok if "recipe" in r}
            if recipes:
                entry["recipe"] = recipes
            stopped = {str(r["seed"]): r["search_stopped"] for r in ok if "search_stopped" in r}
            if stopped:
                entry["search_stopped"] = stopped
            if values:
                mean, std = mean_std(values)
                lo, hi = ci95(values)
                used = [r["used_seconds"] for r in ok]
                entry.update(
                    mean=mean,
                    std=std,
                    ci95=[lo, hi],
                    params=ok[-1]["params"],
                    flops=ok[-1]["flops"],
                    used_seconds=sum(used) / len(used),
                    used_seconds_per_seed=used,
                )
                if self.budget is not None and COMPARE_METHODS.get(name).kind != "supernet":
                    entry["used_share"] = [u / self.budget for u in used]
            methods[name] = entry
        return {
            "task": self.task.name,
            "metric": self.metric,
            "higher_is_better": self.task.higher_is_better,
            "seeds": self.seeds,
            "complete": complete,
            "methods": methods,
            "reference": (ref := reference(methods)),
            "vs_reference": _tests(methods, ref) if ref else {},
            "vs_darts": _tests(methods, "darts"),
            "vs_scinas": _tests(methods, "scinas"),
            "seconds": self.seconds,
            "budget": {
                "seconds_per_method": self.budget,
                "search_share": self.share if self.budget is not None else None,
                "plans": {
                    name: {phase: p.to_dict() for phase, p in ps.items()}
                    for name, ps in self.plans.items()
                },
            },
            "runs": self.runs,
            "helper_runs": self.helper_runs,
        }


def reference(methods: dict) -> str | None:
    """The method the others are tested against: ``scinas``, else ``darts``, else the first
    search among the methods (``model_search`` beside ``model``), else the first method; one
    with values."""
    done = [name for name, m in methods.items() if m.get("values")]
    searches = [n for n in done if COMPARE_METHODS.get(n).kind == "search"]
    for name in ["scinas", "darts", *searches, *done]:
        if name in done:
            return name
    return None


def reference_tests(result: dict) -> tuple[str, dict]:
    """A compare.json's reference method and its tests (files written before ``reference``
    existed: scinas, else darts)."""
    if "reference" in result:
        return result["reference"] or "-", result.get("vs_reference", {})
    name = "scinas" if result.get("vs_scinas") else "darts"
    return name, result.get(f"vs_{name}", {})


def _tests(methods: dict, reference: str) -> dict:
    """Welch's t-test of every method against ``reference`` (both with values)."""
    if not methods.get(reference, {}).get("values"):
        return {}
    base = methods[reference]
    tests = {}
    for name, m in methods.items():
        if name != reference and m["values"]:
            t, p = welch(m["values"], base["values"])
            tests[name] = {
                "difference": m["mean"] - base["mean"],
                "t": t,
                "p": p,
                "significant": p is not None and p < 0.05,
            }
    return tests


def table(result: dict) -> str:
    """The compare as a text table (the CLI prints it)."""
    metric = result["metric"]
    reference, tests = reference_tests(result)
    lines = [
        f"{'method':<15} {metric + ' mean':>12} {'std':>8} {'95% CI':>19} {'params':>10} "
        f"{'used s':>8}  vs {reference}"
    ]
    budget = result.get("budget", {}).get("seconds_per_method")
    if budget is not None:
        share = result["budget"]["search_share"]
        lines.insert(
            0,
            f"budget: {budget:g} s per method and seed, everything included (darts and "
            f"random plan {share:.0%} of it for searching, scinas its recipe's share); "
            f"{result['seeds']} seeds; {result['seconds']:.0f} s in all",
        )
    for name, m in result["methods"].items():
        failed = m.get("failed", {})
        if not m["values"]:
            lines.append(f"{name:<15} {'failed on every seed':>41}")
        else:
            vs = tests.get(name)
            note = ""
            if vs:
                sig = ", significant" if vs["significant"] else ""
                p = "untested: neither varies" if vs["p"] is None else f"p={vs['p']:.3f}"
                note = f"{vs['difference']:+.4f} ({p}{sig})"
            params = f"{m['params']:,}" if m["params"] else "-"
            lines.append(
                f"{name:<15} {m['mean']:>12.4f} {m['std']:>8.4f} "
                f"[{m['ci95'][0]:.4f}, {m['ci95'][1]:.4f}] {params:>10} "
                f"{m['used_seconds']:>8.1f}  {note}"
            )
        for seed, reason in failed.items():
            lines.append(f"  {name} seed {seed} failed: {reason}")
        for seed, recipe in m.get("recipe", {}).items():  # train.augment=auto's choice
            lines.append(
                f"  {name} seed {seed}: recipe " + ", ".join(f"{k}={v}" for k, v in recipe.items())
            )
        for seed, why in m.get("search_stopped", {}).items():
            lines.append(f"  {name} seed {seed}: {why}")
        for seed, lin in m.get("lineage", {}).items():
            recipe = ", ".join(f"{k}={v}" for k, v in lin["recipe_changes"].items()) or "unchanged"
            lines.append(
                f"  {name} seed {seed}: {lin['accepted']} challengers accepted, "
                f"{lin['rejected']} rejected as not better beyond noise; recipe {recipe}"
            )
    if not result.get("complete", True):
        lines.append("(unfinished: continue with scinas compare --resume DIR)")
    return "\n".join(lines)
