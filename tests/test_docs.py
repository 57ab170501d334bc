"""The documentation's own checks: every verb, option and config field described (the generated
reference lists them), the benchmark tables equal to what their result files render, bad result
files refused whole, README short, and the tutorials' commands run (on tiny settings)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import TINY, for_strategy, scinas_cli

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import gen_reference  # noqa: E402
import render_tables  # noqa: E402
import results as bench_results  # noqa: E402

COMMANDS = list(gen_reference._commands())
CLI_PAGE = gen_reference.cli_page()
FIELDS = list(gen_reference._config_fields())


@pytest.mark.parametrize("verb,command", COMMANDS, ids=[v for v, _ in COMMANDS])
def test_every_verb_and_option_has_a_description_in_the_reference(verb, command):
    page = CLI_PAGE
    assert (command.help or "").strip(), f"scinas {verb} has no help text"
    assert f"## scinas {verb}\n" in page
    for param in getattr(command, "params", []):
        name = param.opts[0] if param.opts else param.name
        assert (param.help or "").strip(), f"scinas {verb} {name}: no help text"
        assert f"`{name}" in page or name.upper() in page, name


def test_the_description_checks_find_what_has_none():
    import typer
    from pydantic import BaseModel, Field

    app = typer.Typer()

    @app.command("go")
    def go(fast: bool = typer.Option(False, "--fast"), n: int = typer.Option(1, help="count")):
        pass

    @app.command("stop")
    def stop():
        """Stop."""

    assert gen_reference.undescribed_options(app) == ["scinas go", "scinas go --fast"]

    class Inner(BaseModel):
        a: int = Field(1, description="an a")
        b: int = 2

    class Outer(BaseModel):
        inner: Inner = Inner()
        c: str = "x"

    assert gen_reference.undescribed_fields(Outer) == ["inner.b", "c"]
    assert gen_reference.undescribed_options() == [] and gen_reference.undescribed_fields() == []


def test_every_config_field_has_a_description_in_the_reference():
    assert gen_reference.undescribed_fields() == []
    page = gen_reference.config_page()
    for key, _model, field in FIELDS:
        plain = re.sub(r"^search\[[^\]]+\]\.", "search.", key)
        assert f"`{plain}`" in page, key
        assert gen_reference.cell(field.description) in page, key


def test_the_registries_page_names_every_entry():
    from scinas.data.formats import READERS
    from scinas.ops import OPS
    from scinas.spaces import SPACES
    from scinas.strategies import STRATEGIES
    from scinas.tasks import TASKS

    page = gen_reference.registries_page()
    for registry in (OPS, SPACES, STRATEGIES, TASKS, READERS):
        for name in registry:
            assert f"| `{name}` |" in page, name


def test_rendered_tables_equal_what_is_committed():
    assert render_tables.main(["--check"]) == 0


def _copy_layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    docs, readme = tmp_path / "benchmarks.md", tmp_path / "README.md"
    shutil.copy(ROOT / "docs" / "benchmarks.md", docs)
    shutil.copy(ROOT / "README.md", readme)
    return results, docs, readme


def _corrupt(data: dict, field: str) -> dict:
    data = json.loads(json.dumps(data))
    if "." in field:
        outer, inner = field.split(".")
        del data[outer][inner]
    else:
        del data[field]
    return data


@pytest.mark.parametrize(
    "field",
    [
        *bench_results.REQUIRED,
        *(f"machine.{k}" for k in bench_results.MACHINE_FIELDS),
        "figures.columns",
        "figures.rows",
    ],
)
def test_a_result_missing_a_field_stops_the_script_naming_file_and_field(tmp_path, capsys, field):
    results, docs, readme = _copy_layout(tmp_path)
    victim = sorted(results.glob("*.json"))[-1]
    victim.write_text(json.dumps(_corrupt(json.loads(victim.read_text()), field)))
    before = (docs.read_text(), readme.read_text())
    docs.write_text("stale\n")  # a half-written table would overwrite this
    code = render_tables.main(
        ["--results", str(results), "--docs", str(docs), "--readme", str(readme)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert victim.name in err and f"'{field}'" in err, err
    assert docs.read_text() == "stale\n" and readme.read_text() == before[1]


def test_a_result_naming_an_unknown_benchmark_is_refused(tmp_path, capsys):
    results, docs, readme = _copy_layout(tmp_path)
    victim = sorted(results.glob("*.json"))[0]
    data = json.loads(victim.read_text())
    data["benchmark"] = "speed_of_light"
    victim.write_text(json.dumps(data))
    code = render_tables.main(
        ["--results", str(results), "--docs", str(docs), "--readme", str(readme)]
    )
    err = capsys.readouterr().err
    assert code == 2 and victim.name in err and "'benchmark'" in err and "speed_of_light" in err


def test_a_row_of_the_wrong_width_is_refused(tmp_path, capsys):
    results, docs, readme = _copy_layout(tmp_path)
    victim = sorted(results.glob("*.json"))[0]
    data = json.loads(victim.read_text())
    data["figures"]["rows"][0] = data["figures"]["rows"][0][:-1]
    victim.write_text(json.dumps(data))
    code = render_tables.main(
        ["--results", str(results), "--docs", str(docs), "--readme", str(readme)]
    )
    assert code == 2 and "'figures.rows[0]'" in capsys.readouterr().err


def test_write_result_records_the_machine_and_the_newest_supersedes(tmp_path):
    path = bench_results.write_result(
        "compare",
        "Fashion-MNIST, 600 s per method, 2 seeds",
        ["method", "test accuracy"],
        [["scinas", 0.91234567], ["resnet_tiny", "0.904 ± 0.002"]],
        command="scinas compare --data fashion-mnist --budget 600 --seeds 2",
        out_dir=tmp_path / "results",
    )
    data = json.loads(path.read_text())
    assert data["machine"]["cores"] >= 1 and data["machine"]["cpu"]
    assert data["commit"] and data["figures"]["rows"][0] == ["scinas", "0.9123"]
    # beside the committed results, the new file is the current one for its setting
    shutil.copytree(ROOT / "benchmarks" / "results", tmp_path / "results", dirs_exist_ok=True)
    loaded = render_tables.load(tmp_path / "results")
    now = render_tables.current(loaded)
    mine = [r for r in now if r["setting"] == data["setting"]]
    assert len(mine) == 1 and mine[0]["_file"].endswith(path.name)
    page = render_tables.docs_page(loaded)
    assert "0.9123" in page and "## Superseded results" in page


def test_a_result_of_another_machine_is_not_overwritten(tmp_path):
    args = ("compare", "CIFAR, 600 s", ["method", "test accuracy"], [["scinas", 0.76]])
    path = bench_results.write_result(*args, command="scinas compare", out_dir=tmp_path)
    again = bench_results.write_result(*args[:3], [["scinas", 0.77]], command="c", out_dir=tmp_path)
    assert again == path and json.loads(path.read_text())["figures"]["rows"] == [["scinas", "0.77"]]
    data = json.loads(path.read_text())
    data["machine"]["cpu"] = "another CPU"
    path.write_text(json.dumps(data))
    with pytest.raises(bench_results.ResultError, match="another machine.*another CPU"):
        bench_results.write_result(*args, command="scinas compare", out_dir=tmp_path)
    assert json.loads(path.read_text())["machine"]["cpu"] == "another CPU"  # kept as it was


def test_an_invalid_result_is_never_written(tmp_path):
    with pytest.raises(bench_results.ResultError, match="unknown benchmark"):
        bench_results.write_result("nope", "x", ["a"], [["b"]], out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_readme_is_short_and_its_test_command_is_ci_s():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    command = ".venv/bin/python -m pytest -q -n 2"
    assert command in readme
    assert any(line.strip() == command for line in (ROOT / ".ci" / "run").read_text().splitlines())
    assert "mkdocs build --strict" in readme


DATED = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")


@pytest.mark.parametrize(
    "page",
    [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_dated_sentences_in_readme_or_docs_prose(page):
    """Dates belong to result files and the changelog; generated tables carry them from there."""
    text = page.read_text()
    if page.name == "README.md":
        start, end = text.find(render_tables.README_START), text.find(render_tables.README_END)
        text = text[:start] + text[end:]
    if page == ROOT / "docs" / "benchmarks.md":
        return  # rendered from the result files (checked above)
    assert not DATED.findall(text), f"{page.name}: {DATED.findall(text)}"


# --- the tutorials' commands, run in order on tiny settings -------------------------------------

TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.md"))
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.M | re.S)


def _tiny(verb: str, args: list[str], *extra: str) -> list[str]:
    """The tutorial's arguments, made small enough for the suite."""
    if "--resume" in args:
        return args  # the run's own config
    strategy = args[args.index("--strategy") + 1] if "--strategy" in args else "darts"
    if verb in ("run", "search"):
        sets = for_strategy(
            [*TINY, f"search.strategy={strategy}", "search.eval_fraction=0.2", *extra]
        )
        sets = [s for s in sets if not s.startswith("search.strategy=")]
        return args + [a for s in sets for a in ("--set", s)]
    if verb == "compare":  # one seed: the seeds' statistics are test_compare.py's
        if "--seeds" in args:
            args = [*args[: args.index("--seeds")], *args[args.index("--seeds") + 2 :]]
        sets = [*TINY, "compare.budget=null"]
        return [*args, "--seeds", "1"] + [a for s in sets for a in ("--set", s)]
    return args


