"""The mirror: every module exists in all three trees with the same public names and signatures,
and a parity test names it. A deliberate difference is listed here with its reason."""
import ast
import importlib
import inspect
import pathlib

import pytest

from ml100.backends import BACKENDS
from ml100.curriculum import DAYS, NEUTRAL_MODULES

ROOT = pathlib.Path(__file__).resolve().parent.parent
TREES = tuple(BACKENDS.values())

#: (module path, public name) -> why it exists in only some trees.
TREE_SPECIFIC_NAMES = {
    ("module", "TORCH_DTYPES"): "each tree maps dtype names to its own framework's dtypes",
    ("module", "torch_dtype"): "each tree maps dtype names to its own framework's dtypes",
    ("module", "TF_DTYPES"): "each tree maps dtype names to its own framework's dtypes",
    ("module", "tf_dtype"): "each tree maps dtype names to its own framework's dtypes",
    ("module", "Layout"): "only TF stores weights in a non-canonical (native) layout",
    ("module", "SAME"): "only TF stores weights in a non-canonical (native) layout",
    ("module", "TRANSPOSED"): "only TF stores weights in a non-canonical (native) layout",
    ("module", "HWIO"): "only TF stores weights in a non-canonical (native) layout",
}
#: Neutral topics (no tensor math) -> why they live once in ``ml100/`` and in no tree.
NEUTRAL_TOPICS = {
    "bpe": "byte-pair merges are counting and dictionary bookkeeping over bytes: no tensors, no gradients",
    "detection_metrics": "mAP sorts detections and counts matches: bookkeeping over boxes, no gradients",
}
#: Methods only the NumPy tree has: there is no autograd, so the backward pass is written out.
NUMPY_ONLY_METHODS = {"backward", "derivative", "named_grads", "zero_grad"}
#: Methods only the TF tree has: variables are native-layout and need converting at the edge.
TF_ONLY_METHODS = {"add_param", "children", "named_layouts", "to_canonical"}
#: Method (qualified name) -> why its signature differs in the NumPy tree.
NUMPY_SIGNATURE_DIFFERS = {
    "Loss.reduce": "the NumPy reduce also takes what the hand-written derivative needs (*saved) and saves it for backward",
}
#: The base classes differ by nature (torch's nn.Module already provides what the others write).
BASE_CLASS_METHODS_DIFFER = {"module"}


def module_paths():
    found = set()
    for tree in TREES:
        for path in (ROOT / tree).rglob("*.py"):
            if path.name != "__init__.py":
                found.add(path.relative_to(ROOT / tree).with_suffix("").as_posix())
    return sorted(found)


def public_api(module):
    """Public names the module's own source defines at top level (classes, functions, constants);
    imported names are the defining module's business."""
    tree = ast.parse(inspect.getsource(module))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name: getattr(module, name) for name in names if not name.startswith("_")}


def signature_of(obj):
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    return [(p.name, p.kind, repr(p.default)) for p in sig.parameters.values() if p.name != "self"]


def methods_of(cls, package):
    """Public methods defined by the topic's classes in ``cls``'s MRO: not the framework's, and not
    the tree's base ``Module`` (whose API is the same by contract and tested by test_weights)."""
    out = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith(package) or klass.__module__ == f"{package}.module":
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_") and inspect.isfunction(value):
                out[name] = value
    return out


@pytest.mark.parametrize("path", module_paths())
def test_module_has_three_twins(path):
    missing = [tree for tree in TREES if not (ROOT / tree / f"{path}.py").is_file()]
    assert not missing, f"{path}.py is missing in {missing}"


@pytest.mark.parametrize("path", module_paths())
def test_twins_share_public_names_and_signatures(path):
    mods = {tree: importlib.import_module(f"{tree}.{path.replace('/', '.')}") for tree in TREES}
    apis = {tree: public_api(m) for tree, m in mods.items()}
    stem = path.split("/")[-1]
    problems = []
    every = set().union(*apis.values())
    for name in sorted(every):
        if (stem, name) in TREE_SPECIFIC_NAMES:
            continue
        lacking = [tree for tree in TREES if name not in apis[tree]]
        if lacking:
            problems.append(f"{name} missing in {lacking}")
            continue
        objs = {tree: apis[tree][name] for tree in TREES}
        if inspect.isfunction(objs["numpy_impl"]) or inspect.isclass(objs["numpy_impl"]):
            sigs = {tree: signature_of(obj) for tree, obj in objs.items()}
            if len({repr(s) for s in sigs.values()}) > 1:
                problems.append(f"{name} signatures differ: {sigs}")
        if inspect.isclass(objs["numpy_impl"]) and stem not in BASE_CLASS_METHODS_DIFFER:
            methods = {tree: methods_of(obj, tree) for tree, obj in objs.items()}
            names = {tree: set(m) - NUMPY_ONLY_METHODS - TF_ONLY_METHODS for tree, m in methods.items()}
            if len({frozenset(n) for n in names.values()}) > 1:
                problems.append(f"{name} methods differ: {names}")
            for method in set.intersection(*names.values()):
                if methods["numpy_impl"][method].__qualname__ in NUMPY_SIGNATURE_DIFFERS:
                    continue
                msigs = {tree: signature_of(methods[tree][method]) for tree in TREES}
                if len({repr(s) for s in msigs.values()}) > 1:
                    problems.append(f"{name}.{method} signatures differ: {msigs}")
    assert not problems, f"{path}: " + "; ".join(problems)


@pytest.mark.parametrize("path", module_paths())
def test_a_parity_test_names_the_module(path):
    stem = path.split("/")[-1]
    tests = [p for p in (ROOT / "parity_tests").rglob("test_*.py") if p.name != "test_mirror.py"]
    assert any(f"{path.replace('/', '.')}" in p.read_text() or f"test_{stem}.py" == p.name for p in tests), \
        f"no parity test covers {path} (expected parity_tests/.../test_{stem}.py or a Case naming it)"


def test_neutral_topics_are_listed_with_a_reason():
    assert set(NEUTRAL_TOPICS) == NEUTRAL_MODULES, "ml100.curriculum.NEUTRAL_MODULES and NEUTRAL_TOPICS must name the same topics"


@pytest.mark.parametrize("module", sorted(NEUTRAL_MODULES))
def test_a_neutral_topic_lives_only_in_the_neutral_package(module):
    twins = [tree for tree in TREES for path in (ROOT / tree).rglob(f"{module}.py")]
    assert not twins, f"{module} is a neutral topic ({NEUTRAL_TOPICS[module]}): it belongs in ml100/, not in {twins}"
    if not (ROOT / "ml100" / f"{module}.py").is_file():
        day = next(day for day in DAYS if day.module == module)
        pytest.skip(f"day {day.number} ({module}) is not built yet")
    tests = list((ROOT / "parity_tests").rglob("test_*.py"))
    assert any(f"ml100.{module}" in p.read_text() for p in tests), f"no test imports ml100.{module}"
