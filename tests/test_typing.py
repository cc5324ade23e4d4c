"""What a user's type checker sees of the package (it ships ``py.typed``): the README's examples and
the documented calls check clean under mypy, and wrong calls are caught (not hidden by ``Any``)."""

import importlib
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import msresnet1d
from msresnet1d import _lazy
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

# each line a mistake the checker must name (the line numbers are the list's)
BAD = [
    ('load_beats(["100"], wrong_keyword=1)', 'Unexpected keyword argument "wrong_keyword" for "load_beats"'),
    ('make_stage(ResidualBlock, 1, 8, 8, 1)', 'Argument 1 to "make_stage" has incompatible type'),
    ('x: str = load_trained_model("best.pt").num_classes', "Incompatible types in assignment"),
    ('y: str = create_model("msresnet1d_beat")', "Incompatible types in assignment"),
]
BAD_IMPORTS = ("from msresnet1d import create_model\nfrom msresnet1d.data import load_beats\n"
               "from msresnet1d.models import ResidualBlock, make_stage\nfrom msresnet1d.training.run import "
               "load_trained_model\n")


def _inference_example() -> str:
    import msresnet1d.inference

    example = re.search(r'Class names are ``ckpt\["class_names"\]``::\n\n(.*?)\n\n\S', msresnet1d.inference.__doc__,
                        flags=re.S)
    return textwrap.dedent(example.group(1))


def test_the_readme_examples_check_clean_and_mistakes_are_named(tmp_path):
    pytest.importorskip("mypy", reason="mypy is in the test extra: pip install -e '.[test]'")
    model, speed, sklearn_example, textbook = python_blocks()
    files = {"readme_model.py": model + speed,  # the second example goes on with the first's model
             "readme_sklearn.py": "import numpy as np\nX = np.zeros((90, 360), np.float32)\ny = np.zeros(90, int)\n"
                                  "record_of_each_beat = np.zeros(90, int)\n" + sklearn_example,
             "readme_textbook.py": textbook, "inference_example.py": _inference_example(), "good.py": GOOD,
             "bad.py": BAD_IMPORTS + "\n".join(line for line, _ in BAD) + "\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    # --follow-imports=silent: the user's files are checked, not the package's own code; the package is
    # found in this checkout (an editable install's import hook is invisible to mypy); scikit-learn has no types
    result = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-implicit-reexport",
                             "--ignore-missing-imports", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary",
                             "--hide-error-context", *files], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "MYPYPATH": str(REPO)})
    errors = [line for line in result.stdout.splitlines() if ": error: " in line]
    assert all(line.startswith("bad.py:") for line in errors), "\n".join(errors)
    first = BAD_IMPORTS.count("\n") + 1
    for number, (line, message) in enumerate(BAD, start=first):
        assert any(e.startswith(f"bad.py:{number}: error: {message}") for e in errors), (line, result.stdout)


@pytest.mark.parametrize("package", ["msresnet1d", "msresnet1d.data"])
def test_the_lazily_imported_names_are_the_ones_type_checkers_read(package):
    # the names a package imports on first use are read from its "if TYPE_CHECKING:" imports: one list
    module = importlib.import_module(package)
    exports = _lazy.type_checking_exports(module.__file__)
    assert len(exports) >= (7 if package == "msresnet1d" else 60)
    assert set(exports) <= set(module.__all__) and set(module.__all__) - set(exports) <= {"__version__"}
    for name in exports:
        value = getattr(module, name)
        assert not isinstance(value, types.ModuleType), f"{package}.{name} is a module, not what it names"
    assert msresnet1d.summary is importlib.import_module("msresnet1d.models.summary").summary