def _run_tutorial(path: Path, cwd: Path, env: dict, python_only: bool = False) -> None:
    study = f"tutorial-{uuid.uuid4().hex[:8]}"
    for lang, body in BLOCK.findall(path.read_text()):
        if lang == "python":
            proc = subprocess.run(
                [sys.executable, "-c", body], cwd=cwd, env=env, capture_output=True, text=True
            )
            assert proc.returncode == 0, f"{path.name}: python block failed:\n{proc.stderr}"
            continue
        if python_only:
            continue
        for line in body.replace("\\\n", " ").splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            words = shlex.split(re.sub(r"\$(\w+)", lambda m: env.get(m[1], m[0]), line))
            if words[:2] == ["timeout", "--signal=INT"]:
                _interrupt(path, words[3:], cwd, env)
                continue
            if words[0] == "scinas":
                verb, args = words[1], words[2:]
                if "--study" in args:
                    args[args.index("--study") + 1] = study
                # in this process (the CLI as a process is test_cli's and test_resume's): the
                # same exit code and output, without seconds of start-up per command
                with _cwd(cwd):
                    proc = scinas_cli(verb, *_tiny(verb, args))
                assert proc.returncode == 0, f"{path.name}: {line}\n{proc.stdout}\n{proc.stderr}"
                continue
            if words[0] == "python":
                cmd = [sys.executable, *words[1:]]
            else:
                raise AssertionError(f"{path.name}: the test runs scinas and python only: {line}")
            proc = subprocess.run(
                cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900
            )
            assert proc.returncode == 0, f"{path.name}: {line}\n{proc.stdout}\n{proc.stderr}"


