"""The package layout: our packages are layers, modeling_physiomae (the Hub copy) < dataset_scripts (the `datasets`
builders) < physiomae (the library), and a module imports only from its own layer or a lower one; the Hub copy
imports nothing else of ours, and no import among our modules runs in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUR_PACKAGES = ("modeling_physiomae", "dataset_scripts", "physiomae")  # the layers, lowest first
SCRIPT_NAMES = ("train", "eval", "run_experiment", "finetune")
SCRIPTS = tuple(f"physiomae.cli.{name}" for name in SCRIPT_NAMES)  # the top-level NAME.py are links to these


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def our_modules() -> dict[str, Path]:
    return {module_name(path): path for package in OUR_PACKAGES for path in (ROOT / package).rglob("*.py")}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that `path` imports anywhere (top level or inside functions), resolved to module names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = our_modules()
    return {name: imported_modules(name, path, set(modules)) for name, path in modules.items()}


def test_hub_copy_imports_nothing_else_of_ours():
    graph = import_graph()
    for name, imports in graph.items():
        if name.startswith("modeling_physiomae"):
            outside = sorted(target for target in imports if not target.startswith("modeling_physiomae"))
            assert not outside, f"{name} (the Hub copy) imports {outside}"


def layer(module: str) -> int:
    """Position of a module's package in OUR_PACKAGES (0 = the Hub copy)."""
    return OUR_PACKAGES.index(module.split(".")[0])


def test_modules_import_only_from_their_layer_or_below():
    """dataset_scripts imports nothing of physiomae (at the top or inside a function), modeling_physiomae nothing of
    either: what a lower layer needs lives there (e.g. the atomic writes in dataset_scripts/files.py, which
    physiomae.io re-exports)."""
    graph = import_graph()
    assert any(name.startswith("dataset_scripts.") for name in graph) and "physiomae.io" in graph
    upward = sorted(f"{name} imports {target}" for name, imports in graph.items() for target in imports
                    if layer(target) > layer(name))
    assert not upward, f"imports from a higher layer ({' < '.join(OUR_PACKAGES)}): {upward}"


def test_the_import_graph_sees_imports_inside_functions(tmp_path):
    """The layering test would catch a builder that imports the library lazily, inside a function."""
    path = tmp_path / "builder.py"
    path.write_text("import numpy\n\ndef build():\n    from physiomae.io import atomic_write_json\n"
                    "    from . import labels\n    return atomic_write_json\n", encoding="utf-8")
    known = set(our_modules())
    found = imported_modules("dataset_scripts.builder", path, known)
    assert found == {"physiomae.io", "dataset_scripts", "dataset_scripts.labels"}
    assert max(layer(target) for target in found) > layer("dataset_scripts.builder")


