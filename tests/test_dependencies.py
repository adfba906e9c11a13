"""A declared dependency is a used dependency, and every import is declared (pyproject.toml vs `import`s).

Runtime dependencies must each be imported by product code (geo, ingest, api, store, config, forecourt), and
product code imports nothing else outside the standard library and the project. The optional extras
hold the rest: `fetch` for `fetch-region`, `bench` for the benchmarks, `dev` for tests and lint.
Distribution names are mapped to import names from the installed packages' metadata.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import subprocess
import sys
import tomllib
from functools import cache

from config import PROJECT_ROOT

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
PRODUCT = (
    "geo",
    "ingest",
    "api",
    "store",
    "config",
    "payments",
    "wechat",
    "fuelling",
    "forecourt",
    "devices",
    "backoffice",
    "loyalty",
    "risk",
)
FIRST_PARTY = {*PRODUCT, "tests", "benchmarks"}

# Product modules that import an extra's packages, and which extra. They are imported only when their
# command runs, and the command says in one line how to install the extra (tests/test_cli.py).
OPTIONAL_IN = {"ingest/_overpass.py": "fetch"}

# Modules product code imports from a declared framework's own layer: they come with it (the framework
# requires them unconditionally and constrains their version), so they are not pinned a second time.
PROVIDED_BY = {
    "starlette": ("fastapi", "FastAPI is built on Starlette; api/_errors.py handles its HTTPException"),
    "anyio": ("fastapi", "FastAPI's async layer; api/_security.py runs blocking work in its threads"),
    "h11": ("uvicorn", "api/_http.py extends uvicorn's own h11 protocol"),
    "annotated_types": ("pydantic", "pydantic's constraint types; api/_errors.py words their 422 messages"),
    "llvmlite": ("numba", "numba's code generator; geo/_kernels.py writes an intrinsic with its IR"),
}

# Runtime dependencies that product code uses without importing them.
USED_INDIRECTLY: dict[str, str] = {"honcho": "`make run` starts the Procfile's processes with it"}

# dev dependencies that are tools rather than imports.
DEV_TOOLS = {
    "ruff": "lint and format (make lint)",
    "mypy": "type check (make lint)",
    "pytest-timeout": "the `timeout` of [tool.pytest.ini_options]",
    "pytest-xdist": "`make test` runs the tests in TEST_WORKERS processes (-n)",
    "schemathesis": "its command-line runner fuzzes the API (tests/test_fuzz.py)",
    "httpx2": "the transport of fastapi.testclient.TestClient",
}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dist_name(requirement: str) -> tuple[str, set[str]]:
    """`psycopg[binary]==3.3.9` -> ("psycopg", {"binary"})."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", requirement)
    assert m, f"cannot read the requirement {requirement!r}"
    return norm(m.group(1)), {e.strip() for e in (m.group(2) or "").split(",") if e.strip()}


def declared(group: str | None) -> set[str]:
    """Distributions of the runtime dependencies (None) or of an extra, self-references expanded."""
    items = PROJECT["dependencies"] if group is None else PROJECT["optional-dependencies"][group]
    out: set[str] = set()
    for requirement in items:
        name, extras = dist_name(requirement)
        if name == norm(PROJECT["name"]):
            for extra in extras:
                out |= declared(extra)
        else:
            out.add(name)
    return out


@cache
def _installed() -> dict[str, list[str]]:
    return dict(md.packages_distributions())


def distributions_of(module: str) -> set[str]:
    """The installed distributions that provide the top-level module `module`."""
    return {norm(d) for d in _installed().get(module, [])}


# Run in a fresh interpreter: CPython 3.11.7's ast.parse can fail with "AST constructor recursion depth
# mismatch" when other code (finalizers of the test session's threads and connections) runs inside it.
_IMPORTS_SCRIPT = """
import ast, json, sys
from pathlib import Path
root, first_party, folders = Path(sys.argv[1]), set(sys.argv[2].split(",")), sys.argv[3:]
found = {}
for folder in folders:
    for path in sorted((root / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in first_party:
                    found.setdefault(top, set()).add(path.relative_to(root).as_posix())
print(json.dumps({k: sorted(v) for k, v in found.items()}))
"""


