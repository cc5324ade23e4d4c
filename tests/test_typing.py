"""What a user's type checker sees of the package (it ships ``py.typed``): the examples of the
README and docs/ and the documented calls check clean under mypy, and wrong calls are caught (not
hidden by ``Any``)."""

import ast
import os
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

from test_inference import inference_example
from test_readme import python_blocks

REPO = Path(__file__).resolve().parents[1]

# what an engineer writes: each line's type must be what the package returns, not Any
GOOD = '''
import torch
from msresnet1d import summary
from msresnet1d.data import DataError, TensorBatchLoader, load_beats
from msresnet1d.data.beats import BeatArrays
from msresnet1d.models import BasicBlock, make_stage
from msresnet1d.training.run import load_trained_model

trained = load_trained_model("runs/beats/checkpoints/best.pt")
features: torch.Tensor = trained.forward_features(torch.zeros(1, 2, 252))
classes: int = trained.num_classes + 1
rows = summary(trained, (1, 2, 252))
stage: torch.nn.Sequential = make_stage(BasicBlock, 1, 8, 8, 1)
arrays: BeatArrays = load_beats(["100"])
error: type[Exception] = DataError


def shift(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:  # any parameter names
    return batch


loader = TensorBatchLoader(torch.zeros(4, 1, 8), torch.zeros(4, dtype=torch.long), batch_size=2, transform=shift)
'''

# each line a mistake the checker must name, by its error code (the line numbers are the list's)
BAD = [
    ('load_beats(["100"], wrong_keyword=1)', "call-arg"),
    ('make_stage(ResidualBlock, 1, 8, 8, 1)', "arg-type"),
    ('x: str = load_trained_model("best.pt").num_classes', "assignment"),
    ('y: str = create_model("msresnet1d_beat")', "assignment"),
]
BAD_IMPORTS = ("from msresnet1d import create_model\nfrom msresnet1d.data import load_beats\n"
               "from msresnet1d.models import ResidualBlock, make_stage\nfrom msresnet1d.training.run import "
               "load_trained_model\n")


def test_the_readme_examples_check_clean_and_mistakes_are_named(tmp_path):
    pytest.importorskip("mypy", reason="mypy is in the test extra: pip install -e '.[test]'")
    model, speed, sklearn_example, textbook = python_blocks()
    files = {"readme_model.py": model + speed,  # the second example goes on with the first's model
             "readme_sklearn.py": "import numpy as np\nX = np.zeros((90, 360), np.float32)\ny = np.zeros(90, int)\n"
                                  "record_of_each_beat = np.zeros(90, int)\n" + sklearn_example,
             "readme_textbook.py": textbook, "inference_example.py": inference_example(), "good.py": GOOD,
             "bad.py": BAD_IMPORTS + "\n".join(line for line, _ in BAD) + "\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    # --follow-imports=silent: the user's files are checked, not the package's own code; the package is
    # found in this checkout (an editable install's import hook is invisible to mypy); scikit-learn has no types;
    # no configuration file (a user's, or one in a folder above, would change the output) and no colours
    env = {key: value for key, value in os.environ.items() if key not in ("FORCE_COLOR", "MYPY_FORCE_COLOR")}
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file=", "--follow-imports=silent",
                             "--no-implicit-reexport", "--ignore-missing-imports", "--show-error-codes",
                             "--no-color-output", "--no-error-summary", "--hide-error-context",
                             "--cache-dir", str(tmp_path / "cache"), *files],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**env, "MYPYPATH": str(REPO)})
    errors = [line for line in result.stdout.splitlines() if ": error: " in line]
    assert all(line.startswith("bad.py:") for line in errors), "\n".join(errors)
    first = BAD_IMPORTS.count("\n") + 1
    for number, (line, code) in enumerate(BAD, start=first):
        assert any(e.startswith(f"bad.py:{number}: error: ") and e.endswith(f"[{code}]") for e in errors), \
            (line, result.stdout)


def _imports(tree: ast.Module) -> dict[str, str]:
    """``{name: module}`` of the ``from .module import name`` statements of ``tree``'s body."""
    return {alias.name: statement.module for statement in tree.body if isinstance(statement, ast.ImportFrom)
            for alias in statement.names}


def test_type_checkers_read_the_names_each_package_imports_on_first_use():
    # msresnet1d and msresnet1d.data import their names on first use (a module __getattr__), which type checkers
    # cannot follow: msresnet1d.data's names were Any to them, and msresnet1d.summary the module
    import msresnet1d
    import msresnet1d.data

    tree = ast.parse(Path(msresnet1d.__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    assert set(_imports(ast.Module(block.body, []))) == set(msresnet1d.__all__) - {"__version__"}
    stub = Path(msresnet1d.data.__file__).with_suffix(".pyi")  # __init__.pyi: the lazy names' types
    imported = [node for node in ast.parse(stub.read_text(encoding="utf-8")).body if isinstance(node, ast.ImportFrom)]
    assert all(alias.asname == alias.name for statement in imported for alias in statement.names)  # re-exported
    assert _imports(ast.Module(imported, [])) == msresnet1d.data._MODULE_OF
    assert "__init__.pyi" in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["msresnet1d.data"]  # wheels carry it
    for package in (msresnet1d, msresnet1d.data):
        for name in package.__all__:
            assert not isinstance(getattr(package, name), types.ModuleType), f"{package.__name__}.{name} is a module"


def test_the_package_imports_from_a_zip(tmp_path):
    # the lazy names were once read from __init__.py's source at import: from a zip (or an install of .pyc
    # files only) "import msresnet1d" failed
    import zipfile

    archive = tmp_path / "package.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in (REPO / "msresnet1d").rglob("*.py*"):
            if "__pycache__" not in path.parts:
                zipped.write(path, path.relative_to(REPO).as_posix())
    code = ("import msresnet1d, msresnet1d.data\nassert msresnet1d.__file__.startswith(%r)\n"
            "print(msresnet1d.data.DS1[0], msresnet1d.data.DataError.__name__)" % str(archive))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(archive), "OMP_NUM_THREADS": "1"})
    assert (result.returncode, result.stdout, result.stderr) == (0, "101 DataError\n", "")