def test_no_import_cycles_and_nothing_imports_a_script_or_test():
    graph = import_graph()
    for name, imports in graph.items():
        scripts = sorted(set(imports) & set(SCRIPTS))
        if name not in SCRIPTS:
            assert not scripts, f"library module {name} imports script(s) {scripts}"
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            assert state.get(target) != "open", f"import cycle: {' -> '.join(trail + [node, target])}"
            if target not in state:
                visit(target, trail + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    for path in (ROOT / "benchmarks").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "from tests" not in text and "import tests" not in text, f"{path.name} imports test code"


def test_the_repository_scripts_are_the_installed_programs():
    """train.py, eval.py, finetune.py and run_experiment.py at the top of the checkout are links to the files in
    physiomae/cli/ (what the console scripts run), not copies; nothing else at the top is Python."""
    for name in SCRIPT_NAMES:
        link = ROOT / f"{name}.py"
        assert link.is_symlink(), f"{link} is not a link"
        assert link.resolve() == (ROOT / "physiomae" / "cli" / f"{name}.py").resolve()
    assert sorted(path.name for path in ROOT.glob("*.py")) == sorted(f"{name}.py" for name in SCRIPT_NAMES)


def test_no_module_compares_strategy_names():
    """Strategies differ only through their record in physiomae/strategies.py: no `strategy == "mae"`,
    `strategy in (...)` or `strategy.startswith(...)` anywhere else."""
    from physiomae.strategies import STRATEGY_NAMES

    found = []
    for name, path in our_modules().items():
        if name == "physiomae.strategies":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                constants = [item for item in [node.left, *node.comparators] if isinstance(item, ast.Constant)]
                constants += [element for item in node.comparators if isinstance(item, (ast.Tuple, ast.List, ast.Set))
                              for element in item.elts if isinstance(element, ast.Constant)]
                if any(constant.value in STRATEGY_NAMES for constant in constants):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "startswith"
                    and any(isinstance(arg, ast.Constant) and arg.value == "contrastive_" for arg in node.args)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"strategy names compared outside physiomae/strategies.py at {found}"


def test_every_strategy_record_builds_its_model():
    from helpers import tiny_config
    from physiomae.strategies import STRATEGIES, get_strategy

    for strategy in STRATEGIES.values():
        config = tiny_config()
        strategy.configure(config)
        assert all(getattr(config, key) == value for key, value in strategy.config_changes.items())
        model = strategy.load_model_class()(config)
        assert type(model).__name__ == strategy.model_class
        assert hasattr(model, "set_target_statistics") or not strategy.reconstructs, strategy.name
    with pytest.raises(ValueError, match="at least 2 modalities"):
        get_strategy("contrastive_loo").configure(tiny_config(modalities={"eeg": ["C4-M1"]}))


def test_every_module_of_the_hub_copy_travels_with_every_saved_folder():
    """Each module of modeling_physiomae (but __init__) is one of the code files every save copies (HUB_CODE_FILES),
    and the feature extractor reads files through the recording module with a relative import (what transformers'
    remote-code loader copies)."""
    from modeling_physiomae.configuration_physiomae import HUB_CODE_FILES

    modules = sorted(path.name for path in (ROOT / "modeling_physiomae").glob("*.py") if path.name != "__init__.py")
    assert modules == sorted(HUB_CODE_FILES)
    graph = import_graph()
    assert "modeling_physiomae.recording_physiomae" in graph["modeling_physiomae.feature_extraction_physiomae"]
    assert graph["modeling_physiomae.recording_physiomae"] == set()  # the lowest module: imports nothing of ours
    text = (ROOT / "modeling_physiomae" / "feature_extraction_physiomae.py").read_text(encoding="utf-8")
    assert "from .recording_physiomae import" in text


def test_the_record_split_is_one_small_module_that_imports_nothing_of_ours():
    graph = import_graph()
    assert graph["dataset_scripts.record_split"] == set()
    users = {name for name, imports in graph.items() if "dataset_scripts.record_split" in imports}
    assert {"dataset_scripts.recording_builder", "physiomae.evaluation.probing", "physiomae.training.data",
            "physiomae.finetuning"} <= users, users
    hashing = sorted(name for name, path in our_modules().items()
                     if name != "dataset_scripts.record_split" and "hexdigest()[:8]" in path.read_text(encoding="utf-8"))
    assert not hashing, f"a second record split in {hashing}"


REPOSITORY_WIDE_TESTS = {"test_install.py", "test_layout.py"}  # the wheel and the package layers as a whole


def test_tests_mirror_the_packages():
    """tests/<package path>/test_<module>[_<aspect>].py tests <package path>/<module>(.py or a subpackage); only the
    repository-wide tests sit at the top of tests/. Test file names are unique (pytest imports them by name)."""
    tests_dir = ROOT / "tests"
    misplaced, names = [], {}
    for path in sorted(tests_dir.rglob("test_*.py")):
        relative = path.relative_to(tests_dir)
        names.setdefault(path.name, []).append(str(relative))
        if len(relative.parts) == 1:
            if path.name not in REPOSITORY_WIDE_TESTS:
                misplaced.append(f"{relative}: only repository-wide tests sit at the top of tests/")
            continue
        package_dir = ROOT.joinpath(*relative.parts[:-1])
        modules = {child.stem for child in package_dir.glob("*.py") if child.stem != "__init__"}
        modules |= {child.name for child in package_dir.iterdir() if child.is_dir() and any(child.glob("*.py"))} \
            if package_dir.is_dir() else set()
        stem = path.stem[len("test_"):]
        if not package_dir.is_dir() or not any(stem == module or stem.startswith(f"{module}_") for module in modules):
            misplaced.append(f"{relative}: no module {stem.split('_')[0]}… in {package_dir.relative_to(ROOT)}/")
    assert not misplaced, misplaced
    assert all(len(paths) == 1 for paths in names.values()), {name: paths for name, paths in names.items() if len(paths) > 1}
