"""The Python examples of the README and of docs/ run as printed, and give the shapes their comments
state."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]  # python_blocks' order
SHAPE_COMMENT = re.compile(r"^(\w+) = .*#\s*\((\d+(?:, \d+)*)\)")  # name = ...   # (8, 64, 16)


def python_blocks() -> list[str]:
    return [block for page in PAGES
            for block in re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.M | re.S)]


def test_the_readme_has_the_examples_this_file_runs():
    blocks = python_blocks()
    assert len(blocks) == 4, "a Python example was added to or removed from the README or docs/: run it here too"
    assert "create_model" in blocks[0] and "fuse_batchnorm" in blocks[1] and "GridSearchCV" in blocks[2]
    assert "resnet18_d2l" in blocks[3]


def test_model_examples_run_and_give_the_shapes_in_their_comments(capsys):
    torch.manual_seed(0)
    namespace: dict = {}
    first, second, *_ = python_blocks()
    exec(compile(first, "README.md (model example)", "exec"), namespace)
    checked = 0
    for line in first.splitlines():
        match = SHAPE_COMMENT.match(line)
        if match:
            name, shape = match.group(1), tuple(int(n) for n in match.group(2).split(", "))
            assert tuple(namespace[name].shape) == shape, f"README: {line.strip()!r}"
            checked += 1
    assert checked == 4  # logits, features, embedding, pooled
    counts = re.findall(r"^(params|flops) = msresnet1d\.count_\w+\(.*#\s*([\d,]+)", first, flags=re.M)
    assert len(counts) == 2, "the README's parameter and FLOP counts"
    for name, stated in counts:  # counted before reset_classifier changed the head
        assert namespace[name] == int(stated.replace(",", "")), f"README: {name} = {namespace[name]:,}, not {stated}"
    assert torch.equal(namespace["pooled"], namespace["embedding"])  # dropout 0: training mode changes nothing
    assert tuple(namespace["head"].weight.shape) == (3, 64) and namespace["model"].num_classes == 0
    assert "msresnet1d_beat" in capsys.readouterr().out  # the summary and list_models printed
    exec(compile(second, "README.md (speed switches)", "exec"), namespace)
    assert not namespace["fast"].training


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_scikit_learn_example_runs_on_beats_grouped_by_record():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    t = np.arange(360) / 360.0
    X = np.sin(2 * np.pi * (y[:, None] + 1) * t) + 0.1 * rng.normal(size=(90, 360))  # 1 s at 360 Hz
    namespace = {"X": X.astype(np.float32), "y": y, "record_of_each_beat": np.tile(np.arange(6), 15)}
    exec(compile(python_blocks()[2], "docs/pipelines.md (scikit-learn example)", "exec"), namespace)
    search = namespace["search"]
    assert search.n_splits_ == 3 and len(search.cv_results_["params"]) == 2  # both fusions, 3 folds of records
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()  # every fit and score ran
    assert search.best_estimator_.named_steps["clf"].model_.num_classes == 3


def test_the_textbook_network_example_prints_d2ls_shapes(capsys):
    exec(compile(python_blocks()[3], "docs/results.md (textbook network)", "exec"), {})
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    for layer, shape in (("stem", "(1, 64, 24, 24)"), ("stages.0", "(1, 64, 24, 24)"), ("stages.1", "(1, 128, 12, 12)"),
                         ("stages.2", "(1, 256, 6, 6)"), ("stages.3", "(1, 512, 3, 3)"), ("fc", "(1, 10)")):
        assert shape in rows[layer], rows[layer]
    assert rows["total"].split()[-1] == "11,178,378"
