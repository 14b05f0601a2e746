"""The package's import structure: a light CLI and configuration, and imports that only go one way."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import cldst

PACKAGE = Path(cldst.__file__).parent
HEAVY = ("torch", "pandas", "numpy", "matplotlib", "papermill", "seaborn")


def test_the_cli_and_the_config_import_no_heavy_library():
    """`cldst --help` and a one-line config error must answer at once: nothing the CLI imports to parse
    and validate may pull in torch or pandas (cldst.lazy). -X importtime measures the import itself."""
    code = ("import sys, cldst.cli, cldst.config; "
            "cldst.config.Config(growth='0:random,5:gradient', drop='magnitude').validate(); "
            "assert cldst.cli.main(['run', '--density', '2']) == 2; "  # a bad value: one line, nothing heavy
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported by the CLI: {out.stdout.strip()}"
    # (how long the import takes is no test on a shared 2-core machine: -X importtime prints it, and what
    # keeps it short is that nothing heavy is imported, asserted above)


def module_imports(path: Path) -> set[str]:
    """The cldst modules a module imports when it is imported: module-level statements only (imports
    inside functions run later, and `if TYPE_CHECKING:` blocks never)."""
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, (ast.Import, ast.ImportFrom, ast.If, ast.Try)) else []:
            if isinstance(sub, ast.Import):
                found |= {a.name for a in sub.names if a.name.startswith("cldst")}
            elif isinstance(sub, ast.ImportFrom):
                base = sub.module or ""
                if sub.level:  # relative import
                    base = ".".join(name.split(".")[: len(name.split(".")) - sub.level + (path.name == "__init__.py")]
                                    + ([base] if base else []))
                if base.startswith("cldst"):
                    found.add(base)
                    found |= {f"{base}.{a.name}" for a in sub.names}  # `from cldst import data` imports cldst.data
                    lazy = getattr(importlib.import_module(base), "LAZY_EXPORTS", {})  # cldst.lazy
                    found |= {base + lazy[a.name] for a in sub.names if a.name in lazy}
    modules = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
               for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in modules and m != name}


def test_imports_go_one_way_without_a_loop():
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = module_imports(path)
    assert "cldst.sparse.state" in graph["cldst.train"]  # the parser sees imports at all
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import loop: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
