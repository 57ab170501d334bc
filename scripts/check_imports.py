"""Check the package's import graph for circles and for imports that point up the layers, and that
no module outside ``spaces/`` branches on a search space's name or imports a space's architecture
types.

    python scripts/check_imports.py [SRC]    # exit 0: none of them; 1: lists them

SRC is the folder holding the ``scinas`` package (default: this checkout's ``src``), so the same
check can be pointed at an older checkout.

Imports are counted as Python executes them: every ``import`` inside ``src/scinas`` counts,
also those inside functions (a lazy import still ties two modules together when it runs), except
those under ``if TYPE_CHECKING:``. Importing ``scinas.a.b`` also runs the package ``scinas.a``'s
``__init__``, so it counts as an import of ``scinas.a`` too, unless the importer lives inside
``scinas.a`` (its own packages are already being imported when it runs). A circle is a strongly
connected component of more than one module, reported as the modules on it.

Every module belongs to one layer of `LAYERS` (CONTRIBUTING.md draws them) and imports only from
its own layer or those below; a new module is placed there first.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "scinas"


# Bottom to top; a module belongs to the first entry naming it or a package above it.
LAYERS: dict[str, tuple[str, ...]] = {
    "core": (
        "errors", "registry", "bounds", "nested", "rates", "userpaths", "signals", "version",
        "progress", "stats", "memory", "config", "files", "runlock", "rundir", "checkpoint",
        "run_context", "parallel", "allocator", "placement", "precision", "flops", "weights",
        "workers",
    ),
    "plugins": ("lean_ops", "ops", "data", "tasks", "spaces", "proxies"),
    "engine": (
        "train", "divergence", "deadline", "evaluation", "symmetry", "optim", "lr_finder",
        "budget", "fit", "hardware", "inherit", "context", "minirocket",
    ),
    "strategies": ("strategies",),
    "verbs": (
        "preflight", "run_start", "run_end", "pipeline", "export", "compare", "compare_methods",
        "compare_summary", "report", "report_figures", "recommend", "bench", "cli", "__main__",
        "",  # the package's __init__: the public API
    ),
}  # fmt: skip


def layer_of(module: str) -> int | None:
    """The index in `LAYERS` of ``module``'s layer (None: not placed)."""
    rel = module.removeprefix(PACKAGE).removeprefix(".")
    for i, names in enumerate(LAYERS.values()):
        if any(rel == n or rel.startswith(f"{n}.") for n in names if n) or rel in names:
            return i
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a module in a higher layer, and modules in no layer."""
    names = list(LAYERS)
    found = []
    for module, targets in sorted(graph.items()):
        low = layer_of(module)
        if low is None:
            found.append(f"{module} is in no layer (add it to LAYERS)")
            continue
        for target in sorted(targets):
            high = layer_of(target)
            if high is not None and high > low:
                found.append(f"{module} ({names[low]}) imports {target} ({names[high]})")
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def _ancestors(name: str) -> list[str]:
    """The packages Python imports before ``name``: ``a.b.c`` -> ``a``, ``a.b``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules that running ``path`` imports: each target of an ``import`` or
    ``from`` statement (a ``from X import Y`` of a submodule Y counts as importing X.Y; of a name,
    as importing X) and the packages above it whose ``__init__`` that runs."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    own = set(_ancestors(name)) | ({name} if path.name == "__init__.py" else set())
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    targets: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            targets.add(target)
            for alias in node.names:
                if f"{target}.{alias.name}" in modules:
                    targets.add(f"{target}.{alias.name}")
    out: set[str] = set()
    for target in targets:
        out.update(m for m in (*_ancestors(target), target) if m not in own)
    return {m for m in out if m in modules and m != name}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


SPACE_WORDS = ("nb201", "NB201", "BaselineArch", "Genotype", "darts_decisions")


def space_branches(files: list[Path]) -> list[str]:
    """Comparisons with a space's name, and isinstance checks on architecture types, outside
    ``spaces/`` (the protocol is the only way to ask about a space)."""
    found = []
    for path in files:
        rel = path.relative_to(ROOT)
        if rel.parts[1] == "spaces":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                consts = [c.value for c in ast.walk(node) if isinstance(c, ast.Constant)]
                if any(v in ("darts", "nb201", "baseline") for v in consts) and "space" in (
                    ast.unparse(node)
                ):
                    found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "isinstance"
                and any(w in ast.unparse(node.args[1]) for w in SPACE_WORDS)
            ):
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    return found


def main() -> int:
    global ROOT
    if len(sys.argv) > 1:
        ROOT = Path(sys.argv[1]).resolve()
    files = sorted((ROOT / PACKAGE).rglob("*.py"))
    modules = {module_name(p) for p in files}
    graph = {module_name(p): imports_of(p, modules) for p in files}
    cycles = find_cycles(graph)
    upward = upward_imports(graph)
    branches = space_branches(files)
    for comp in cycles:
        print("import circle:", " <-> ".join(comp))
    for line in upward:
        print("layers:", line)
    for line in branches:
        print("space branch outside spaces/:", line)
    print(
        f"{len(graph)} modules, {sum(map(len, graph.values()))} imports: "
        f"{len(cycles)} circles, {len(upward)} imports up the layers, "
        f"{len(branches)} space branches outside spaces/"
    )
    return 1 if cycles or upward or branches else 0


if __name__ == "__main__":
    sys.exit(main())
