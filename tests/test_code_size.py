"""Size limits that keep vae_core and the explorer readable: no module over 400 lines, no function over 60
(issue 24)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def oversized(path: Path) -> list[str]:
    """The module, and each function (def line to last line, docstring included), that passes its limit."""
    text = path.read_text()
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    found = [f"{rel}: {n} lines" for n in [len(text.splitlines())] if n > MAX_MODULE_LINES]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            size = node.end_lineno - node.lineno + 1
            if size > MAX_FUNCTION_LINES:
                found.append(f"{rel}::{node.name}: {size} lines")
    return found


def test_no_module_over_400_lines_or_function_over_60():
    found = [f for pattern in ("vae_core/**/*.py", "explorer/**/*.py", "app.py")
             for p in sorted(ROOT.glob(pattern)) for f in oversized(p)]
    assert not found, "split these into named helpers: " + "; ".join(found)


def test_the_size_check_sees_a_long_function_and_a_long_module(tmp_path):
    long_function = tmp_path / "f.py"
    long_function.write_text("def f():\n" + "    x = 1\n" * 60 + "\n\ndef g():\n    pass\n")
    assert oversized(long_function) == [f"{long_function}::f: 61 lines"]
    long_module = tmp_path / "m.py"
    long_module.write_text("x = 1\n" * 401)
    assert oversized(long_module) == [f"{long_module}: 401 lines"]