@contextlib.contextmanager
def _cwd(path: Path):
    """The tutorial's commands name their files relative to the folder they run in."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _interrupt(path: Path, words: list[str], cwd: Path, env: dict) -> None:
    """Run a tutorial's command and press Ctrl-C once its first checkpoint is written (where
    the tutorial says `timeout --signal=INT`): it must stop with code 130 and leave no result."""
    assert words[0] == "scinas", f"{path.name}: timeout is for scinas commands"
    verb, args = words[1], words[2:]
    out = cwd / args[args.index("--out") + 1]
    cmd = [sys.executable, "-m", "scinas", verb, *_tiny(verb, args, "search.epochs=3")]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while proc.poll() is None and not any((out / "checkpoints").glob("*")):
        assert time.monotonic() < deadline, f"{path.name}: no checkpoint in 600 s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130 and "--resume" in err, err
    assert not (out / "results.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "tutorial",
    [  # a tutorial's run started as a process and resumed in this one: the real DARTS default
        pytest.param(t, marks=pytest.mark.all_ops) if t.stem == "resume-and-share" else t
        for t in TUTORIALS
    ],
    ids=lambda p: p.stem,
)
def test_tutorial_commands_run(tutorial, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    text = tutorial.read_text()
    if "$SCINAS_DB" in text:
        if not os.environ.get("SCINAS_TEST_POSTGRES"):
            pytest.skip("no PostgreSQL server: set SCINAS_TEST_POSTGRES")
        env["SCINAS_DB"] = os.environ["SCINAS_TEST_POSTGRES"]
    needs = re.findall(r"--data (\S+\.npz)", text)
    for name in needs:  # a tutorial that continues another one gets its data made first
        if name not in "".join(b for lang, b in BLOCK.findall(text) if lang == "python"):
            _run_tutorial(ROOT / "docs" / "tutorials" / "own-images.md", tmp_path, env, True)
            break
    _run_tutorial(tutorial, tmp_path, env)


def test_a_compare_and_a_printed_table_become_result_files(tmp_path):
    import record

    from scinas.stats import welch

    folder = tmp_path / "cmp lr=0.1"  # one folder, though its name holds "="
    folder.mkdir()
    compare = {
        "metric": "accuracy",
        "complete": True,
        "vs_scinas": {"resnet_tiny": {"p": 0.3182, "difference": -0.003}},
        "methods": {
            "scinas": {"values": [0.906, 0.908], "mean": 0.907, "std": 0.0014,
                       "used_seconds_per_seed": [598.2, 601.0]},
            "resnet_tiny": {"values": [0.903, 0.905], "mean": 0.904, "std": 0.0014,
                            "used_seconds_per_seed": [597.0, 598.4]},
        },
    }  # fmt: skip
    (folder / "compare.json").write_text(json.dumps(compare))
    out = tmp_path / "results"
    args = ["compare", str(folder), "--setting", "digits, 600 s", "--command", "scinas compare"]
    assert record.main([*args, "--results", str(out), "--headline"]) == 0
    (path,) = out.glob("compare-digits-600-s-*.json")
    data = bench_results.validate(json.loads(path.read_text()), str(path))
    assert data["headline"] is True
    assert data["figures"]["rows"] == [
        ["scinas", "0.907 ± 0.001", "–", "598, 601"],
        ["resnet_tiny", "0.904 ± 0.001", "0.32", "597, 598"],
    ]
    compare["complete"] = False
    (folder / "compare.json").write_text(json.dumps(compare))
    assert record.main([*args, "--results", str(tmp_path / "other")]) == 2
    assert not (tmp_path / "other").exists()

    # the same method under two settings, one table: rows by label, p against the first label
    compare["complete"] = True
    (folder / "compare.json").write_text(json.dumps(compare))
    other = tmp_path / "cmp2"
    other.mkdir()
    compare["methods"]["resnet_tiny"]["values"] = [0.913, 0.916]
    compare["methods"]["resnet_tiny"]["mean"], compare["methods"]["resnet_tiny"]["std"] = (
        0.9145,
        0.0021,
    )
    (other / "compare.json").write_text(json.dumps(compare))
    two = [
        "compare",
        f"default={folder}",
        f"auto={other}",
        *args[2:],
        "--results",
        str(tmp_path / "two"),
    ]
    assert record.main(two) == 0
    (path,) = (tmp_path / "two").glob("compare-*.json")
    rows = json.loads(path.read_text())["figures"]["rows"]
    assert [r[0] for r in rows] == [
        "scinas (default)", "resnet_tiny (default)", "scinas (auto)", "resnet_tiny (auto)"
    ]  # fmt: skip
    p = welch([0.913, 0.916], [0.903, 0.905])[1]
    assert rows[3][2] == f"{p:.2g}" and rows[2][2] == "1" and rows[0][2] == "–"
    assert record.main(["compare", str(folder), f"auto={other}", *args[2:]]) == 2  # no label

    table = "| variant | test |\n|---|---|\n| default | 0.981 |\n| darts | 0.994 |\n"
    path = bench_results.write_table("robust_oneshot", "digits", table, out_dir=out)
    rows = json.loads(path.read_text())["figures"]
    assert rows == {
        "columns": ["variant", "test"],
        "rows": [["default", "0.981"], ["darts", "0.994"]],
    }
