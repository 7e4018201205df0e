"""Nothing in forgetless runs code that came with data: a static scan of every module with `ast`.

Refused anywhere under `forgetless/`:
- calls to the builtins `eval`, `exec`, `compile` (`re.compile`, `model.eval()` are fine);
- `pickle.load(s)` (and `marshal`, `dill`, `joblib`, `shelve` loading);
- `torch.load` without `weights_only=True`;
- `yaml.load` / `full_load` / `unsafe_load` and the unsafe loader classes (only `yaml.safe_load`);
- `trust_remote_code=True` or `allow_pickle=True` written as a literal, in a call or as a default;
- `shell=True`, `os.system`, `os.popen`;
- a Jinja `Environment` without autoescaping.

The escaping of model text in the reports themselves is tested in tests/report/test_escaping.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import forgetless

PACKAGE = Path(forgetless.__file__).resolve().parent
SOURCES = sorted(PACKAGE.rglob("*.py"))

BANNED_BUILTINS = {"eval", "exec", "compile", "__import__"}
BANNED_ATTRIBUTES = {
    "pickle": {"load", "loads", "Unpickler"},
    "cPickle": {"load", "loads", "Unpickler"},
    "dill": {"load", "loads"},
    "joblib": {"load"},
    "marshal": {"load", "loads"},
    "shelve": {"open"},
    "yaml": {"load", "load_all", "full_load", "full_load_all", "unsafe_load", "unsafe_load_all", "Loader",
             "FullLoader", "UnsafeLoader", "UnsafeConstructor"},
    "os": {"system", "popen"},
}
BANNED_IMPORTS = {"pickle": {"load", "loads", "Unpickler"}, "yaml": BANNED_ATTRIBUTES["yaml"],
                  "marshal": {"load", "loads"}, "dill": {"load", "loads"}}
RISKY_FLAGS = {"trust_remote_code", "allow_pickle", "shell"}


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def scan(source: str, filename: str = "<string>") -> list[str]:
    """Every banned construct in `source`, as 'file:line: what'."""
    tree = ast.parse(source, filename=filename)
    found: list[str] = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in BANNED_BUILTINS:
                report(node, f"call to {func.id}()")
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                    and func.value.id == "torch" and func.attr == "load":
                weights_only = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
                if not _is_true(weights_only):
                    report(node, "torch.load without weights_only=True")
            for keyword in node.keywords:
                if keyword.arg in RISKY_FLAGS and _is_true(keyword.value):
                    report(node, f"{keyword.arg}=True")
            if isinstance(func, ast.Name) and func.id == "Environment":
                autoescape = next((k.value for k in node.keywords if k.arg == "autoescape"), None)
                if autoescape is None or (isinstance(autoescape, ast.Constant) and not autoescape.value):
                    report(node, "jinja2 Environment without autoescape")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.attr in BANNED_ATTRIBUTES.get(node.value.id, ()):
                report(node, f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module in BANNED_IMPORTS:
            for alias in node.names:
                if alias.name in BANNED_IMPORTS[node.module] or alias.name == "*":
                    report(node, f"from {node.module} import {alias.name}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            for arg, default in pairs:
                if arg.arg in RISKY_FLAGS and _is_true(default):
                    report(node, f"{node.name}({arg.arg}=True) as a default")
    return found


def test_the_package_has_sources():
    assert len(SOURCES) > 20 and PACKAGE / "cli" / "main.py" in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_code_execution_from_data(path):
    assert scan(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE))) == []


@pytest.mark.parametrize("snippet, what", [
    ("eval(text)", "eval()"),
    ("exec(code)", "exec()"),
    ("compile(src, 'f', 'exec')", "compile()"),
    ("import pickle\npickle.load(f)", "pickle.load"),
    ("import pickle\npickle.loads(b)", "pickle.loads"),
    ("from pickle import loads", "from pickle import loads"),
    ("torch.load(path)", "torch.load without weights_only"),
    ("torch.load(path, weights_only=False)", "torch.load without weights_only"),
    ("yaml.load(text)", "yaml.load"),
    ("yaml.load(text, Loader=yaml.Loader)", "yaml.Loader"),
    ("yaml.unsafe_load(text)", "yaml.unsafe_load"),
    ("AutoModel.from_pretrained(p, trust_remote_code=True)", "trust_remote_code=True"),
    ("def load(spec, trust_remote_code=True): ...", "as a default"),
    ("def load(spec, *, allow_pickle=True): ...", "as a default"),
    ("subprocess.run(cmd, shell=True)", "shell=True"),
    ("os.system(cmd)", "os.system"),
    ("Environment(loader=x)", "without autoescape"),
    ("Environment(loader=x, autoescape=False)", "without autoescape"),
])
def test_the_scan_catches_what_it_bans(snippet, what):
    found = scan(snippet)
    assert any(what in f for f in found), found


@pytest.mark.parametrize("snippet", [
    "re.compile('x')", "model.eval()", "torch.load(p, weights_only=True)", "yaml.safe_load(text)",
    "yaml.safe_dump(obj)", "load_model(s, trust_remote_code=trust_remote_code)",
    "def load(spec, trust_remote_code=False): ...", "Environment(autoescape=select_autoescape(['html']))",
    "torch.compile(model)",
])
def test_the_scan_allows_safe_forms(snippet):
    assert scan(snippet) == []


def test_report_templates_are_autoescaped():
    from forgetless.report.html import environment

    env = environment()
    autoescape = env.autoescape("template.html") if callable(env.autoescape) else env.autoescape
    assert autoescape is True
    assert env.from_string("{{ x }}").render(x="<script>") == "&lt;script&gt;"
