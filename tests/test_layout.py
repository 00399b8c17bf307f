"""The house rules that keep the code base readable, checked on the source itself.

- vae_core never imports streamlit (the library stays usable without the UI);
- no module-level mutable state: a module-level table is immutable (a tuple, a frozenset, a
  MappingProxyType), no lock or thread is made at import, no hidden memo decorators, except the
  few listed below with their reason;
- identity comes from a record (ModelInfo), never from ``id()`` of an object;
- pages live in explorer/pages/: a pages/ folder beside app.py would switch Streamlit's legacy
  multipage mode on.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*ROOT.glob("vae_core/**/*.py"), *ROOT.glob("explorer/**/*.py"), ROOT / "app.py"])
MUTABLE_CALLS = {"dict", "list", "set", "OrderedDict", "defaultdict", "deque", "Counter", "Lock", "RLock",
                 "Thread", "Event", "Condition", "Semaphore", "ThreadPoolExecutor"}
MEMO_DECORATORS = {"lru_cache", "cache"}
# (file, function): why its process-wide memo is acceptable.
ALLOWED_MEMOS = {
    ("vae_core/latent/projections.py", "enable_numba_cache"): "switches numba's disk cache on for umap-learn's "
                                                   "functions, which are themselves module-level objects: once",
    ("vae_core/models/kernels.py", "_measured"): "which kernel is faster for a layer shape at a thread count is a fact of "
                                          "the machine: measured once per process, so every run in the process "
                                          "takes the same route and gives the same bits",
}


def names(node) -> str:
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def test_the_library_never_imports_streamlit():
    for path in ROOT.glob("vae_core/**/*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "streamlit" for a in node.names), path
            if isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] != "streamlit", path


def test_no_module_level_mutable_state():
    found = []
    assert len(SOURCES) > 30
    for path in SOURCES:
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if [names(t) for t in targets] == ["__all__"]:
                    continue                            # the public names: read, never changed
                v = node.value
                if isinstance(v, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)) or \
                        (isinstance(v, ast.Call) and names(v.func) in MUTABLE_CALLS):
                    found.append(f"{rel}:{node.lineno}")
            if isinstance(node, ast.Global):
                found.append(f"{rel}:{node.lineno} global")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for dec in node.decorator_list:
                    target = dec.func if isinstance(dec, ast.Call) else dec
                    if names(target) in MEMO_DECORATORS and (rel, node.name) not in ALLOWED_MEMOS:
                        found.append(f"{rel}:{node.lineno} @{names(target)} {node.name}")
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Global):
                        found.append(f"{rel}:{inner.lineno} global in {node.name}")
    assert not found, found


def test_identity_never_comes_from_id():
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "id":
                raise AssertionError(f"{path.relative_to(ROOT)}:{node.lineno} uses id()")


def test_pages_live_in_the_explorer_package():
    assert not (ROOT / "pages").exists()
    pages = {p.stem for p in (ROOT / "explorer" / "pages").glob("*.py")}
    assert {"sample", "traverse", "interpolate", "latent_map", "train", "analyze"} <= pages
    assert registered_pages(ROOT / "explorer" / "navigation.py") == pages   # each page registered, none missing
    assert "from explorer.navigation import PAGES" in (ROOT / "app.py").read_text()   # and app.py navigates over them


def registered_pages(app: Path) -> set[str]:
    """The page names a PAGES table gives st.navigation (its entries' first fields; explorer/navigation.py's)."""
    for node in ast.parse(app.read_text()).body:
        if isinstance(node, ast.Assign) and [names(t) for t in node.targets] == ["PAGES"]:
            return {ast.literal_eval(entry)[0] for entry in node.value.elts}
    raise AssertionError(f"{app} has no PAGES table")


def test_an_unregistered_page_is_caught(tmp_path):
    table = (ROOT / "explorer" / "navigation.py").read_text()
    assert '("augment", "Augment"' in table
    (tmp_path / "navigation.py").write_text(table.replace('("augment", "Augment", ":material/auto_awesome:")', ""))
    assert "augment" not in registered_pages(tmp_path / "navigation.py")


def test_every_vae_core_package_ships_in_the_wheel():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {init.parent.relative_to(ROOT).as_posix().replace("/", ".") for init in ROOT.glob("vae_core/**/__init__.py")}
    assert found and found <= listed, sorted(found - listed)


FAMILY_CLASSES = {"MLPVAE", "ConvVAE", "VQVAE", "M2VAE", "HierarchicalVAE", "HVAE", "HVAEConv", "DiffusersVAE",
                  "MLPConfig", "CVAEConfig", "ConvConfig", "VQConfig", "M2Config", "HierarchyConfig", "HVAEConfig",
                  "HVAEConvConfig"}


def family_tests(tree) -> list[tuple[int, str]]:
    """Where code asks what family a model is instead of what it can do: isinstance against a family's class,
    hasattr on a model, or a comparison with a model_type."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and names(node.func) in ("isinstance", "hasattr") and len(node.args) == 2:
            what, against = node.args
            kinds = against.elts if isinstance(against, ast.Tuple) else [against]
            if names(node.func) == "isinstance" and any(names(k) in FAMILY_CLASSES for k in kinds):
                found.append((node.lineno, f"isinstance(..., {ast.unparse(against)})"))
            if names(node.func) == "hasattr" and "model" in ast.unparse(what):
                found.append((node.lineno, f"hasattr({ast.unparse(what)}, ...)"))
        if isinstance(node, ast.Compare) and any(names(side) == "model_type"
                                                 for side in [node.left, *node.comparators]) \
                and any(isinstance(c, ast.Constant) or isinstance(c, ast.Tuple) for c in node.comparators):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_only_models_know_the_families():
    """A family's abilities are asked of the model (as_codebook, as_hierarchy, as_classifier, learned_prior,
    config.check_training): a test of the family's name or class outside vae_core/models is a second home."""
    outside = [p for p in SOURCES if not p.relative_to(ROOT).as_posix().startswith("vae_core/models/")]
    found = [f"{p.relative_to(ROOT)}:{line} {text}" for p in outside for line, text in family_tests(ast.parse(p.read_text()))]
    assert not found, found
    probe = ast.parse('if model.config.model_type == "vq": pass\nok = isinstance(model, VQVAE) or hasattr(model, "codes")')
    assert len(family_tests(probe)) == 3                               # the check itself sees each kind