@cache
def third_party_imports(*folders: str) -> dict[str, set[str]]:
    """Top-level module -> files importing it, outside the standard library and the project (read-only)."""
    out = subprocess.run(
        [sys.executable, "-c", _IMPORTS_SCRIPT, str(PROJECT_ROOT), ",".join(sorted(FIRST_PARTY)), *folders],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {k: set(v) for k, v in json.loads(out).items()}


def unconditional_requirements(dist: str) -> set[str]:
    return {dist_name(r)[0] for r in md.requires(dist) or () if "extra ==" not in r}


def undeclared(imports: dict[str, set[str]], allowed: set[str]) -> list[str]:
    problems = []
    for module, files in sorted(imports.items()):
        dists = distributions_of(module)
        if not dists:
            problems.append(f"{module} (imported by {', '.join(sorted(files))}) is not installed")
        elif not dists & allowed and module not in PROVIDED_BY:
            problems.append(
                f"{module} (distribution {', '.join(sorted(dists))}, imported by {', '.join(sorted(files))}) "
                "is not declared"
            )
    return problems


def imported_dists(imports: dict[str, set[str]]) -> set[str]:
    return {d for module in imports for d in distributions_of(module)}


def test_product_imports_are_declared_runtime_dependencies() -> None:
    runtime = declared(None)
    imports = third_party_imports(*PRODUCT)
    everywhere = {m: {f for f in files if f not in OPTIONAL_IN} for m, files in imports.items()}
    assert undeclared({m: f for m, f in everywhere.items() if f}, runtime) == []
    for path, extra in OPTIONAL_IN.items():
        own = {m: {path} for m, files in imports.items() if path in files}
        assert own, f"{path} imports nothing from the {extra} extra: drop it from OPTIONAL_IN"
        assert undeclared(own, runtime | declared(extra)) == [], f"{path} ({extra} extra)"


def test_modules_provided_by_a_framework_come_with_it() -> None:
    runtime = declared(None)
    for module, (provider, why) in PROVIDED_BY.items():
        assert provider in runtime, f"{module}: {provider} is no longer a runtime dependency ({why})"
        assert distributions_of(module) <= unconditional_requirements(provider), (
            f"{provider} no longer requires {module}: declare it in pyproject.toml ({why})"
        )
        assert module in third_party_imports(*PRODUCT), f"{module} is no longer imported: drop it here"


def test_every_runtime_dependency_is_imported_by_product_code() -> None:
    used = imported_dists(third_party_imports(*PRODUCT)) | {norm(d) for d in USED_INDIRECTLY}
    unused = sorted(declared(None) - used)
    assert unused == [], f"declared in [project] dependencies but not imported by {', '.join(PRODUCT)}"


def test_extras_hold_what_the_optional_parts_import() -> None:
    runtime = declared(None)
    fetch = imported_dists({m: f for m, f in third_party_imports(*PRODUCT).items() if f & set(OPTIONAL_IN)})
    assert declared("fetch") == fetch - runtime
    bench = third_party_imports("benchmarks")
    assert undeclared(bench, runtime | declared("bench")) == []
    assert declared("bench") <= imported_dists(bench), "bench lists a package the benchmarks do not import"


def test_dev_has_the_tests_needs_and_every_extra() -> None:
    dev = declared("dev")
    extras = set(PROJECT["optional-dependencies"]) - {"dev"}
    for extra in extras:
        assert declared(extra) <= dev, f"dev does not include the {extra} extra"
    tests = third_party_imports("tests")
    assert undeclared(tests, declared(None) | dev) == []
    own = dev - set().union(*(declared(e) for e in extras))
    unused = sorted(own - imported_dists(tests) - {norm(t) for t in DEV_TOOLS})
    assert unused == [], "dev lists packages that no test imports and that are not a listed tool"
    assert {norm(t) for t in DEV_TOOLS} <= own, "a tool in DEV_TOOLS is not in the dev extra"


def test_no_dependency_is_listed_twice() -> None:
    groups = {"dependencies": PROJECT["dependencies"], **PROJECT["optional-dependencies"]}
    for group, items in groups.items():
        names = [dist_name(r)[0] for r in items]
        assert len(names) == len(set(names)), f"{group} lists a package twice"
    runtime = declared(None)
    for group in PROJECT["optional-dependencies"]:
        again = sorted({dist_name(r)[0] for r in PROJECT["optional-dependencies"][group]} & runtime)
        assert again == [], f"the {group} extra repeats runtime dependencies"
