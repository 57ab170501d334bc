"""Record what a scinas verb measured as a result file for the docs' tables.

    python benchmarks/record.py compare runs/cmp --setting "Fashion-MNIST, 600 s per method" \
        --command "scinas compare --data fashion-mnist --budget 600 --seeds 2"
    python benchmarks/record.py compare default=runs/a auto=runs/b --setting ... --command ...
    python benchmarks/record.py nb201 runs/bench-evo runs/bench-rs \
        --setting "100 queries, 50 seeds" \
        --command "scinas bench nb201 --table T --strategy S --budget 100 --seeds 50"

Several compares (``LABEL=FOLDER``, e.g. the same method under two settings) become one table
whose rows are named ``method (LABEL)``, with Welch's p of each row against the first folder's
row of the same method. `scinas compare` writes compare.json and `scinas bench nb201`
results.json; this turns them into ``benchmarks/results/<benchmark>-<setting>-<date>.json``
(scripts/render_tables.py then renders the tables). The command is given because the verbs do
not keep their command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from results import ResultError, write_result


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ResultError(f"{path}: cannot be read as JSON ({e})") from None


def _compare(folder: Path) -> dict:
    data = _read(folder / "compare.json")
    if not data.get("complete", True):
        raise ResultError(f"{folder / 'compare.json'}: the compare is unfinished (--resume it)")
    return data


def _row(name: str, m: dict, p: float | None) -> list:
    """A method's row: mean ± std over the seeds, p, the seconds each seed used."""
    if not m["values"]:
        return [name, "failed on every seed", "–", "–"]
    used = ", ".join(f"{s:.0f}" for s in m.get("used_seconds_per_seed", []))
    return [name, f"{m['mean']:.3f} ± {m['std']:.3f}", "–" if p is None else f"{p:.2g}", used]


def labelled_rows(folders: list[str]) -> tuple[list[str], list[list]]:
    """``LABEL=FOLDER`` compares in one table: each method's rows by label, p against the
    first label's row of the same method (Welch's t-test, `scinas.stats.welch`)."""
    from scinas.stats import welch

    pairs = []
    for item in folders:
        label, sep, folder = item.partition("=")  # a folder's name may hold "=" too
        if not sep or not label or not folder or Path(item).is_dir():
            raise ResultError(f"{item}: give several compares as LABEL=FOLDER")
        pairs.append((label, _compare(Path(folder))))
    first_label, first = pairs[0]
    rows = []
    for label, data in pairs:
        for name, m in data["methods"].items():
            base = first["methods"].get(name, {}).get("values", [])
            p = None
            if label != first_label and len(base) > 1 and len(m["values"]) > 1:
                p = welch(m["values"], base)[1]
            rows.append(_row(f"{name} ({label})", m, p))
    return ["method", f"test {first['metric']}", f"p vs {first_label}", "used s per seed"], rows


def compare_rows(folder: Path) -> tuple[list[str], list[list]]:
    """The methods of a finished `scinas compare`: mean ± std, p against the reference, the
    seconds each seed used."""
    from scinas.compare_summary import reference_tests

    data = _compare(folder)
    reference, tests = reference_tests(data)
    rows = [_row(name, m, tests.get(name, {}).get("p")) for name, m in data["methods"].items()]
    columns = ["method", f"test {data['metric']}", f"p vs {reference}", "used s per seed"]
    return columns, rows


def nb201_rows(folders: list[Path]) -> tuple[list[str], list[list]]:
    """One row per `scinas bench nb201` output: the strategy and its test accuracy."""
    rows = []
    for folder in folders:
        data = _read(folder / "results.json")
        rows.append(
            [
                data.get("strategy", folder.name),
                f"{data['test_accuracy_mean']:.2f} ± {data['test_accuracy_std']:.2f}",
            ]
        )
    return ["strategy", "CIFAR-10 test (200 epochs)"], rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=["compare", "nb201"])
    ap.add_argument("folders", nargs="+", help="FOLDER, or LABEL=FOLDER for several compares")
    ap.add_argument("--setting", required=True, help="what was measured, e.g. data and budget")
    ap.add_argument("--command", required=True, help="the command that measured it")
    ap.add_argument("--notes")
    ap.add_argument("--headline", action="store_true", help="also in README's results table")
    ap.add_argument("--results", type=Path, help="where the file goes (benchmarks/results)")
    args = ap.parse_args(argv)
    try:
        if args.kind == "compare":
            one = args.folders[0]
            if len(args.folders) == 1 and ("=" not in one or Path(one).is_dir()):
                columns, rows = compare_rows(Path(args.folders[0]))
            else:
                columns, rows = labelled_rows(args.folders)
            benchmark = "compare"
        else:
            columns, rows = nb201_rows([Path(f) for f in args.folders])
            benchmark = "nb201_blackbox"
        write_result(
            benchmark,
            args.setting,
            columns,
            rows,
            command=args.command,
            notes=args.notes,
            headline=args.headline,
            out_dir=args.results,
        )
    except ResultError as e:
        print(f"record: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
