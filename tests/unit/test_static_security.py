"""Static checks: bandit finds nothing, and every API route checks a scope first."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from stratoq.adapters.keys import SCOPES

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "functions" / "stratoq" / "api"
# The console's static files (stratoq/api/console.py) are public too, and no part of the
# API's OpenAPI document.
CONSOLE = {"console_page", "console_file"}
PUBLIC = {"health", *CONSOLE}


def test_bandit_is_clean() -> None:
    bandit = shutil.which("bandit", path=str(Path(sys.executable).parent)) or shutil.which("bandit")
    assert bandit, "bandit is a dev dependency: pip install -e '.[dev]'"
    out = subprocess.run(
        [bandit, "-q", "-c", "pyproject.toml", "-r", "functions/stratoq", "-f", "txt"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def routes() -> dict[str, ast.FunctionDef]:
    """Every function of the API package decorated as a route (`@app.get(...)`, ...)."""
    found = {}
    for module in sorted(API.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "app"
                    and target.attr in ("get", "post", "put", "delete", "patch")
                ):
                    found[node.name] = node
    return found


def first_scope_check(fn: ast.FunctionDef) -> str | None:
    """The scope of the route's first statement-level `caller(...)` call."""
    for stmt in fn.body:
        for node in ast.walk(stmt):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "caller"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                return str(node.args[0].value)
    return None


def test_every_route_checks_its_scope() -> None:
    from stratoq.api.app import build_resolver
    from stratoq.core.settings import Settings
    from stratoq.services.app import Services

    # Building the routes reads nothing from the services: no AWS client is made.
    app = build_resolver(Services(Settings()))
    found = routes()
    # The AST sees every route the running app has (its OpenAPI document lists each one).
    methods = ("get", "post", "put", "delete", "patch")
    operations = [
        method
        for item in app.get_openapi_schema().paths.values()
        for method in item.model_dump(exclude_none=True)
        if method in methods
    ]
    assert len(found) == len(operations) + len(CONSOLE)
    assert set(found) >= CONSOLE
    for name, fn in found.items():
        scope = first_scope_check(fn)
        if name in PUBLIC:
            assert scope is None, name
        else:
            assert scope in SCOPES, f"route {name} does not call caller(<scope>)"
