"""The docs' reference pages, generated from the code: the CLI (typer app), the config fields
(pydantic models) and the registries. `scripts/docs_hooks.py` adds them to every mkdocs build;
`python scripts/gen_reference.py DIR` writes them to DIR to read them without mkdocs.
"""

from __future__ import annotations

import inspect
import re
import sys
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))


def cell(text: object) -> str:
    """One Markdown table cell: no newlines, no column breaks."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(text: object) -> str:
    """Inline code that survives backticks and column breaks inside a table."""
    text = cell(text)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def type_name(annotation: object) -> str:
    """A field's or option's type as a user writes it (Literal choices spelled out)."""
    if annotation is None or annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type) and origin is None:
        return annotation.__name__
    text = str(annotation).replace("typing.", "").replace("NoneType", "None")
    text = re.sub(r"<class '([\w.]+)'>", r"\1", text)
    text = re.sub(r"\b(?:[a-z_]+\.)+([A-Za-z_]+)", r"\1", text)  # scinas.rates.X -> X
    return cell(text)


def field_default(field) -> str:
    if field.default is PydanticUndefined:
        return "(required)" if field.default_factory is None else "(section)"
    return code(repr(field.default))


def undescribed_fields(root=None) -> list[str]:
    """Every config field (sections, strategies' settings; or of pydantic model ``root``) that
    has no description."""
    return [key for key, _model, field in _config_fields(root) if not field.description]


def _config_fields(root=None):
    from scinas.config import Config
    from scinas.spaces import SPACES
    from scinas.strategies import STRATEGIES

    def walk(model, prefix):
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                yield from walk(ann, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}", model, field

    if root is not None:
        yield from walk(root, "")
        return
    yield from walk(Config, "")
    for name in STRATEGIES:
        yield from walk(STRATEGIES.get(name).Settings, f"search[{name}].")
    for name in SPACES:
        yield from walk(SPACES.get(name).Settings, f"search[{name} space].")


def _fields_table(model: type[BaseModel], prefix: str, only=None) -> list[str]:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        ann = field.annotation
        if (isinstance(ann, type) and issubclass(ann, BaseModel)) or (only and name not in only):
            continue
        rows.append(
            f"| {code(prefix + name)} | {type_name(ann)} | {field_default(field)} | "
            f"{cell(field.description or '')} |"
        )
    return rows


def config_page() -> str:
    from scinas.config import PRESETS, CompareConfig, Config, DataConfig, SearchConfig, TrainConfig
    from scinas.spaces import SPACES
    from scinas.strategies import STRATEGIES

    space_keys = {k for sp in SPACES for k in SPACES.get(sp).settings}
    shared = [k for k in SearchConfig.model_fields if k not in space_keys]
    out = [
        "# Configuration reference",
        "",
        "Generated from the pydantic models in `scinas.config` and each strategy's `Settings`. "
        "Set any key with `--set KEY=VALUE` or in a YAML, TOML or JSON file given to "
        "`--config` (nested as sections). Precedence, lowest first: field defaults, the preset "
        f"({', '.join(f'`{p}`' for p in PRESETS)}), the config file, `--set`, explicit CLI "
        "options. The defaults below are the fields' own; a preset changes some of them.",
        "",
        "## Top level",
        "",
        *_fields_table(Config, ""),
        "",
        "## `data`",
        "",
        *_fields_table(DataConfig, "data."),
        "",
        "## `search` (every strategy)",
        "",
        *_fields_table(SearchConfig, "search.", only=shared),
        "",
    ]
    for name in SPACES:
        space = SPACES.get(name)
        own = _fields_table(space.Settings, "search.")[2:]
        if space.settings:
            own = _fields_table(SearchConfig, "search.", only=space.settings)[2:] + own
        if own:
            out += [
                f"### `search` settings of the `{name}` space",
                "",
                "Refused in every other space.",
                "",
                *_fields_table(space.Settings, "search.")[:2],
                *own,
                "",
            ]
    out += [
        "## `search` settings of each strategy",
        "",
        "A strategy's own settings; a key of another strategy is refused, naming the strategy "
        "it belongs to (`scinas strategies` lists them too).",
        "",
    ]
    for name in STRATEGIES:
        entry = STRATEGIES.get(name)
        out += [
            f"### `{name}` ({entry.kind})",
            "",
            cell(entry.description),
            "",
            *_fields_table(entry.Settings, "search."),
            "",
        ]
    out += ["## `train`", "", *_fields_table(TrainConfig, "train."), ""]
    out += ["## `compare`", "", *_fields_table(CompareConfig, "compare."), ""]
    return "\n".join(out)


def _commands(app=None):
    """(full verb, click command) for every verb of the typer app, groups' verbs included."""
    import typer.main

    if app is None:
        from scinas.cli import app

    def walk(group, prefix):
        for name, sub in group.commands.items():
            if hasattr(sub, "commands"):
                yield f"{prefix}{name}", sub
                yield from walk(sub, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}", sub

    yield from walk(typer.main.get_command(app), "")


def undescribed_options(app=None) -> list[str]:
    """Every verb, option and argument of the CLI (or of typer ``app``) that has no help text."""
    missing = []
    for verb, command in _commands(app):
        if not (command.help or "").strip():
            missing.append(f"scinas {verb}")
        for param in getattr(command, "params", []):
            if not (getattr(param, "help", None) or "").strip():
                missing.append(f"scinas {verb} {param.opts[0] if param.opts else param.name}")
    return missing


def cli_page() -> str:
    out = [
        "# Command-line reference",
        "",
        "Generated from the typer app in `scinas.cli` (the same text as `scinas VERB --help`).",
        "",
        "| verb | what it does |",
        "|---|---|",
    ]
    commands = list(_commands())
    for verb, command in commands:
        first = inspect.cleandoc(command.help or "").split("\n\n")[0]
        out.append(f"| [`scinas {verb}`](#scinas-{verb.replace(' ', '-')}) | {cell(first)} |")
    out.append("")
    for verb, command in commands:
        out += [f"## scinas {verb}", "", inspect.cleandoc(command.help or ""), ""]
        params = getattr(command, "params", [])
        if not params:
            continue
        out += ["| option | type | default | description |", "|---|---|---|---|"]
        for p in params:
            names = ", ".join(p.opts + p.secondary_opts)
            if p.param_type_name == "argument":
                names = p.name.upper()
            descriptor = getattr(p, "type_descriptor", None)
            kind = (
                "flag"
                if getattr(p, "is_flag", False)
                else type_name(getattr(descriptor, "annotation", None))
            )
            if p.multiple:
                kind += " (repeatable)"
            default = "(required)" if p.required else code(repr(p.default))
            out.append(f"| {code(names)} | {kind} | {default} | {cell(p.help or '')} |")
        out.append("")
    return "\n".join(out)


def _first_line(text: str | None) -> str:
    return cell(inspect.cleandoc(text or "").split("\n\n")[0])


def registries_page() -> str:
    from scinas.cli import _searches
    from scinas.compare import COMPARE_METHODS
    from scinas.data.formats import READERS
    from scinas.data.named import DATASETS
    from scinas.ops import OPS
    from scinas.proxies import PROXIES
    from scinas.spaces import SPACES
    from scinas.spaces.baselines import BASELINES
    from scinas.strategies import STRATEGIES
    from scinas.tasks import TASKS

    out = [
        "# Registries",
        "",
        "Generated from the registries in the code (`scinas.registry.Registry`). Each entry is "
        "one registration; [Extending scinas](../how-to/extend.md) says how to add one.",
        "",
        "## Search spaces (`scinas.spaces.SPACES`)",
        "",
        "| name | weight sharing | what it is | own settings |",
        "|---|---|---|---|",
    ]
    for name in SPACES:
        sp = SPACES.get(name)
        keys = ", ".join(f"`search.{k}`" for k in sp.settings) or "–"
        sharing = "yes" if sp.has_supernet else "no (black-box only)"
        out.append(f"| `{name}` | {sharing} | {cell(sp.description)} | {keys} |")
    out += [
        "",
        "## Strategies (`scinas.strategies.STRATEGIES`)",
        "",
        "| name | kind | spaces | what it does |",
        "|---|---|---|---|",
    ]
    for name in STRATEGIES:
        entry = STRATEGIES.get(name)
        spaces = ", ".join(sp for sp in SPACES if _searches(entry, name, sp))
        out.append(f"| `{name}` | {entry.kind} | {spaces} | {cell(entry.description)} |")
    out += [
        "",
        "## Operations (`scinas.ops.OPS`)",
        "",
        "| name | parameter-free | starts with ReLU |",
        "|---|---|---|",
    ]
    for name in OPS:
        op = OPS.get(name)
        out.append(
            f"| `{name}` | {'yes' if op.parameter_free else 'no'} | "
            f"{'yes' if op.takes_relu else 'no'} |"
        )
    out += ["", "## Tasks (`scinas.tasks.TASKS`)", "", "| name | what it is |", "|---|---|"]
    out += [f"| `{n}` | {_first_line(TASKS.get(n).__doc__)} |" for n in TASKS]
    out += [
        "",
        "## Data formats (`scinas.data.formats.READERS`)",
        "",
        "Asked in this order; the first that recognises the input reads it.",
        "",
        "| name | what it reads |",
        "|---|---|",
    ]
    for n in READERS:
        reader = READERS.get(n)
        out.append(f"| `{n}` | {cell(reader.description)}: {_first_line(type(reader).__doc__)} |")
    out += [
        "",
        "## Named datasets (`scinas.data.named.DATASETS`)",
        "",
        "| name | aliases | what it is |",
        "|---|---|---|",
    ]
    for name in DATASETS:
        ds = DATASETS.get(name)
        aliases = ", ".join(f"`{a}`" for a in ds.aliases) or "–"
        out.append(f"| `{name}` | {aliases} | {cell(ds.description)} |")
    out += [
        "",
        "## Zero-cost proxies (`scinas.proxies.PROXIES`)",
        "",
        "| name | what it scores |",
        "|---|---|",
    ]
    out += [f"| `{n}` | {cell(PROXIES.get(n).description)} |" for n in PROXIES]
    out += [
        "",
        "## Compare methods (`scinas.compare.COMPARE_METHODS`)",
        "",
        "| name | kind | what it is |",
        "|---|---|---|",
    ]
    for name in COMPARE_METHODS:
        m = COMPARE_METHODS.get(name)
        out.append(f"| `{name}` | {m.kind} | {cell(m.description)} |")
    out += ["", "## Baselines (`scinas.spaces.baselines.BASELINES`)", ""]
    out += ["| name | what it is |", "|---|---|"]
    out += [f"| `{n}` | {_first_line(BASELINES.get(n).__doc__)} |" for n in BASELINES]
    out.append("")
    return "\n".join(out)


PAGES = {
    "reference/cli.md": cli_page,
    "reference/config.md": config_page,
    "reference/registries.md": registries_page,
}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python scripts/gen_reference.py OUT_DIR", file=sys.stderr)
        return 2
    for rel, page in PAGES.items():
        path = Path(argv[0]) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page())
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
