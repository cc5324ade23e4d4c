"""The training engine and the `msresnet1d` command, on the embedded MIT-BIH sample (in the repo)."""

import contextlib
import csv
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from msresnet1d.cli import main
from msresnet1d.data import locate
from msresnet1d.data.errors import DataError
from msresnet1d.data.loader import TensorBatchLoader
from msresnet1d.models import create_model
from msresnet1d.models.registry import model_options
from msresnet1d.training.checkpoint import code_version, load_checkpoint
from msresnet1d.training.engine import TrainingError
from msresnet1d.training.config import TrainConfig, load_config, parse_overrides
from msresnet1d.training.metrics import (
    cinc_score,
    classification_report,
    confusion_matrix,
    ec57,
    format_per_group,
    format_report,
    group_bootstrap,
    per_class,
    per_group,
)
from msresnet1d.training.optim import CrossEntropyLoss, FocalLoss, build_scheduler, class_weights
from msresnet1d.training.run import train_or_reuse
from msresnet1d.training.tasks import BEAT_DEFAULTS, TASK_DEFAULTS, TRAINING_ONLY_DATA

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "mitdb-sample"

# A tiny, fast run: 6 training records (2 of them for validation), 4 test records.
TINY = f"""
name = "tiny"
epochs = {{epochs}}
batch_size = 128
lr = 3e-3
threads = 1
[model_kwargs]
widths = [8, 16, 16]
stem_channels = 8
kernels = [3, 9]
[data]
data_dir = "{SAMPLE}"
train_records = ["101", "106", "118", "119", "208", "209"]
val_records = ["106", "209"]
test_records = ["100", "105", "232", "233"]
"""


def _config(tmp_path: Path, epochs: int = 3) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(epochs=epochs))
    return path


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "msresnet1d.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600, **kwargs)


def _here(capsys: pytest.CaptureFixture, *args: str) -> subprocess.CompletedProcess:
    """The command run in this process (``main(args)``, as Python callers run it), its output captured: for calls
    whose outcome needs no program of its own (refusals, evaluations, predictions), without the 2 s of imports a
    new interpreter takes."""
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as usage:  # argparse's usage errors exit 2
        code = usage.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


# --------------------------------------------------------------------------- metrics by hand
def test_metrics_against_a_hand_computed_confusion_matrix():
    # rows true, columns predicted, classes N S V F Q
    cm = np.array([[50, 3, 2, 0, 0], [4, 6, 0, 0, 0], [1, 0, 9, 2, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 0]])
    stats = per_class(cm)
    # N: TP 50, FN 5, FP 5, TN 79 - 60 = 19 -> Se 50/55, +P 50/55, Sp 19/24, F1 100/110
    assert stats["se"][0] == pytest.approx(50 / 55)
    assert stats["ppv"][0] == pytest.approx(50 / 55)
    assert stats["sp"][0] == pytest.approx(19 / 24)
    assert stats["f1"][0] == pytest.approx(100 / 110)
    # S: TP 6, FN 4, FP 3 -> Se .6, +P 6/9, F1 12/19 ; V: TP 9, FN 3, FP 3 ; F: TP 1, FN 1, FP 2
    assert stats["se"][1] == pytest.approx(0.6) and stats["ppv"][1] == pytest.approx(6 / 9)
    assert stats["f1"][1] == pytest.approx(12 / 19)
    assert stats["f1"][2] == pytest.approx(18 / 24) and stats["f1"][3] == pytest.approx(2 / 5)
    assert stats["sp"][1] == pytest.approx(66 / 69)  # S: TN 79 - 6 - 4 - 3 = 66, FP 3 (FN 4 would give 66/70)
    assert np.isnan(stats["se"][4]) and np.isnan(stats["ppv"][4])  # Q: undefined, not 0

    y_true = np.repeat(np.arange(5), cm.sum(axis=1))
    y_pred = np.concatenate([np.repeat(np.arange(5), row) for row in cm])
    probabilities = np.eye(5)[y_pred]
    report = classification_report(y_true, probabilities, ["N", "S", "V", "F", "Q"], ["N", "S", "V", "F"])
    assert report["confusion_matrix"] == cm.tolist()
    assert report["accuracy"] == pytest.approx(66 / 79)
    assert report["macro_f1"] == pytest.approx(np.mean([100 / 110, 12 / 19, 18 / 24, 2 / 5]))
    # EC57's V: the F beat called V is no false positive (V +P 9/11, not 9/12); Se unchanged; S has no Q beat called S
    assert report["ec57"]["V"] == pytest.approx({"se": 9 / 12, "ppv": 9 / 11, "f1": 18 / 23})
    assert report["ec57"]["S"] == pytest.approx({"se": 0.6, "ppv": 6 / 9, "f1": 12 / 19})
    assert ("by EC57's rules (F and Q beats called V, Q beats called S not counted against +P): S +P 66.7 F1 63.2   "
            "V +P 81.8 F1 78.3") in format_report(report)
    with_q_as_s = cm.copy()
    with_q_as_s[4, 1] = 3  # three Q beats called S: excused from S's +P by EC57, counted one-vs-rest
    by_rules = ec57(with_q_as_s, ["N", "S", "V", "F", "Q"])
    assert by_rules["S"]["ppv"] == pytest.approx(6 / 9) and per_class(with_q_as_s)["ppv"][1] == pytest.approx(6 / 12)
    with_q_as_v = cm.copy()
    with_q_as_v[4, 2] = 4  # four Q beats called V: excused from V's +P too (with the F beat called V)
    assert ec57(with_q_as_v, ["N", "S", "V", "F", "Q"])["V"]["ppv"] == pytest.approx(9 / 11)
    assert per_class(with_q_as_v)["ppv"][2] == pytest.approx(9 / 16)
    # the table prints Se then +P (S: 60.0 and 66.7, which differ), as the report holds them
    assert re.search(r"^S\s+10\s+60\.0\s+66\.7\s+95\.7\s+63\.2$", format_report(report), re.MULTILINE)
    # Q is counted in accuracy but left out of macro-F1: N F1 2*2/(2+3), Q F1 2*1/(2+1) not averaged
    y, predicted = np.array([0, 0, 4, 4]), np.array([0, 0, 0, 4])
    with_q = classification_report(y, np.eye(5)[predicted], ["N", "S", "V", "F", "Q"], ["N", "S", "V", "F"])
    assert with_q["macro_f1"] == pytest.approx(0.8) and with_q["accuracy"] == pytest.approx(0.75)


def test_group_bootstrap_draws_whole_records():
    # record a all right, record b all wrong, 100 beats each: drawing 2 records gives accuracy 0, 0.5 or 1
    # (1/4, 1/2, 1/4), so the 95% interval is [0, 1]; drawing beats would give about 0.5 +- 0.07
    y_true = np.zeros(200, dtype=int)
    y_pred = np.r_[np.zeros(100, dtype=int), np.ones(100, dtype=int)]
    records = np.repeat(["a", "b"], 100)
    interval = group_bootstrap(y_true, y_pred, records, 3, draws=400, seed=1)
    assert interval["accuracy"].tolist() == [0.0, 1.0]
    assert interval["se"][0].tolist() == [0.0, 1.0]
    assert interval["ppv"][1].tolist() == [0.0, 0.0]  # draws of record a alone predict no class 1: left out
    assert np.isnan(interval["f1"][2]).all()  # class 2: never true, never predicted
    again = group_bootstrap(y_true, y_pred, records, 3, draws=400, seed=1)
    assert all(np.array_equal(interval[k], again[k], equal_nan=True) for k in interval)  # the seed fixes the draws
    right = group_bootstrap(y_true, y_true, records, 3, draws=50)
    assert right["accuracy"].tolist() == [1.0, 1.0] and right["f1"][0].tolist() == [1.0, 1.0]
    for bad, message in (({"draws": 0}, "draws must be a whole number >= 1, got 0"),
                         ({"level": 1.0}, r"level must lie in \(0, 1\), got 1.0")):
        with pytest.raises(ValueError, match=message):
            group_bootstrap(y_true, y_pred, records, 3, **bad)
    with pytest.raises(ValueError, match="200 labels, 200 predictions and 3 groups"):
        group_bootstrap(y_true, y_pred, records[:3], 3)


def test_a_percentile_interval_is_the_central_share_it_names():
    from msresnet1d.training.metrics import percentile_interval

    draws = np.arange(1001.0)  # 0 .. 1000: percentile p is 10 p
    np.testing.assert_allclose(percentile_interval(draws), [25, 975])  # 2.5% each side
    np.testing.assert_allclose(percentile_interval(draws, 0.9), [50, 950])
    both = percentile_interval(np.stack([draws, 2 * draws], axis=1))  # (draws, 2 statistics) -> (2, 2)
    np.testing.assert_allclose(both, [[25, 975], [50, 1950]])


def test_per_group_counts_and_sensitivity_by_hand():
    y_true, y_pred = np.array([0, 1, 1, 0, 1, 2]), np.array([0, 0, 1, 0, 1, 1])
    rows = per_group(y_true, y_pred, np.array(["b", "b", "b", "a", "a", "a"]), ["N", "S", "V"])
    assert [r["group"] for r in rows] == ["b", "a"]  # order of first appearance
    assert rows[0] == {"group": "b", "n": 3, "accuracy": pytest.approx(2 / 3), "counts": {"N": 1, "S": 2},
                       "se": {"N": 1.0, "S": 0.5}}
    assert rows[1]["counts"] == {"N": 1, "S": 1, "V": 1} and rows[1]["se"] == {"N": 1.0, "S": 1.0, "V": 0.0}
    assert "-" in format_per_group(rows, ["N", "S", "V"]).splitlines()[1]  # record b has no V beats
    with pytest.raises(ValueError, match="6 labels, 6 predictions and 2 groups"):
        per_group(y_true, y_pred, np.array(["a", "b"]), ["N", "S", "V"])


def test_cinc_score_is_the_mean_f1_of_normal_af_other():
    cm = np.array([[80, 5, 10, 5], [2, 15, 3, 0], [10, 4, 30, 6], [3, 0, 2, 5]])  # N A O ~
    f1 = [2 * 80 / (100 + 95), 2 * 15 / (20 + 24), 2 * 30 / (50 + 45)]
    assert cinc_score(cm, ["N", "A", "O", "~"]) == pytest.approx(np.mean(f1))
    # a class neither true nor predicted (a small subset without A) counts as 0, not left out of the mean
    no_af = np.array([[80, 0, 10, 5], [0, 0, 0, 0], [10, 0, 30, 6], [3, 0, 2, 5]])
    assert cinc_score(no_af, ["N", "A", "O", "~"]) == pytest.approx((2 * 80 / (95 + 93) + 0 + 2 * 30 / (46 + 42)) / 3)


def test_report_table_fits_long_class_names_and_names_the_macro_classes_only_when_some_are_left_out():
    from msresnet1d.data.fashion_mnist import CLASS_NAMES
    from msresnet1d.training.metrics import classification_report, format_report

    y = np.arange(20) % 10
    probabilities = np.eye(10)[y]
    lines = format_report(classification_report(y, probabilities, list(CLASS_NAMES), list(CLASS_NAMES))).splitlines()
    assert len({len(line) for line in lines[:-2]}) == 1  # header and rows: the columns line up
    assert lines[-2].startswith("(percent: Se sensitivity = recall, +P positive predictivity = precision")
    assert lines[-1].startswith("accuracy 100.0   macro-F1 100.0") and "T-shirt" not in lines[-1]
    beats = format_report(classification_report(np.arange(10) % 5, np.eye(5)[np.arange(10) % 5],
                                                ["N", "S", "V", "F", "Q"], ["N", "S", "V", "F"]))
    assert "macro-F1 100.0 (N,S,V,F)" in beats and "\nQ               2   100.0" in beats and "(not in macro)" in beats
    assert beats.startswith("class     support      Se      +P      Sp      F1\n")  # short names: the AAMI layout as it was


def test_macro_auc_and_perfect_predictions():
    y = np.array([0, 1, 2, 2])
    report = classification_report(y, np.eye(3)[y], ["a", "b", "c"])
    assert report["macro_auc"] == 1.0 and report["accuracy"] == 1.0 and report["macro_f1"] == 1.0
    # an unscored class (MIT-BIH's Q, CinC's ~) is left out of macro AUC as of macro-F1
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([[.6, .1, .3], [.7, .1, .2], [.15, .6, .25], [.1, .7, .2], [.5, .4, .1], [.45, .4, .15]])
    every = classification_report(y, p, ["a", "b", "c"])["macro_auc"]
    scored = classification_report(y, p, ["a", "b", "c"], ["a", "b"])["macro_auc"]
    assert scored == 1.0 and every < 1.0  # c's probabilities do not rank its examples first


def test_the_trainer_weighs_an_unscored_class_as_configured(tmp_path):
    from msresnet1d.training.engine import Trainer
    from msresnet1d.training.run import build_model
    from msresnet1d.training.tasks import build_task

    for unscored in ("rarity", "majority"):
        cfg = load_config(_config(tmp_path, 1), {"unscored_weight": unscored})
        task = build_task(cfg)  # the sample has no Q beat: two are added to the labels the weights come from
        task = dataclasses.replace(task, train_labels=np.concatenate([task.train_labels, [4, 4]]))
        assert task.scored == ["N", "S", "V", "F"]
        weight = Trainer(build_model(cfg, task), cfg, task, tmp_path / unscored, quiet=True).loss_fn.weight
        assert (weight[4] == weight[0]) == (unscored == "majority")


def _rates(cfg: TrainConfig, steps_per_epoch: int = 10) -> list[float]:
    """The learning rate of every step of a run of ``cfg``."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    rates = []
    for _ in range(cfg.epochs * steps_per_epoch):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_warm_up_takes_its_share_of_the_run_or_30_percent_of_a_shortened_one(schedule):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warm-up shorter than the run is taken as given, silently
        rates = _rates(TrainConfig(epochs=10, warmup_epochs=2.0, schedule=schedule, lr=0.1))
    assert int(np.argmax(rates)) in (19, 20) and max(rates) == pytest.approx(0.1, rel=0.05)
    for epochs, warmup in ((2, 2.0), (1, 2.0)):  # e.g. fashion_mnist_28 (warm-up 2 epochs) run with --epochs 1
        with pytest.warns(UserWarning, match=rf"warmup_epochs=2 is not shorter than the run \({epochs} epochs?\): "
                                             rf"the learning rate would rise until the end; warming up over the "
                                             rf"first {0.3 * epochs:g} epochs"):
            rates = _rates(TrainConfig(epochs=epochs, warmup_epochs=warmup, schedule=schedule, lr=0.1))
        peak = int(np.argmax(rates))
        assert abs(peak - 0.3 * len(rates)) <= 1 and rates[-1] < 0.05 * max(rates)  # it decays to about 0
    if schedule == "onecycle":  # under 4 steps one-cycle is a constant rate: no warm-up to adjust, no warning
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert set(_rates(TrainConfig(epochs=1, warmup_epochs=1.0, schedule=schedule, lr=0.1), 3)) == {0.1}


def test_one_epoch_reports_the_training_batches_accuracy():
    from msresnet1d.training.engine import train_one_epoch

    model = torch.nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([1.0, 0.0, 0.0]))  # always class 0
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    batches = [(torch.zeros(4, 2), torch.tensor([0, 1, 0, 2])), (torch.zeros(2, 2), torch.tensor([0, 0]))]
    loss, seen, accuracy = train_one_epoch(model, batches, torch.nn.CrossEntropyLoss(), optimizer, scheduler)
    assert seen == 6 and accuracy == pytest.approx(4 / 6) and loss > 0  # d2l's "train acc", over the batches
    _, _, regression = train_one_epoch(model, [(torch.zeros(2, 2), torch.zeros(2, 3))], torch.nn.MSELoss(),
                                       optimizer, scheduler)
    assert np.isnan(regression)  # no classes, no accuracy


def test_class_weights_and_focal_loss():
    w = class_weights(np.array([0, 0, 0, 1]), 3, "inverse")
    assert w.tolist() == pytest.approx([0.5, 1.5, 0.0])  # mean 1 over present classes, absent -> 0
    # DS1's class counts N, S, V, F, Q: the unscored Q weighs like N (majority) instead of 76 N beats (rarity)
    labels = np.repeat(np.arange(5), [45866, 944, 3788, 415, 8])
    rarity = class_weights(labels, 5, "inverse_sqrt", [0, 1, 2, 3]).numpy()
    assert rarity[4] / rarity[0] == pytest.approx(np.sqrt(45866 / 8), rel=1e-4)  # about 76
    majority = class_weights(labels, 5, "inverse_sqrt", [0, 1, 2, 3], "majority").numpy()
    assert majority[4] == pytest.approx(majority[0]) and majority.mean() == pytest.approx(1.0)
    assert majority[1] / majority[0] == pytest.approx(rarity[1] / rarity[0])  # the scored classes keep their ratios
    with pytest.raises(ValueError, match="unscored must be 'rarity' or 'majority'"):
        class_weights(labels, 5, "inverse_sqrt", [0, 1, 2, 3], "none")
    with pytest.raises(ValueError, match="config: unscored_weight must be one of"):
        TrainConfig(unscored_weight="none")
    logits, target = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0])
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    p = torch.softmax(logits, 1)[:, 0]
    assert FocalLoss(gamma=2.0)(logits, target) == pytest.approx(((1 - p) ** 2 * ce).mean().item())
    assert FocalLoss(gamma=0.0)(logits, target) == pytest.approx(ce.mean().item())


def test_cross_entropy_weights_examples_and_smooths_before_weighting():
    torch.manual_seed(0)
    logits, target = torch.randn(16, 3), torch.randint(0, 3, (16,))
    w = torch.tensor([0.2, 1.0, 50.0])
    assert CrossEntropyLoss(w)(logits, target) == pytest.approx(torch.nn.CrossEntropyLoss(w)(logits, target).item())
    eps = 0.1
    logp = torch.log_softmax(logits, 1)
    per = (1 - eps) * -logp.gather(1, target[:, None]).squeeze(1) + eps * -logp.mean(1)
    assert CrossEntropyLoss(w, eps)(logits, target) == pytest.approx((w[target] * per).sum().item() / w[target].sum().item())
    # The optimum of one example is its smoothed target, whatever the weights; PyTorch's weighted
    # smoothing moves it towards the heavy class (class 2 would win here: 50 x 0.1 / 3 > 0.9 + 0.1 / 3).
    smoothed = torch.tensor([[1 - eps + eps / 3, eps / 3, eps / 3]])
    at_target = torch.log(smoothed).requires_grad_()
    for loss in (CrossEntropyLoss(w, eps), FocalLoss(0.0, w, eps)):
        grad, = torch.autograd.grad(loss(at_target, torch.tensor([0])), at_target)
        assert grad.abs().max() < 1e-6
    grad, = torch.autograd.grad(torch.nn.CrossEntropyLoss(w, label_smoothing=eps)(at_target, torch.tensor([0])), at_target)
    assert grad.abs().max() > 0.1


# --------------------------------------------------------------------------- config and loader
@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions save, by file name (the files are still written)."""
    import msresnet1d.training.plots as plots

    figures, save = {}, plots._save

    def keep(fig, path):
        figures[Path(path).name] = fig
        save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def test_plot_scores_draws_gaps_spreads_and_targets(tmp_path, drawn):
    from msresnet1d.training.plots import plot_scores

    methods = {"a": {"S F1": 50.0, "V F1": 90.0, "accuracy": 93.0}, "b": {"S F1": 60.0, "V F1": 80.0}}
    plot_scores(methods, tmp_path / "s.png", targets={"S F1": 80.0}, spreads={"a": {"S F1": 5.0}}, title="t")
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [f.name for f in tmp_path.iterdir()] == ["s.png"]  # written to a temporary file, then renamed
    ax = drawn["s.png"].axes[0]
    from matplotlib.container import BarContainer

    bars = {c.get_label(): c for c in ax.containers if isinstance(c, BarContainer)}
    assert {k: [b.get_height() for b in c] for k, c in bars.items()} == {"a (mean ± SD)": [50.0, 90.0, 93.0],
                                                                        "b": [60.0, 80.0]}
    assert [t.get_text() for t in ax.texts] == ["n/a"]  # b's missing accuracy, not an invisible bar
    assert bars["b"].errorbar is None  # b has no accuracy: a gap; and no spread
    s_f1_spread = bars["a (mean ± SD)"].errorbar.lines[2][0].get_segments()[0][:, 1]
    assert np.allclose(s_f1_spread, [45.0, 55.0])  # 50 ± 5
    target, = [c for c in ax.collections if c.get_label() == "target"]
    assert np.allclose(target.get_segments()[0][:, 1], 80.0)


def test_plot_variants_draws_the_baseline_thicker(tmp_path, drawn):
    from msresnet1d.training.plots import plot_variants

    row = {"fold_macro_f1": [60.0, 62.0], "pooled": {"macro_f1": 61.0, **{c: {"f1": 50.0} for c in "SVF"}}}
    plot_variants({"main": row, "main+last": row, "wd": row}, tmp_path / "v.png", baseline="main+last")
    lines = {line.get_label().split(" (")[0]: line for line in drawn["v.png"].axes[0].get_lines()}
    assert [lines[n].get_linewidth() for n in ("main", "main+last", "wd")] == [1.2, 3, 1.2]
    assert lines["main+last"].get_label().endswith("baseline)") and lines["main+last"].get_linestyle() == "--"


class _Unsafe:
    """An object only a full unpickler would rebuild."""


class _Malicious:
    """An object whose unpickling runs a command."""

    def __reduce__(self):
        return os.system, ("echo unpickled",)


class _Evaluates:
    """An object whose unpickling evaluates Python."""

    def __reduce__(self):
        return eval, ("print('unpickled')",)


def test_load_checkpoint_refuses_what_torch_load_weights_only_refuses(tmp_path, monkeypatch):
    torch.save({"format": 1, "model": _Unsafe()}, tmp_path / "object.pt")
    (tmp_path / "text.pt").write_text("101\n")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"checkpoint .*object\.pt cannot be read safely with "
                                         r"torch\.load\(weights_only=True\): it holds a Python object of class "
                                         r"test_training\._Unsafe, which only unpickling, that is running code from "
                                         r"the file, could rebuild") as refused:
        load_checkpoint(tmp_path / "object.pt")
    assert "weights_only=False" not in str(refused.value)  # torch's advice would run code from the file
    torch.save({"format": 1, "model": _Malicious()}, tmp_path / "malicious.pt")  # a torch.save zip, made to run code
    with pytest.raises(ValueError, match=r"malicious\.pt cannot be read safely with torch\.load\(weights_only=True\): "
                                         r"it calls (posix|nt)\.system when unpickled: a file made to run code, not a "
                                         "checkpoint; do not load it any other way"):
        load_checkpoint(tmp_path / "malicious.pt")
    torch.save(create_model("msresnet1d_beat"), tmp_path / "whole.pt")
    with pytest.raises(ValueError, match=r"class msresnet1d\.models\.msresnet\.MSResNet1d, .*save model\.state_dict\(\)"):
        load_checkpoint(tmp_path / "whole.pt")
    with pytest.raises(ValueError, match=r"checkpoint .*text\.pt is not a file torch\.save wrote \(not a zip archive"):
        load_checkpoint(tmp_path / "text.pt")
    # torch.load does not check the CRCs torch.save writes: a damaged copy would load with other weights
    net = torch.nn.Linear(64, 64)
    torch.save({"format": 1, "model": net.state_dict(), "config": {"task": "beats"}, "class_names": ["N"],
                "task_state": {}}, tmp_path / "good.pt")
    data = bytearray((tmp_path / "good.pt").read_bytes())
    weights = data.find(net.weight.detach().numpy().tobytes()[:64])
    data[weights + 100: weights + 164] = bytes(64)  # 64 zero bytes inside the weights
    (tmp_path / "damaged.pt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"damaged\.pt is damaged: its part .*/data/0 fails its CRC check"):
        load_checkpoint(tmp_path / "damaged.pt")
    data = bytearray((tmp_path / "good.pt").read_bytes())
    data[data.rfind(b"PK\x01\x02") + 46] = 0x93  # a part's name in the central directory garbled: not UTF-8
    (tmp_path / "garbled.pt").write_bytes(bytes(data))  # was a UnicodeDecodeError naming no file
    with pytest.raises(ValueError, match=r"checkpoint .*garbled\.pt is not a file torch\.save wrote \(a damaged zip "
                                         r"archive: 'utf-8' codec can't decode byte 0x93"):
        load_checkpoint(tmp_path / "garbled.pt")
    assert load_checkpoint(tmp_path / "good.pt")["class_names"] == ["N"]
    torch.serialization.set_crc32_options(False)  # torch >= 2.6 may write no CRCs (0): nothing to check, loads
    try:
        torch.save({"format": 1, "model": net.state_dict(), "config": {"task": "beats"}, "class_names": ["N"],
                    "task_state": {}}, tmp_path / "unchecked.pt")
    finally:
        torch.serialization.set_crc32_options(True)
    assert load_checkpoint(tmp_path / "unchecked.pt")["class_names"] == ["N"]
    torch.save({"format": 1, "model": {}, "config": {"task": "beats"}}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"partial\.pt is incomplete: no class_names, task_state \(msresnet1d train "
                                         r"writes them"):
        load_checkpoint(tmp_path / "partial.pt")
    # made-up contents: refused naming the part (were TypeErrors, AttributeErrors and KeyErrors in predict, evaluate
    # and resume, or, for a string of class names, taken as five)
    good = torch.load(tmp_path / "good.pt", weights_only=True)
    for change, expected in [({"class_names": "NSVFQ"}, r"class_names is str 'NSVFQ', not a list of class names"),
                             ({"class_names": 5}, r"class_names is int 5, not a list"),
                             ({"class_names": []}, r"class_names is list \[\], not a list"),
                             ({"model": 7}, r"its model is not a state dict"),
                             ({"model": {"w": 1.0}}, r"its model is not a state dict"),
                             ({"ema": 3}, r"its ema holds no state dict"),
                             ({"task_state": "x"}, r"its task_state is not a table of names -> tensors"),
                             ({"config": {"task": "beats", 1: 2}}, r"its config has keys that are not names"),
                             ({"epoch": "0"}, r"its epoch is '0', not a whole number >= 0"),
                             # were an AttributeError in evaluate, torch's RuntimeErrors, or a model of meta weights
                             ({"splits": [1]}, r"its splits is list \[1\], not a table of names -> values"),
                             ({"model": {"weight": net.weight.detach().to_sparse()}},
                              r"its model's weight is a sparse_coo tensor, not a dense CPU tensor of real numbers"),
                             ({"model": {"weight": net.weight.detach().to(torch.complex64)}},
                              r"its model's weight is a complex64 tensor"),
                             ({"ema": {"module": {"weight": torch.empty(2, device="meta")}}},
                              r"its ema module's weight is a meta tensor"),
                             ({"task_state": {"rr_mean": torch.zeros(8).to_sparse()}},
                              r"its task_state's rr_mean is a sparse_coo tensor")]:
        torch.save(good | change, tmp_path / "made.pt")
        with pytest.raises(ValueError, match=rf"checkpoint .*made\.pt is malformed: {expected}"):
            load_checkpoint(tmp_path / "made.pt")
    # a compressed part (torch.save stores its parts uncompressed): a small file taking far more memory once read
    import zipfile

    with zipfile.ZipFile(tmp_path / "good.pt") as source, \
            zipfile.ZipFile(tmp_path / "zipped.pt", "w", zipfile.ZIP_DEFLATED) as target:
        for part in source.infolist():
            target.writestr(part.filename, source.read(part))
    with pytest.raises(ValueError, match=r"zipped\.pt holds compressed parts \(.*\), which torch\.save never writes"):
        load_checkpoint(tmp_path / "zipped.pt")
    # a function in the pickle (eval) is a file made to run code too, not "an object of class eval"
    torch.save({"format": 1, "model": _Evaluates()}, tmp_path / "evaluates.pt")
    with pytest.raises(ValueError, match=r"it calls (builtins\.)?eval when unpickled: a file made to run code"):
        load_checkpoint(tmp_path / "evaluates.pt")
    with pytest.raises(ValueError, match=r"other\.pt is not an msresnet1d checkpoint \(format 1\)"):
        load_checkpoint(tmp_path / "other.pt")
    for name, fmt, says in (("no_format", None, "but no format"), ("text_format", "1", "but its format is '1', not "
                                                                                     "the whole number 1"),
                            ("tensor_format", torch.tensor([1, 1]), r"but its format is tensor\(\[1, 1\]\), not"),
                            ("true_format", True, "but its format is True, not the whole number 1")):
        torch.save({"model": {}, "config": {}, **({} if fmt is None else {"format": fmt})}, tmp_path / f"{name}.pt")
        with pytest.raises(ValueError, match=rf"{name}\.pt is not an msresnet1d checkpoint \(format 1\): it has a "
                                             rf"model and a config, {says}"):
            load_checkpoint(tmp_path / f"{name}.pt")
    torch.save({"format": 2, "weights": {}}, tmp_path / "newer.pt")  # a later version's: said, not "not ours"
    with pytest.raises(ValueError, match=r"newer\.pt has format 2, from a newer msresnet1d; this version reads "
                                         r"format 1: load it with the version that wrote it, or a later one"):
        load_checkpoint(tmp_path / "newer.pt")
    from msresnet1d.training.checkpoint import atomic_save

    def full_disk(obj, f):  # what torch.save raises when the disk fills under it
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 752320 vs 752216")

    with monkeypatch.context() as patched:
        patched.setattr(torch, "save", full_disk)
        with pytest.raises(OSError, match=r"cannot write .*good\.pt: .*unexpected pos .*\(is the disk full\?\)"):
            atomic_save({"model": {}}, tmp_path / "good.pt")
    assert not list(tmp_path.glob(".good.pt.*"))
    with pytest.raises(FileNotFoundError, match="nowhere.pt not found"):
        load_checkpoint(tmp_path / "nowhere.pt")
    torch.save(torch.nn.Linear(2, 1).state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ValueError, match=r"weights\.pt is not an msresnet1d checkpoint \(format 1\): it is a bare state "
                                         r"dict; build the model with msresnet1d\.create_model"):
        load_checkpoint(tmp_path / "weights.pt")
    run = tmp_path / "run"
    (tmp_path / "empty").mkdir()
    with pytest.raises(IsADirectoryError, match=r"empty is a folder: .*\(a run keeps them in <run>/checkpoints/\)"):
        load_checkpoint(tmp_path / "empty")
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"model": {}}, run / "checkpoints" / "best.pt")
    with pytest.raises(IsADirectoryError, match=r"run is a folder: give a checkpoint file, best\.pt or last\.pt; did "
                                                r"you mean .*run/checkpoints/best\.pt\?"):
        load_checkpoint(run)


def test_checkpoints_are_written_to_a_temporary_file_then_renamed(tmp_path):
    # a save that fails half-way leaves the previous checkpoint whole, and no temporary file
    from msresnet1d.training.checkpoint import FORMAT_VERSION, atomic_save

    path, rest = tmp_path / "last.pt", {"format": FORMAT_VERSION, "config": {"task": "beats"}, "class_names": ["N"],
                                        "task_state": {}}
    atomic_save({**rest, "model": {"w": torch.ones(3)}}, path)
    with pytest.raises(Exception):
        atomic_save({**rest, "model": {"w": torch.zeros(3)}, "bad": lambda: 0}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))


def test_one_cycle_cycles_the_momentum_and_the_other_schedules_keep_the_configs():
    from msresnet1d.training.optim import build_optimizer

    def momenta(**kwargs) -> list[float]:
        cfg = TrainConfig(optimizer="sgd", epochs=2, warmup_epochs=1, **kwargs)
        optimizer = build_optimizer(torch.nn.Linear(2, 2), cfg)
        scheduler, seen = build_scheduler(optimizer, cfg, 10), []
        for _ in range(20):
            seen.append(optimizer.param_groups[0]["momentum"])
            optimizer.step()
            scheduler.step()
        return seen

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0.9, the cycle's middle (a float32 one too): no warning
        cycled = momenta(schedule="onecycle", momentum=np.float32(0.9))
    assert cycled[0] == pytest.approx(0.95) and min(cycled) == pytest.approx(0.85) and cycled[-1] > 0.94
    with pytest.warns(UserWarning, match=r"momentum = 0 is not used: schedule 'onecycle' cycles SGD's momentum"):
        assert momenta(schedule="onecycle", momentum=0.0) == cycled  # as the README and build_scheduler say
    assert set(momenta(schedule="cosine", momentum=0.0)) == {0.0}  # plain SGD, as configured
    assert set(momenta(schedule="constant", momentum=0.5)) == {0.5}


def test_unknown_config_keys_are_errors(tmp_path):
    with pytest.raises(ValueError, match=r"^defaults and the overrides \(lerning_rate\): unknown key.*lerning_rate"):
        load_config(None, {"lerning_rate": 0.1})
    (tmp_path / "a.toml").write_text("lerning_rate = 0.1\n")
    with pytest.raises(ValueError, match=r"a\.toml: unknown key"):  # from the file: the file alone is named
        load_config(tmp_path / "a.toml")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="adam")
    # values of the wrong type or range are refused, naming the key (a string "False" is not false)
    for values, message in (({"balanced_sampler": "False"}, "balanced_sampler must be true or false, got 'False'"),
                            ({"epochs": "3"}, "epochs must be a whole number"), ({"lr": True}, "lr must be a number"),
                            ({"monitor": "macro_F1"}, "monitor must be one of"), ({"weight_decay": -1}, ">= 0"),
                            ({"monitor": "cinc_score"}, "rhythm task's score"), ({"momentum": 1.0}, "momentum"),
                            ({"seed": -1}, r"seed must be in \[0, 2\*\*32 - 1\], got -1"), ({"seed": 2**32}, "seed"),
                            ({"lr": 1e39}, r"lr must be > 0 and at most 3\.403e\+38 \(float32's largest number\), got "
                                           r"1e\+39")):  # was a traceback from the optimizer's first step
        with pytest.raises(ValueError, match=message):
            load_config(None, values)
    cfg = TrainConfig(epochs=np.int64(3), lr=np.float32(0.5))  # numpy scalars, e.g. from a parameter grid
    assert (type(cfg.epochs), type(cfg.lr)) == (int, float) and json.dumps(cfg.to_dict())
    assert main(["train", "--set", "data.windoww=[0,1]", "--out", str(tmp_path / "r"), "--quiet"]) == 1
    # [model_kwargs] are checked by building the model before any data is read: a clean error
    for setting, message in (("model_kwargs.foo=1", r"model 'msresnet1d_beat' with \[model_kwargs\].*takes no option "
                                                    "'foo'; its options: block, dilations"),
                             ("model_kwargs.kernels=3", r"config: model 'msresnet1d_beat' with \[model_kwargs\] "
                                                        r"\{'kernels': 3\}: kernels must be a sequence of integers >= "
                                                        r"1, got 3 \(for one, write \(3,\)\)"),
                             ("model_kwargs.kernels=[0, 3, 3]", r"kernels must be integers >= 1, got \(0, 3, 3\)"),
                             ("model_kwargs.num_classes=3", r"\[model_kwargs\] num_classes: set by the task \(here "
                                                            "in_channels=2, num_classes=5, extra_features=8"),
                             # checked against the task's 5 classes and 8 RR features (rr = true), not placeholders
                             ("model_kwargs.split_by_extra=[1, 5]", r"split_by_extra=\[1, 5\] .* in \[0, 5\)"),
                             ("data.rr=false", "split_by_extra=.*extra_features=0"),
                             # [data] first, naming the key, although the model's check needs the data options
                             ('data.fs="abc"', r"config: \[data\] fs must be a rate in Hz > 0 and at most 10,000 .*, "
                                               r"got 'abc'"),
                             ('data.rr=["nope"]', r"config: \[data\] rr must be true, false or a list")):
        extra = ["model_kwargs.split_by_extra=[0, 1]"] if setting == "data.rr=false" else []
        with pytest.raises(ValueError, match=message):
            train_or_reuse(load_config(None, parse_overrides([setting, *extra])), tmp_path / "m")
        assert not (tmp_path / "m").exists()


def test_a_misspelt_name_gets_the_closest_known_one():
    from msresnet1d.spelling import did_you_mean

    assert did_you_mean(["epoch"], ["epochs", "lr"]) == " (did you mean 'epochs'?)"
    several = did_you_mean(["epoch", "fss", "zzz"], ["epochs", "fs"])
    assert several == " (did you mean 'epochs' for 'epoch', 'fs' for 'fss'?)"
    assert did_you_mean(["zzz"], ["epochs"]) == ""  # nothing close: no guess
    assert did_you_mean([3], ["epochs"]) == did_you_mean([None], ["epochs"]) == ""  # not a name: the error says so
    with pytest.raises(ValueError, match="unknown model 3; available: "):
        create_model(3)
    for values, message in (({"epoch": 3}, r"unknown key\(s\) epoch \(did you mean 'epochs'\?\); known keys"),
                            ({"task": "beat"}, r"task must be one of .*, got 'beat' \(did you mean 'beats'\?\)"),
                            ({"model": "msresnet1d_bet"}, r"unknown model 'msresnet1d_bet' \(did you mean "
                                                          "'msresnet1d_beat'")):
        with pytest.raises(ValueError, match=message):
            load_config(None, values, check=True)


def test_train_names_the_config_file_of_a_bad_data_or_model_option(tmp_path, capsys):
    """The [data] and [model_kwargs] checks (run before any data is read) name the file, as the
    checks of the top-level keys do, and suggest the closest option."""
    for table, message in (("[data]\nfss = 360", r"\[data\] of task 'beats': unknown key\(s\) fss \(did you mean "
                                                 r"'fs'\?\)"),
                           ("[model_kwargs]\nkernals = [3, 5]", r"model 'msresnet1d_beat' with \[model_kwargs\] "
                                                                r".*takes no option 'kernals' \(did you mean "
                                                                r"'kernels'\?\)"),
                           ("[data]\nfs = -1", r"\[data\] fs must be a rate in Hz > 0")):
        path = tmp_path / "bad.toml"
        path.write_text(f'task = "beats"\n{table}\n')
        assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 1
        assert re.search(f"^error: {re.escape(str(path))}: {message}", capsys.readouterr().err, re.MULTILINE)
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("task, key, value, expected", [
    ("beats", "rr", ["nope"], "true, false or a list of distinct names of"),
    ("beats", "representation", "foo", "'signal' or 'spectrogram'"), ("beats", "scale", -1, r"a number in \[0, 1\)"),
    ("beats", "shift", -1, "a number >= 0"),
    # an OverflowError (1e308 s in samples), and a TypeError building the message of names that are not strings
    ("beats", "shift", 1e308, r"shorter than the window .*0\.7 s\), got 1e\+308"),
    ("beats", "shift", 1.0, r"shorter than the window \(window = \[-0\.25, 0\.45\]"),
    ("beats", "rr", [1, 2], r"got \[1, 2\]"),
    ("beats", "val_records", -1, "a whole number >= 0 or a list"),
    ("beats", "scale", 5, r"a number in \[0, 1\)"), ("beats", "cache", "maybe", "true or false"), ("beats", "template", 2, "true or false"),
    ("beats", "val_seed", "x", "a whole number"), ("beats", "fs", "abc", "a rate in Hz > 0"),
    ("beats", "test_records", [100, 101], "record names as strings"),
    ("beats", "train_records", [], "a non-empty list .* leave it out for the default split"),
    # a record named twice would count its beats twice (in the test figures, or in training)
    ("beats", "test_records", ["100", "232", "232"], "each record once"),
    ("beats", "train_records", ["101", "101"], "each record once"), ("beats", "val_records", ["101", "101"], "each once"),
    # a record outside the database folder (read from a config or a checkpoint's): refused
    ("beats", "test_records", ["100", "../../elsewhere/100"], r"each in the database folder \(no absolute path or \.\.\)"),
    ("beats", "train_records", ["/tmp/100"], "each in the database folder"), ("beats", "val_records", ["../101"], "each once"),
    # a record on both sides of the split under two spellings (a leak the overlap check did not see): refused
    ("beats", "test_records", ["./101", "100"], r"written one way \('101', not '\./101'\)"),
    ("beats", "spectrogram", 3, r"a table of options \(window_s, overlap"), ("beats", "band", [40, 0.5], "0 < low < high"),
    ("rhythm", "band", [0, 40], "0 < low < high"),  # a corner at 0 Hz, which every record's filter refused
    ("rhythm", "fold", 5, "below folds"), ("rhythm", "val_fraction", 1.0, r"in \[0, 1\)"),
    ("rhythm", "rr", ["hr_mean_typo"], "distinct names of"), ("fashion_mnist", "normalize", "minmax", "'unit' or"),
    ("fashion_mnist", "hflip", "yes", "true or false"), ("beats", "val_seed", -1, "a whole number >= 0"),
    ("rhythm", "split_seed", -1, "a whole number >= 0"), ("beats", "fs", float("inf"), "a rate in Hz > 0"),
    ("beats", "band", [None, None], "either corner null"), ("beats", "record_balanced", 1, "true or false"),
    ("beats", "leads", ["MLII", "V1 | V5"], "no spaces or empty names around"), ("beats", "leads", ["V1|"], "lead names"),
    ("beats", "leads", [], "a non-empty list of lead names"),
    ("beats", "annotator", ".ann", "the extension of the records' annotation files"),
    ("beats", "annotator", "hea", "not hea"), ("beats", "annotator", "../atr", "letters, digits or _"),
    ("fashion_mnist", "val_size", 60_000, r"in \[0, 59998\]: training keeps at least 2"),
    ("fashion_mnist", "train_size", 1, r"a whole number in \[2, 60000\]"),
    ("fashion_mnist", "train_size", 70_000, r"in \[2, 60000\]"),
])
def test_data_options_are_checked_before_any_data_is_read(task, key, value, expected, tmp_path):
    from msresnet1d.training.tasks import build_task

    model = {"beats": "msresnet1d_beat", "rhythm": "msresnet1d_small", "fashion_mnist": "resnet18_d2l"}[task]
    cfg = load_config(None, {"task": task, "model": model, f"data.{key}": value,
                             "data.data_dir": str(tmp_path / "missing")})  # never read: the check comes first
    with pytest.raises(ValueError, match=rf"config: \[data\] {key} must be .*{expected}"):
        build_task(cfg)


def test_fashion_train_size_must_fit_beside_the_held_out_images(tmp_path):
    from msresnet1d.training.tasks import build_task

    cfg = load_config(None, {"task": "fashion_mnist", "model": "resnet18_d2l", "data.val_size": 5000,
                             "data.train_size": 55_001, "data.data_dir": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match=r"train_size must be at most the 55,000 training images val_size=5000 "
                                         r"leaves, got 55001"):
        build_task(cfg)


def test_a_validation_count_the_training_records_cannot_give_names_the_key():
    from msresnet1d.training.tasks import build_task

    records = ["101", "106", "118", "119"]
    for count in (4, 30):  # no training record would be left
        cfg = load_config(None, {"data.data_dir": str(SAMPLE), "data.train_records": records,
                                 "data.test_records": ["100"], "data.val_records": count})
        with pytest.raises(ValueError, match=rf"^config: \[data\] val_records={count} of the 4 training records "
                                             r"\(101, 106, 118, 119\): .*leaves no training"):
            build_task(cfg)


def test_a_custom_split_that_separates_a_patients_records_warns():
    from msresnet1d.data import DS1, DS2, shared_patients
    from msresnet1d.training.tasks import build_task

    assert shared_patients(DS1, DS2) == [("201", "202")] and shared_patients(["202"], ["201", "100"]) == [("202", "201")]
    assert shared_patients(["201", "202"], ["100"]) == []
    with warnings.catch_warnings():
        warnings.filterwarnings("error", ".*records of one patient")  # the literature's split, spelt out: on purpose
        check = {"data.train_records": list(DS1), "data.test_records": list(DS2), "data.data_dir": str(SAMPLE)}
        build_task(load_config(None, {**check, "data.val_records": 4}))
    base = {"data.data_dir": str(SAMPLE), "data.val_records": 0}
    with pytest.warns(UserWarning, match=r"^config: \[data\] train_records holds 201 and test_records 202, records of "
                                         "one patient: the test is not inter-patient for them"):
        build_task(load_config(None, {**base, "data.train_records": ["201", "118"], "data.test_records": ["202", "100"]}))
    with pytest.warns(UserWarning, match=r"^config: \[data\] val_records holds 201 and training keeps 202"):
        build_task(load_config(None, {**base, "data.train_records": ["202", "118", "201"], "data.test_records": ["100"],
                                      "data.val_records": ["201"]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # one side each: nothing to say
        build_task(load_config(None, {**base, "data.train_records": ["201", "202"], "data.test_records": ["100"]}))


def test_a_record_of_fewer_than_two_beats_is_left_out_only_by_a_model_reading_rr_features(short_records):
    # one such record aborted the whole beat task, even with rr = false
    from msresnet1d.training.tasks import build_task

    db = short_records
    for name in ("101", "118", "100"):
        for path in SAMPLE.glob(f"{name}.*"):
            shutil.copy(path, db)
    base = {"data.data_dir": str(db), "data.val_records": 0, "data.train_records": ["101", "118", "one"],
            "data.test_records": ["100"], "data.cache": False}
    with pytest.warns(UserWarning, match=re.escape("training records: one left out (1 beat(s)): fewer than 2 beats")):
        task = build_task(load_config(None, {**base, "data.rr": True}))
    assert task.splits["train_records"] == ["101", "118"]
    plain = build_task(load_config(None, {**base, "data.rr": False}))
    assert plain.splits["train_records"] == ["101", "118", "one"]
    assert sum(plain.splits["train_beats"].values()) == sum(task.splits["train_beats"].values()) + 1
    # named for validation too, it is left out there (not "val_records ['one'] are not training records")
    with pytest.warns(UserWarning, match="training records: one left out"):
        held = build_task(load_config(None, {**base, "data.rr": True, "data.val_records": ["118", "one"]}))
    assert held.splits["val_records"] == ["118"] and held.splits["train_records"] == ["101"]
    with pytest.raises(DataError, match=re.escape("test records: every one with beats (one) has fewer than 2 beats")):
        build_task(load_config(None, {**base, "data.rr": True, "data.train_records": ["101"],
                                      "data.test_records": ["one"]}))


def test_another_database_without_the_default_records_is_told_how_to_name_its_own(tmp_path):
    # the error named the first missing DS1 record, asking "another database, or a partial copy?", not how to go on
    from msresnet1d.training.tasks import build_task

    for name in ("100", "101"):
        for path in SAMPLE.glob(f"{name}.*"):
            shutil.copy(path, tmp_path)
    message = (f"database {tmp_path} lacks 42 of the 44 records of the default split (MIT-BIH's DS1 and DS2: 106, "
               "108, 109, 112, 114, ...): for another database, or a partial copy, name the records it holds "
               "(100, 101) with --set 'data.train_records=[\"100\", ...]' and --set 'data.test_records=[...]'")
    with pytest.raises(DataError, match=re.escape(message)):
        build_task(load_config(None, {"data.data_dir": str(tmp_path)}))
    with pytest.raises(DataError, match=re.escape("lacks 21 of the 22 records of the default split")):  # DS2 only
        build_task(load_config(None, {"data.data_dir": str(tmp_path), "data.train_records": ["101"]}))
    task = build_task(load_config(None, {"data.data_dir": str(tmp_path), "data.train_records": ["101"],
                                         "data.test_records": ["100"], "data.val_records": 0}))
    assert task.splits["test_records"] == ["100"]
    # its results are not called MIT-BIH's (the sample's records, cut short: their headers are not the published)
    assert task.test_title.startswith(f"database {tmp_path.name} test, the config's test_records (1 records, ")


def test_the_beat_task_title_names_ds2_only_when_ds2_is_the_test():
    from msresnet1d.training.tasks import build_task

    base = {"data.data_dir": str(SAMPLE), "data.val_records": 0, "data.train_records": ["101", "118"]}
    own = build_task(load_config(None, {**base, "data.test_records": ["100", "105"]}))  # e.g. a DS1 cross-validation fold
    assert own.test_title.startswith("MIT-BIH test, the config's test_records (2 records, ")
    ds2 = build_task(load_config(None, base))  # the default test_records
    assert ds2.test_title.startswith("MIT-BIH inter-patient test, DS2 (22 records, ")


def test_the_beat_task_title_names_mitdb_for_its_published_records(mitdb_dir):
    from msresnet1d.training.tasks import build_task

    task = build_task(load_config(None, {"data.data_dir": str(mitdb_dir), "data.val_records": 0,
                                         "data.train_records": ["101"], "data.test_records": ["100"]}))
    assert task.test_title.startswith("MIT-BIH test, the config's test_records (1 records, ")


def test_data_check_takes_every_band_form_and_checks_spectrogram_options(tmp_path):
    from msresnet1d.training.tasks import build_task, check_data

    for band in (None, False, [], [None, 40.0], [0.5, None], [0.5, 40]):  # no filter, open corners, a band
        check_data(load_config(None, {"data.band": band}))
    cfg = load_config(None, {"data.representation": "spectrogram", "data.spectrogram": {"overlap": 2.0},
                             "data.data_dir": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match=r"\[data.spectrogram\] overlap must be in \[0, 1\), got 2.0"):
        build_task(cfg)


def test_a_rate_above_the_ecg_tasks_ceiling_is_refused_before_any_data():
    # data.fs = 1e9 was taken: the run ended in numpy's MemoryError traceback (1e6: a worker killed by the system)
    from msresnet1d.training.tasks import check_data
    from msresnet1d.training.tasks.options import MAX_FS

    for task in ("beats", "rhythm"):
        check_data(load_config(None, {"task": task, "data.fs": MAX_FS}))
        for fs in (MAX_FS * 1.0001, 1e9):
            with pytest.raises(ValueError, match=rf"\[data\] fs must be a rate in Hz > 0 and at most 10,000 .*, "
                                                 rf"got {fs!r}$"):
                check_data(load_config(None, {"task": task, "data.fs": fs}))


def test_data_dir_is_the_database_or_a_folder_holding_it(tmp_path, capsys):
    from msresnet1d.training.tasks import build_task

    root = tmp_path / "data"
    root.mkdir()
    (root / "mitdb").symlink_to(SAMPLE)
    task = build_task(load_config(_config(tmp_path, 1), {"data.data_dir": str(root), "data.cache": False}))
    assert task.splits["database"] == str(root / "mitdb") and len(task.splits["test_records"]) == 4
    with pytest.raises(DataError, match=f"{tmp_path} is not a folder of WFDB records, nor a folder holding 'mitdb/'"):
        build_task(load_config(_config(tmp_path, 1), {"data.data_dir": str(tmp_path)}))
    # the experiment scripts' --data-dir: the same two forms, or a usage error saying what is missing
    from msresnet1d.arguments import database_or_exit, script_parser

    parser = script_parser("A script.\n\nMore.")
    assert parser.description == "A script." and database_or_exit(parser, "mitdb", root) == root / "mitdb"
    for folder, message in ((None, "give --data-dir or set MSRESNET1D_DATA"), (tmp_path, "not a folder of WFDB records")):
        with pytest.raises(SystemExit):
            database_or_exit(parser, "mitdb", folder)
        assert message in capsys.readouterr().err
    # records of another database: refused by the database's marker file, before any work
    cinc = tmp_path / "cinc2017"
    cinc.mkdir()
    (cinc / "A00001.hea").write_text("A00001 1 300 9000\n")
    for name, folder, message in (("mitdb", cinc, f"{cinc} holds WFDB records but not the header of an MIT-BIH record, "
                                                  "100.hea to 234.hea: not the mitdb database"),
                                  ("cinc2017", root / "mitdb", f"{root / 'mitdb'} holds WFDB records but not REFERENCE.csv")):
        with pytest.raises(SystemExit):
            database_or_exit(parser, name, folder)
        assert message in capsys.readouterr().err
    (cinc / "REFERENCE.csv").write_text("A00001,N\n")
    assert database_or_exit(parser, "cinc2017", tmp_path) == cinc
    # a copy of DS1 alone (no record 100) is MIT-BIH; stray records beside mitdb/ do not hide it
    ds1 = tmp_path / "ds1"
    ds1.mkdir()
    (ds1 / "101.hea").write_text("101 2 360 650000\n")
    assert database_or_exit(parser, "mitdb", ds1) == ds1
    (root / "A00001.hea").write_text("A00001 1 300 9000\n")
    assert database_or_exit(parser, "mitdb", root) == root / "mitdb"


def test_sign_flip_averaging_is_refused_for_images():
    from msresnet1d.training.ensemble import predict_members
    from msresnet1d.training.tasks import check_data

    fashion = load_config(None, {"task": "fashion_mnist", "model": "resnet18_d2l"})
    check_data(fashion)
    with pytest.raises(ValueError, match="tta 'flip' averages each input with its sign-inverted copy, .* use tta 'none'"):
        check_data(dataclasses.replace(fashion, tta="flip"))
    with pytest.raises(ValueError, match="tta 'flip' averages"):  # evaluate --tta flip: refused before any prediction
        predict_members(None, [(None, fashion)], tta="flip")


def test_sign_flip_averaging_is_refused_for_spectrograms(tmp_path):
    from msresnet1d.training.checkpoint import FORMAT_VERSION
    from msresnet1d.training.ensemble import load_members
    from msresnet1d.training.tasks import check_data, model_inputs

    spectrogram = load_config(None, {"data.representation": "spectrogram", "model": "resnet18",
                                     "model_kwargs": {"dims": 2}, "data.data_dir": str(tmp_path / "missing")})
    check_data(spectrogram)
    message = (r"tta 'flip' averages each input with its sign-inverted copy, but this model reads beats as "
               r"spectrograms \(\[data\] representation 'spectrogram'\): the flip would invert the spectrogram image")
    with pytest.raises(ValueError, match=message):
        check_data(dataclasses.replace(spectrogram, tta="flip"))
    check_data(dataclasses.replace(spectrogram, data={**spectrogram.data, "representation": "signal"}, tta="flip"))
    rr = {name: torch.full((model_inputs(spectrogram)[1],), float(name == "rr_std"), dtype=torch.float64)
          for name in ("rr_mean", "rr_std")}
    torch.save({"format": FORMAT_VERSION, "epoch": 0, "config": spectrogram.to_dict(), "model": {},
                "class_names": ["N", "S", "V", "F", "Q"], "task_state": rr}, tmp_path / "spec.pt")
    with pytest.raises(ValueError, match=message):  # evaluate --tta flip: before the (missing) data is looked for
        load_members([tmp_path / "spec.pt"], tta="flip")


def test_evaluate_adapt_bn_is_refused_for_one_example_a_record_before_the_data_loads(tmp_path, capsys):
    from msresnet1d.cli import main
    from msresnet1d.training.checkpoint import FORMAT_VERSION

    fashion = load_config(None, {"task": "fashion_mnist", "model": "resnet18_d2l",
                                 "data.data_dir": str(tmp_path / "missing")})
    torch.save({"format": FORMAT_VERSION, "epoch": 0, "config": fashion.to_dict(), "model": {},
                "class_names": [str(k) for k in range(10)], "task_state": {}}, tmp_path / "fashion.pt")
    with pytest.raises(SystemExit, match=r"^error: --adapt-bn adapts BatchNorm to each record's several examples, for "
                                         rf"beat models; {tmp_path / 'fashion.pt'} is a 'fashion_mnist' model, of "
                                         "images without records$"):  # before: the missing data's error
        main(["evaluate", str(tmp_path / "fashion.pt"), "--adapt-bn"])


def test_every_shipped_config_passes_the_data_check():
    from msresnet1d.training.tasks import check_data

    configs = sorted((REPO / "experiments" / "configs").glob("*.toml"))
    assert len(configs) > 5
    for path in configs:
        check_data(load_config(path))


def test_a_used_or_impossible_run_folder_is_refused_before_the_data_load(tmp_path, capsys, monkeypatch):
    import msresnet1d.training.run as run_module
    from msresnet1d.atomic import name_max

    monkeypatch.setattr(run_module, "build_task", lambda *a: pytest.fail("the data was loaded first"))
    (tmp_path / "a-file").write_text("")
    (tmp_path / "used" / "checkpoints").mkdir(parents=True)
    (tmp_path / "used" / "checkpoints" / "last.pt").write_bytes(b"")
    (tmp_path / "runs").symlink_to("/nonexistent/runs")  # an unmounted disk's: "File exists" after the data load
    long = "n" * (name_max(tmp_path) + 1)  # "File name too long" after the data load
    for out, message in ((tmp_path / "a-file", "is a file; choose another --out"),
                         (tmp_path / "a-file" / "run", f"cannot be created: {tmp_path / 'a-file'} is a file"),
                         (tmp_path / "used", "already holds a run; pass --resume to continue it or choose --out"),
                         (tmp_path / "runs", f"cannot be created: {tmp_path / 'runs'} is a symbolic link to "
                                             "/nonexistent/runs, which does not exist"),
                         (tmp_path / "runs" / "a", f"cannot be created: {tmp_path / 'runs'} is a symbolic link"),
                         (tmp_path / long / "a", f"cannot be created: the name {'n' * 40}... is {len(long)} bytes "
                                                 f"long, over the {len(long) - 1}-byte limit of the file system of "
                                                 f"{tmp_path}")):
        assert main(["train", "--config", str(_config(tmp_path, 1)), "--out", str(out), "--quiet"]) == 1
        assert f"run folder {out}" in (err := capsys.readouterr().err) and message in err
    assert not (tmp_path / "a-file" / "run").exists()
    monkeypatch.chdir(tmp_path / "used")  # runs/<name>/<time>
    assert main(["train", "--config", str(_config(tmp_path, 1)), "--name", long, "--quiet"]) == 1
    assert f"cannot be created: the name {'n' * 40}... is {len(long)} bytes long" in capsys.readouterr().err
    # an existing folder without write permission (chmod does not stop root, who runs the tests here: the
    # check is replaced) is not "created"
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    monkeypatch.setattr("msresnet1d.training.engine.uncreatable", lambda path: f"{read_only} is not writable")
    assert main(["train", "--config", str(_config(tmp_path, 1)), "--out", str(read_only), "--quiet"]) == 1
    assert f"run folder {read_only} cannot be written: {read_only} is not writable" in capsys.readouterr().err


def test_a_folder_of_files_a_run_writes_but_no_run_is_refused_and_a_finished_run_said_so_first(
        tmp_path, capsys, monkeypatch):
    # --out into such a folder replaced its config.json, log.csv... without a word (only checkpoints/last.pt was
    # looked for); and --resume of a finished run in a read-only folder said "cannot be written", not "finished"
    import msresnet1d.training.run as run_module
    from msresnet1d.training import engine

    monkeypatch.setattr(run_module, "build_task", lambda *a: pytest.fail("the data was loaded first"))
    mine = tmp_path / "mine"
    mine.mkdir()
    for name, text in (("config.json", '{"editor.tabSize": 4}'), ("log.csv", "day,km\n"), ("notes.txt", "")):
        (mine / name).write_text(text)
    assert main(["train", "--config", str(_config(tmp_path, 1)), "--out", str(mine), "--quiet"]) == 1
    assert (f"run folder {mine} holds config.json, log.csv but no run (no checkpoints/last.pt, .lock or config.json "
            "of a run): a run would replace them; choose another --out (a new or empty folder)") in \
        capsys.readouterr().err
    assert (mine / "config.json").read_text() == '{"editor.tabSize": 4}'
    # a run's: its config.json (a run killed before its lock file was copied, or a config given there), its lock
    # (a run killed before it wrote anything), or a resume; a folder of other files only
    cfg = load_config(_config(tmp_path, 1))
    for folder, files in (("config", {"config.json": json.dumps(cfg.to_dict()), "log.csv": ""}),
                          ("locked", {engine.RUN_LOCK: "", "log.csv": ""}), ("other", {"notes.txt": ""})):
        (tmp_path / folder).mkdir()
        for name, text in files.items():
            (tmp_path / folder / name).write_text(text)
        engine.check_run_dir(tmp_path / folder, resume=False)
    engine.check_run_dir(mine, resume=True)
    # a finished run, resumed in a folder that cannot be written: finished, left as it is
    (tmp_path / "config" / "metrics.json").write_text('{"test": {"accuracy": 0.5}}')
    monkeypatch.setattr(engine, "uncreatable", lambda path: f"{tmp_path / 'config'} is not writable")
    assert run_module.train(cfg, tmp_path / "config", resume=True, quiet=True) == {"test": {"accuracy": 0.5}}
    assert f"{tmp_path / 'config'} holds a finished run (metrics.json is written last)" in capsys.readouterr().out


def test_a_folder_where_a_run_writes_a_file_is_refused_before_the_data_load(tmp_path, capsys, monkeypatch):
    # a folder named metrics.json is no finished run: train trained the whole run, then failed to write the file
    import msresnet1d.training.run as run_module
    from msresnet1d.training import engine

    monkeypatch.setattr(run_module, "build_task", lambda *a: pytest.fail("the data was loaded first"))
    config = _config(tmp_path, 1)
    for name in engine.RUN_OUTPUTS:
        run = tmp_path / name.replace("/", "_")
        (run / name).mkdir(parents=True)
        for resume in ([], ["--resume"]):
            assert main(["train", "--config", str(config), "--out", str(run), "--quiet", *resume]) == 1
            assert (f"error: run folder {run}: {run / name} is a folder, where a run writes a file; move it away, or "
                    "choose another --out\n") in capsys.readouterr().err
    with pytest.raises(FileExistsError, match=r"metrics\.json is a folder, .* or choose another --runs$"):
        train_or_reuse(load_config(config), tmp_path / "metrics.json")  # a script's run: not taken as finished
    linked = tmp_path / "linked"  # a link is replaced by the file, whatever it points at
    (linked / "checkpoints").mkdir(parents=True)
    (linked / "checkpoints" / "best.pt").symlink_to(tmp_path / "checkpoints_best.pt", target_is_directory=True)
    engine.check_run_dir(linked, resume=True)


def test_a_run_folder_is_used_by_one_train_at_a_time(tmp_path, capsys, monkeypatch):
    # Two trains (or resumes) on one --out used to both pass the "already holds a run" check (last.pt is written
    # only after the first epoch) and then overwrite each other's files: the folder ended a mix of two runs,
    # both reported success. The folder's lock (.lock, flock) lets one at a time in; the other is refused.
    import msresnet1d.training.run as run_module
    from msresnet1d.training.engine import Trainer

    out, config = tmp_path / "run", str(_config(tmp_path, 1))
    loads, fit, real_build = [], Trainer.fit, run_module.build_task

    def build_task(*args):
        loads.append(1)
        return real_build(*args)

    def fit_with_others_arriving(self):
        if self.cfg.seed == 1:  # the first run, holding the folder: others arrive while it trains
            for extra in ([], ["--resume"]):
                assert main(["train", "--config", config, "--out", str(out), "--seed", "2", "--quiet", *extra]) == 1
                assert (f"run folder {out} is in use by another msresnet1d train (process {os.getpid()}); wait for it "
                        "to end, or choose another --out") in capsys.readouterr().err
        return fit(self)

    monkeypatch.setattr(run_module, "build_task", build_task)
    monkeypatch.setattr(Trainer, "fit", fit_with_others_arriving)
    assert main(["train", "--config", config, "--out", str(out), "--seed", "1", "--quiet"]) == 0
    assert len(loads) == 1  # the others were refused before their data load
    assert load_checkpoint(out / "checkpoints" / "last.pt")["config"]["seed"] == 1
    assert json.loads((out / "config.json").read_text())["seed"] == 1

    # one that passed the early check during another's data load is refused once it gets the folder
    def build_task_while_another_trains(*args):
        monkeypatch.setattr(run_module, "build_task", real_build)
        assert main(["train", "--config", config, "--out", str(tmp_path / "late"), "--seed", "3", "--quiet"]) == 0
        return real_build(*args)

    monkeypatch.setattr(run_module, "build_task", build_task_while_another_trains)
    assert main(["train", "--config", config, "--out", str(tmp_path / "late"), "--seed", "4", "--quiet"]) == 1
    assert f"run folder {tmp_path / 'late'} already holds a run" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "late" / "checkpoints" / "last.pt")["config"]["seed"] == 3
    assert json.loads((tmp_path / "late" / "config.json").read_text())["seed"] == 3
    # the lock goes with the run that held it, however it ended: a resume in the same process takes it again
    assert main(["train", "--out", str(tmp_path / "late"), "--resume", "--quiet"]) == 0


def test_the_run_folder_lock_refuses_a_holder_waits_for_a_probe_and_stands_aside_without_flock(tmp_path, monkeypatch):
    import errno

    from msresnet1d.training import engine

    held = engine.lock_run_dir(tmp_path)
    assert (tmp_path / engine.RUN_LOCK).read_text() == f"{os.getpid()}\n"
    monkeypatch.setattr(engine, "_LOCK_PATIENCE", 0.0)
    for create in (True, False):  # a second run, and check_run_dir's probe, while a run holds it
        with pytest.raises(FileExistsError, match=rf"in use by another msresnet1d train \(process {os.getpid()}\)"):
            engine.lock_run_dir(tmp_path, create=create)
    with pytest.raises(FileExistsError, match="in use by another msresnet1d train"):
        engine.check_run_dir(tmp_path, resume=True)
    os.close(held)
    # probes share the lock (a read-only file will do, as NFS requires for it); a run that starts during
    # another command's probe waits for it instead of being refused
    probe = engine.lock_run_dir(tmp_path, create=False)
    os.close(engine.lock_run_dir(tmp_path, create=False))
    ended = []

    def probe_ends(seconds: float) -> None:
        if not ended:
            ended.append(os.close(probe))

    monkeypatch.setattr(engine, "_LOCK_PATIENCE", 5.0)
    monkeypatch.setattr(engine.time, "sleep", probe_ends)
    os.close(engine.lock_run_dir(tmp_path))
    assert ended  # it did wait
    # a file system without flock (Lustre without -o flock): trains unlocked, with a warning, as before the lock

    def unsupported(fd: int, operation: int) -> None:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(engine.fcntl, "flock", unsupported)
    for create in (True, False):
        with pytest.warns(UserWarning, match="its file system does not support flock .* so the run is not locked"):
            assert engine.lock_run_dir(tmp_path, create=create) is None
    with pytest.warns(UserWarning, match="does not support flock"):
        engine.check_run_dir(tmp_path, resume=True)


def test_a_model_torch_cannot_allocate_is_refused_as_a_bad_config():
    """Widths below 2**31 whose weights still overflow torch's 64-bit size count: a RuntimeError traceback."""
    from msresnet1d.training import configured

    cfg = TrainConfig(task="beats", model="msresnet1d_beat", model_kwargs={"widths": [10**9, 16, 16]})
    with pytest.raises(ValueError, match=r"^config: model 'msresnet1d_beat' with \[model_kwargs\] \{'widths': "
                                         r"\[1000000000, 16, 16\]\}: Storage size calculation overflowed"):
        configured.resolve_model(cfg)


def test_a_model_too_large_to_train_in_memory_is_refused_before_the_data_load(tmp_path, monkeypatch, capsys):
    """Widths of 40,000 (358 GiB of weights) loaded the data, then swapped for minutes until Linux's
    out-of-memory killer stopped the run, without a message."""
    from msresnet1d.training import configured
    from msresnet1d.training.run import check_config

    cfg = TrainConfig(task="beats", model="msresnet1d_beat")
    with torch.device("meta"):
        model = configured.create_configured_model(cfg, 1, 5, 5)
    weights = sum(p.numel() * 4 for p in model.parameters())
    for changes, copies in (({}, 4), ({"ema_decay": 0.99}, 5), ({"optimizer": "sgd"}, 2)):
        monkeypatch.setattr(configured, "usable_memory", lambda: copies * weights)  # just enough
        configured.check_training_memory(model, dataclasses.replace(cfg, **changes))
        monkeypatch.setattr(configured, "usable_memory", lambda: copies * weights - 1)
        with pytest.raises(ValueError, match=rf"^config: model 'msresnet1d_beat' with \[model_kwargs\] {{}} has "
                                             rf"[\d,]+ parameters \(0\.0 GiB\): training keeps {copies} copies of them "
                                             r"\(the weights, their gradients"):
            configured.check_training_memory(model, dataclasses.replace(cfg, **changes))
    monkeypatch.setattr(configured, "usable_memory", lambda: None)  # a system that does not say: not checked
    configured.check_training_memory(model, cfg)
    monkeypatch.undo()
    # through the command, with the machine's own memory: refused before the data load
    monkeypatch.setattr("msresnet1d.training.run.build_task", lambda *args: pytest.fail("the data were loaded"))
    assert main(["train", "--config", str(_config(tmp_path, 1)), "--out", str(tmp_path / "run"), "--quiet",
                 "--set", "model_kwargs.widths=[40000, 40000, 40000]"]) == 1
    err = capsys.readouterr().err
    assert "training keeps 4 copies of them (the weights, their gradients, AdamW's 2 moments)" in err, err
    assert "GiB of memory this process may use: choose smaller widths or fewer blocks" in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="GiB of memory this process may use"):
        check_config(dataclasses.replace(cfg, model_kwargs={"widths": [40000] * 3}))


def test_the_memory_a_process_may_use_is_its_containers_limit_where_that_is_lower(tmp_path, monkeypatch):
    from msresnet1d.training import configured

    def tree(cgroups: str, files: dict[str, str]) -> int | None:
        root = tmp_path / str(len(list(tmp_path.iterdir())))
        root.mkdir()
        for name, value in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(value + "\n")
        (root / "cgroup").write_text(cgroups)
        return configured.cgroup_memory_limit(root / "cgroup", root)

    gib = 2**30
    # v2 (one hierarchy): the group's own limit, or a lower one above it
    assert tree("0::/user/job\n", {"user/job/memory.max": str(8 * gib)}) == 8 * gib
    assert tree("0::/user/job\n", {"user/job/memory.max": "max", "user/memory.max": str(2 * gib)}) == 2 * gib
    assert tree("0::/\n", {"memory.max": str(4 * gib)}) == 4 * gib  # inside a container
    assert tree("0::/a\n", {"a/memory.max": "max"}) is None  # no limit
    # v1: the memory controller's hierarchy; its "no limit" is about 2**63
    v1 = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n"
    assert tree(v1, {"memory/docker/abc/memory.limit_in_bytes": str(3 * gib)}) == 3 * gib
    assert tree(v1, {"memory/docker/abc/memory.limit_in_bytes": "9223372036854771712"}) is None
    assert tree("2:cpu:/x\nnot a line\n", {}) is None  # no memory controller; a line it cannot read
    assert configured.cgroup_memory_limit(tmp_path / "none", tmp_path) is None  # not Linux
    # the lower of the machine's memory and the limit
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    monkeypatch.setattr(configured, "cgroup_memory_limit", lambda: 1 * gib)
    assert configured.usable_memory() == min(machine, gib)
    monkeypatch.setattr(configured, "cgroup_memory_limit", lambda: None)
    assert configured.usable_memory() == machine


def test_a_run_folder_never_writes_through_a_symbolic_link_or_into_a_fifo(tmp_path, capsys):
    from msresnet1d.training import engine

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for link in (victim, tmp_path / "absent.txt"):  # a file, and a dangling link that would create one
        (run / engine.RUN_LOCK).unlink(missing_ok=True)
        (run / engine.RUN_LOCK).symlink_to(link)
        for create in (True, False):
            with pytest.raises(FileExistsError, match=rf"^run folder {run}: its \.lock is a symbolic link: a run "
                                                      rf"writes only plain files of its own there; remove {run}/\.lock"):
                engine.lock_run_dir(run, create=create)
    assert victim.read_text() == "precious" and not (tmp_path / "absent.txt").exists()  # was the process id, or made
    # through train: refused before the data load, naming the file
    assert main(["train", "--config", str(_config(tmp_path, 1)), "--out", str(run), "--quiet"]) == 1
    assert "its .lock is a symbolic link" in capsys.readouterr().err
    (run / engine.RUN_LOCK).unlink()
    os.mkfifo(run / engine.RUN_LOCK)  # opened without blocking, and refused
    with pytest.raises(FileExistsError, match=r"its \.lock is not a regular file"):
        engine.check_run_dir(run, resume=False)
    (run / engine.RUN_LOCK).unlink()
    (run / engine.RUN_LOCK).mkdir()
    with pytest.raises(FileExistsError, match=r"its \.lock is a folder"):
        engine.lock_run_dir(run)
    (run / engine.RUN_LOCK).rmdir()
    # the write probe is a new file, not a name a link could sit at; a folder named like a temporary file is left
    (run / ".write-test").symlink_to(victim)
    (run / ".config.json.x.tmp").mkdir()
    assert main(["train", "--config", str(_config(tmp_path, 1)), "--out", str(run), "--quiet"]) == 0
    assert victim.read_text() == "precious" and (run / ".config.json.x.tmp").is_dir()


def test_where_there_is_no_flock_a_run_trains_unlocked(tmp_path, monkeypatch):
    from msresnet1d.training import engine

    monkeypatch.setattr(engine, "fcntl", None)  # Windows: the module imports, and runs train as before
    assert engine.lock_run_dir(tmp_path) is None and not (tmp_path / engine.RUN_LOCK).exists()
    assert main(["train", "--config", str(_config(tmp_path, 1)), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", "--quiet"]) == 0


def test_an_input_shorter_than_the_model_needs_names_the_data_keys(tmp_path, capsys):
    assert main(["train", "--config", str(_config(tmp_path, 1)), "--set", "data.fs=10", "--out", str(tmp_path / "r"),
                 "--quiet"]) == 1  # a 0.7 s window at 10 Hz: 6 or 7 samples
    assert re.search(r"needs inputs of at least 9 samples, the task gives [67] \(data\.fs x the length of "
                     r"data\.window\): raise it, or pick a smaller model", capsys.readouterr().err)


def test_set_overrides_parse_json_values_and_reject_items_without_a_key(tmp_path):
    values = parse_overrides(["lr=0.01", "data.rr=[\"prev_over_local\"]", "name=run a", " seed = 3 ", "data.band=a=b"])
    assert values == {"lr": 0.01, "data.rr": ["prev_over_local"], "name": "run a", "seed": 3, "data.band": "a=b"}
    assert load_config(None, values).data["rr"] == ["prev_over_local"]
    for bad in ("lr", "=0.01"):
        with pytest.raises(ValueError, match=f"KEY=VALUE.*{bad!r}"):
            parse_overrides([bad])
    with pytest.raises(SystemExit, match="KEY=VALUE.*'lr'"):
        main(["train", "--set", "lr", "--out", str(tmp_path / "r2"), "--quiet"])
    with pytest.raises(ValueError, match="--set lr given twice, as 0.01 and 0.02"):
        parse_overrides(["lr=0.01", "lr=0.02"])
    assert parse_overrides(["lr=0.01", "lr=0.01"]) == {"lr": 0.01}
    # a list or table that does not parse is not taken as a string (the shell ate the quotes, or a bracket)
    for bad in ("model_kwargs.kernels=[3,5", "data.leads=[MLII]"):
        with pytest.raises(ValueError, match=rf"--set {re.escape(bad)}: not valid JSON \(.*\); write a list as "
                                             r"\[3, 5\], a string inside it in double quotes"):
            parse_overrides([bad])
    assert parse_overrides(["name=", "name2=a[1]"]) == {"name": "", "name2": "a[1]"}
    # a flag and --set naming one key: the run would silently take one of them
    with pytest.raises(SystemExit, match="--epochs 5 and --set epochs=10 disagree"):
        main(["train", "--epochs", "5", "--set", "epochs=10", "--out", str(tmp_path / "r3"), "--quiet"])
    with pytest.raises(SystemExit, match="--data-dir a and --set data.data_dir=b disagree"):
        main(["train", "--data-dir", "a", "--set", "data.data_dir=b", "--out", str(tmp_path / "r4"), "--quiet"])
    assert not (tmp_path / "r3").exists() and not (tmp_path / "r4").exists()


def test_loader_extra_features_balanced_sampler_and_shards():
    x, y, extra = torch.arange(10.0)[:, None], torch.tensor([0] * 8 + [1] * 2), torch.arange(10.0)[:, None] * 10
    xb, eb, yb = next(iter(TensorBatchLoader(x, y, 10, extra=extra)))
    assert torch.equal(eb, xb * 10) and torch.equal(yb, y)
    weights = torch.where(y == 1, 4.0, 1.0)  # 1 / class frequency, up to scale
    drawn = torch.cat([next(iter(TensorBatchLoader(torch.zeros(10, 1), y, 10, seed=s, sample_weights=weights)))[1]
                       for s in range(200)])
    assert 0.4 < drawn.float().mean() < 0.6  # balanced: about half the draws are the rare class
    shards = [torch.cat([b for b, _ in TensorBatchLoader(x, y, 3, shuffle=True, seed=1, rank=r, world_size=2)])
              for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5
    assert sorted(torch.cat(shards).flatten().tolist()) == list(range(10))


def test_balanced_sample_weights_balance_the_given_classes_only():
    from msresnet1d.training.optim import balanced_sample_weights

    y = np.array([0] * 80 + [1] * 19 + [2])
    every = balanced_sample_weights(y)
    assert every.sum().item() == pytest.approx(1.0)
    assert [every[y == c].sum().item() for c in range(3)] == pytest.approx([1 / 3] * 3)
    scored = balanced_sample_weights(y, [0, 1])  # class 2 (one example, unscored) keeps its 1 / N
    assert scored[y == 2].item() == pytest.approx(1 / 100)
    assert [scored[y == c].sum().item() for c in (0, 1)] == pytest.approx([0.495, 0.495])
    assert torch.unique(scored[y == 1]).numel() == 1  # within a class, every example alike
    with pytest.raises(ValueError, match=r"none of the classes \[3\]"):
        balanced_sample_weights(y, [3])


def test_record_sample_weights_draw_every_record_equally_often():
    from msresnet1d.training.optim import record_sample_weights

    records = np.array(["101"] * 30 + ["203"] * 60 + ["118"] * 10)
    w = record_sample_weights(records)
    assert w.sum().item() == pytest.approx(1.0)
    assert [w[records == r].sum().item() for r in ("101", "203", "118")] == pytest.approx([1 / 3] * 3)
    assert torch.unique(w[records == "203"]).numel() == 1  # within a record, every beat alike
    with pytest.raises(ValueError, match="no examples"):
        record_sample_weights(np.array([], dtype=str))


def test_record_balanced_beat_task_draws_by_record(tmp_path):
    from msresnet1d.data import load_beats
    from msresnet1d.training.tasks import beat_config, build_task, resolve_data

    records = ["101", "106", "119"]
    base = {"data.data_dir": str(SAMPLE), "data.train_records": records, "data.test_records": ["100"],
            "data.val_records": 0, "data.cache": False}
    cfg = load_config(None, {**base, "data.record_balanced": True})
    weights = build_task(cfg).train.sample_weights
    beats = load_beats(records, db_dir=SAMPLE, config=beat_config(resolve_data(cfg).data), cache=False)
    assert weights is not None and len(weights) == len(beats)
    for record in records:
        mine = weights[torch.from_numpy(beats.record == record)]
        assert mine.sum().item() == pytest.approx(1 / 3) and torch.unique(mine).numel() == 1
    assert build_task(load_config(None, base)).train.sample_weights is None  # the default: plain shuffling
    with pytest.raises(ValueError, match="record_balanced and balanced_sampler both choose"):
        build_task(load_config(None, {"data.record_balanced": True, "balanced_sampler": True,
                                      "data.data_dir": str(tmp_path / "missing")}))


# --------------------------------------------------------------------------- runs
def test_ecg_strip_labels_beats_as_the_test_does_with_the_runs_tta(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from msresnet1d.models.tta import with_tta
    from msresnet1d.training import plots, run
    from msresnet1d.training.tasks import build_task

    cfg = load_config(_config(tmp_path, 1), {"tta": "flip"})
    task = build_task(cfg)
    torch.manual_seed(1)
    model = run.build_model(cfg, task).eval()  # untrained: its labels of x and -x differ
    with torch.no_grad():
        for parameter in model.parameters():  # larger weights: labels more varied, and more sign-dependent
            parameter.mul_(3)
    shown = {}
    monkeypatch.setattr(plots, "plot_ecg_strip", lambda signal, fs, beats, true, predicted, path, title, lead, start_s,
                        units: shown.update(start_s=start_s, units=units, beats=beats, true=true, predicted=predicted,
                                     record=title.split(",")[0].split()[-1]))
    trainer = SimpleNamespace(run_dir=tmp_path, task=task, evaluated=model, cfg=cfg,
                              history=SimpleNamespace(rows=[], best_epoch=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # write_plots turns a plot's failure into a warning: none here
        run.write_plots(trainer, {"test": {"confusion_matrix": np.zeros((5, 5), dtype=int).tolist()}})
    # the strip's beats among the test beats (consecutive beats of its record)
    beats = task.strip["beats"]
    mine = np.flatnonzero(beats.record == shown["record"])
    relative = beats.sample[mine] - beats.sample[mine][:, None]
    first = next(j for j in range(len(mine)) if np.array_equal(relative[j, j:j + len(shown["beats"])],
                                                               shown["beats"] - shown["beats"][0]))
    chosen = mine[first:first + len(shown["beats"])]
    flipped = task.predict(with_tta(model, "flip"), "test", torch.device("cpu"))[1].argmax(axis=1)[chosen]
    plain = task.predict(model, "test", torch.device("cpu"))[1].argmax(axis=1)[chosen]
    assert (flipped != plain).any()  # else the test could not tell them apart
    assert shown["predicted"] == [task.class_names[k] for k in flipped]  # what evaluate and predict give
    # the strip is the 10 s of any test record (from 0.5 s before a beat) with the most non-N beats
    most = 0
    for record in set(beats.record):
        positions, other = beats.sample[beats.record == record], beats.y[beats.record == record] != 0
        most = max(most, max(other[(positions >= p - 180) & (positions < p - 180 + 3600)].sum() for p in positions))
    assert sum(label != "N" for label in shown["true"]) == most > 1
    assert shown["units"] == "mV" and shown["start_s"] > 0  # the record's own time axis


def test_ecg_strip_gives_the_model_its_inputs_on_the_models_device(tmp_path, monkeypatch):
    # a GPU run's model is on its GPU; the meta device stands in for it (no GPU needed)
    from msresnet1d.training import plots, run
    from msresnet1d.training.tasks import build_task

    task = build_task(load_config(_config(tmp_path, 1)))
    seen = []

    class OnMeta(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.empty(1, device="meta"))

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            seen.extend(t.device for t in inputs)
            return torch.zeros(len(inputs[0]), len(task.class_names))  # logits (N, classes), all class N

    shown = {}
    monkeypatch.setattr(plots, "plot_ecg_strip", lambda *args, **kwargs: shown.update(predicted=args[4]))
    run.ecg_strip(OnMeta(), task, tmp_path / "strip.png")
    assert seen and all(device.type == "meta" for device in seen)
    assert set(shown["predicted"]) == {"N"}


def test_a_plot_that_fails_leaves_the_run_finished_and_plots_leave_pyplot_alone(tmp_path, monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt

    from msresnet1d.training import plots
    from msresnet1d.training.run import train

    def broken(*args, **kwargs):
        raise ValueError("Axis limits cannot be NaN or Inf")

    monkeypatch.setitem(matplotlib.rcParams, "backend", "svg")  # a caller's own (a notebook's): plots must leave it
    monkeypatch.setattr(plots, "plot_confusion", broken)
    with pytest.warns(UserWarning, match=r"confusion_matrix.png could not be drawn \(ValueError: Axis limits cannot "
                                         r"be NaN or Inf\); the run's results are kept"):
        train(load_config(_config(tmp_path, 1)), tmp_path / "run", quiet=True)
    assert (tmp_path / "run" / "metrics.json").is_file()  # a finished run, which --resume would not redo
    assert (tmp_path / "run" / "curves.png").is_file() and (tmp_path / "run" / "ecg_strip.png").is_file()
    assert matplotlib.get_backend() == "svg"  # the old plots switched it to Agg
    monkeypatch.setattr(plots, "_save", broken)  # a figure that fails as it is saved stays in no registry
    with pytest.raises(ValueError):
        plots.plot_curves([{"epoch": 1, "train_loss": 1.0}], tmp_path / "c.png")
    assert plt.get_fignums() == []
    signal = np.sin(np.arange(3600) / 50)
    signal[1000:1200] = np.nan  # WFDB's invalid samples: a gap in the strip, not an error
    monkeypatch.undo()  # the backend too
    plots.plot_ecg_strip(signal, 360.0, np.array([500, 2000]), ["N", "V"], ["N", "N"], tmp_path / "gap.png")
    assert (tmp_path / "gap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_main_job_cli_on_the_embedded_sample(tmp_path, capsys):
    out = tmp_path / "run"
    result = _cli("train", "--config", str(_config(tmp_path, epochs=2)), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "Se" in result.stdout and "macro-F1" in result.stdout
    for line in ("N ", "S ", "V ", "F "):
        assert any(l.startswith(line) for l in result.stdout.splitlines()), line
    for name in ("config.json", "log.csv", "metrics.json", "curves.png", "confusion_matrix.png", "ecg_strip.png",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["splits"]["val_records"] == ["106", "209"]
    assert not set(metrics["splits"]["train_records"]) & set(metrics["splits"]["test_records"])
    assert metrics["test"]["n"] == sum(metrics["splits"]["test_beats"].values())
    assert len((out / "log.csv").read_text().splitlines()) == 3  # header + 2 epochs
    with open(out / "log.csv", newline="") as f:
        assert all(0 <= float(row["train_accuracy"]) <= 1 for row in csv.DictReader(f))
    # A second run into the same folder must not overwrite it.
    again = _here(capsys, "train", "--config", str(_config(tmp_path, epochs=2)), "--out", str(out), "--quiet")
    assert again.returncode == 1 and "already holds a run" in again.stderr

    evaluated = _cli("evaluate", str(out / "checkpoints" / "best.pt"), "--json", str(tmp_path / "eval.json"))
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((tmp_path / "eval.json").read_text())["confusion_matrix"] == metrics["test"]["confusion_matrix"]
    # what was evaluated, on which data, is printed and kept in the JSON
    assert f"data: {metrics['splits']['database']} (the embedded sample, not the full database)" in evaluated.stdout
    assert json.loads((tmp_path / "eval.json").read_text())["evaluated"] == {
        "checkpoints": [str((out / "checkpoints" / "best.pt").resolve())], "split": "test", "tta": None,
        "adapt_bn": False, "database": metrics["splits"]["database"]}
    # a checkpoint of a run on other data (here: one more N beat in training) is refused, the splits named
    other = load_checkpoint(out / "checkpoints" / "best.pt")
    assert other["splits"] == {k: v for k, v in metrics["splits"].items() if k != "database"}
    other["splits"]["train_beats"]["N"] += 1
    torch.save(other, tmp_path / "other.pt")
    refused = _here(capsys, "evaluate", str(tmp_path / "other.pt"))
    assert refused.returncode == 1 and "its run's train_beats differs in this rebuild" in refused.stderr
    assert f"({{'N': {other['splits']['train_beats']['N']}, " in refused.stderr
    assert "that is other data than the run trained and was tested on (the embedded sample" in refused.stderr
    # per record: the test records in order, and their beats add up to the whole split's Se
    # --json is checked before the evaluation: never over a file it reads or its run needs, never a folder
    best_bytes = (out / "checkpoints" / "best.pt").read_bytes()
    for target, message in ((out / "checkpoints" / "best.pt", f"would overwrite {out / 'checkpoints' / 'best.pt'}"),
                            (out / "config.json", f"would overwrite {out / 'config.json'}, which this evaluation reads "
                                                  "or its run needs"),
                            (out / "checkpoints" / "last.pt", "would overwrite"),
                            (out / "curves.png", f"would overwrite {out / 'curves.png'}"), (tmp_path, "is a folder")):
        refused = _here(capsys, "evaluate", str(out / "checkpoints" / "best.pt"), "--json", str(target))
        assert refused.returncode == 1 and message in refused.stderr and "MIT-BIH" not in refused.stdout, refused.stderr
    assert (out / "checkpoints" / "best.pt").read_bytes() == best_bytes
    per = _here(capsys, "evaluate", str(out / "checkpoints" / "best.pt"), "--per-record", "--json",
                str(tmp_path / "per.json"))
    assert per.returncode == 0, per.stderr
    assert "per record" in per.stdout and "232" in per.stdout
    per_json = json.loads((tmp_path / "per.json").read_text())
    rows = per_json["per_record"]
    assert [r["group"] for r in rows] == ["100", "105", "232", "233"]
    interval = per_json["record_interval"]  # the test records drawn with replacement
    assert interval["records"] == 4 and interval["draws"] == 2000 and set(interval) >= {"N", "S", "V", "F", "Q"}
    assert interval["accuracy"][0] - 0.05 <= 100 * metrics["test"]["accuracy"] <= interval["accuracy"][1] + 0.05
    assert ("95% interval of the test figures over 4 records (the records drawn with replacement, 2,000 times): "
            "N F1 ") in per.stdout
    assert sum(r["n"] for r in rows) == metrics["test"]["n"]
    for name, stats in metrics["test"]["per_class"].items():
        held = [r for r in rows if name in r["counts"]]
        if held:
            found = sum(r["se"][name] * r["counts"][name] for r in held)
            assert found / sum(r["counts"][name] for r in held) == pytest.approx(stats["se"]), name

    # several checkpoints: the mean of their probabilities (one checkpoint twice = that checkpoint)
    best, last = out / "checkpoints" / "best.pt", out / "checkpoints" / "last.pt"
    twice = _here(capsys, "evaluate", str(best), str(best), "--json", str(tmp_path / "twice.json"))
    assert twice.returncode == 0 and "ensemble of 2 checkpoints" in twice.stdout, twice.stderr
    assert json.loads((tmp_path / "twice.json").read_text())["confusion_matrix"] == metrics["test"]["confusion_matrix"]
    assert _here(capsys, "evaluate", str(best), str(last)).returncode == 0
    from msresnet1d.training.ensemble import ensemble_predict, load_members, member_predictions, predict_members

    flipped = load_checkpoint(best)  # another model of the same task: the linear layer negated
    flipped["model"]["fc.weight"] = -flipped["model"]["fc.weight"]
    torch.save(flipped, tmp_path / "flipped.pt")
    _, y_true, mean = ensemble_predict([best, tmp_path / "flipped.pt"])
    alone = [ensemble_predict([path])[2] for path in (best, tmp_path / "flipped.pt")]
    assert not np.allclose(alone[0], alone[1])
    np.testing.assert_allclose(mean, (alone[0] + alone[1]) / 2, rtol=1e-6, atol=1e-7)
    _, y_members, members = member_predictions([best, tmp_path / "flipped.pt"])  # each model's, one task
    assert members.shape == (2, *mean.shape) and np.array_equal(y_members, y_true)
    np.testing.assert_allclose(members, np.stack(alone), rtol=1e-6, atol=1e-7)
    task, loaded = load_members([best, tmp_path / "flipped.pt"])  # one task, predicted several ways
    adapted_first = predict_members(task, loaded[:1], adapt_bn=True)[1]
    np.testing.assert_allclose(predict_members(task, loaded)[1], members, rtol=1e-6, atol=1e-7)  # models unchanged
    assert not np.allclose(adapted_first[0], members[0])
    # --tta flip: each model also asked about -x; the same as the model with its stem conv negated
    negated = load_checkpoint(best)
    negated["model"]["stem.0.weight"] = -negated["model"]["stem.0.weight"]
    torch.save(negated, tmp_path / "negated.pt")
    _, _, with_flip = ensemble_predict([best], tta="flip")
    np.testing.assert_allclose(with_flip, ensemble_predict([best, tmp_path / "negated.pt"])[2], rtol=1e-5, atol=1e-6)
    flip_cli = _here(capsys, "evaluate", str(best), "--tta", "flip", "--json", str(tmp_path / "flip.json"))
    assert flip_cli.returncode == 0, flip_cli.stderr
    assert f"on the test split ({len(y_true)} examples, tta flip):" in flip_cli.stdout  # says how it predicted
    assert json.loads((tmp_path / "flip.json").read_text())["confusion_matrix"] == \
        confusion_matrix(y_true, with_flip.argmax(axis=1), 5).tolist()
    adapted_cli = _here(capsys, "evaluate", str(best), "--adapt-bn", "--json", str(tmp_path / "adapted.json"))
    assert adapted_cli.returncode == 0, adapted_cli.stderr
    assert "examples, BatchNorm adapted to each record):" in adapted_cli.stdout
    assert json.loads((tmp_path / "adapted.json").read_text())["confusion_matrix"] == \
        confusion_matrix(y_true, ensemble_predict([best], adapt_bn=True)[2].argmax(axis=1), 5).tolist()
    other = load_checkpoint(best)
    other["config"]["data"]["test_records"] = ["100", "105"]
    torch.save(other, tmp_path / "other.pt")
    refused = _here(capsys, "evaluate", str(best), str(tmp_path / "other.pt"))
    assert refused.returncode == 1
    assert (f"other.pt was made with another model or config (data.test_records: it has ['100', '105'], {best} has "
            "['100', '105', '232', '233'])") in refused.stderr
    rhythm = load_checkpoint(best)  # another task: said in one line, not as a list of differing data keys
    rhythm["config"] |= {"task": "rhythm", "data": {}}  # the rhythm defaults
    rhythm["class_names"] = ["N", "A", "O", "~"]
    torch.save(rhythm, tmp_path / "rhythm.pt")
    with pytest.raises(ValueError, match=r"rhythm.pt is a 'rhythm' model, .*best.pt a 'beats' one: an ensemble averages "
                                         "models of one task"):
        load_members([best, tmp_path / "rhythm.pt"])
    augmented = load_checkpoint(best)  # trained with augmentation: evaluation sees the same inputs
    augmented["config"]["data"] |= {"scale": 0.1, "noise_std": 0.05, "shift": 0.02}
    torch.save(augmented, tmp_path / "augmented.pt")
    np.testing.assert_allclose(ensemble_predict([best, tmp_path / "augmented.pt"])[2], alone[0], rtol=1e-6, atol=1e-7)
    # the same database named another way (a folder holding it, a link to it): the same inputs
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "mitdb").symlink_to(SAMPLE)
    elsewhere = load_checkpoint(best)
    elsewhere["config"]["data"]["data_dir"] = str(tmp_path / "root")
    torch.save(elsewhere, tmp_path / "elsewhere.pt")
    np.testing.assert_allclose(ensemble_predict([best, tmp_path / "elsewhere.pt"])[2], alone[0], rtol=1e-6, atol=1e-7)


def test_training_only_data_keys_are_data_keys_of_their_task():
    assert set(TRAINING_ONLY_DATA) == set(TASK_DEFAULTS)
    for task, keys in TRAINING_ONLY_DATA.items():
        assert set(keys) <= set(TASK_DEFAULTS[task]), task


def test_weight_ema_by_hand():
    from msresnet1d.training.ema import WeightEMA

    model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    ema = WeightEMA(model, decay=0.9)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked += 3
    ema.update(model)  # step 1: d = min(0.9, 2 / 11)
    d = 2 / 11
    torch.testing.assert_close(ema.module[0].weight, d * start + (1 - d) * (start + 1))
    assert ema.module[1].num_batches_tracked.item() == 3 and not ema.module.training
    for _ in range(200):
        ema.update(model)
    torch.testing.assert_close(ema.module[0].weight, model[0].weight.detach())
    assert not any(p.requires_grad for p in ema.module.parameters())
    clone = WeightEMA(model, decay=0.9)
    clone.load_state_dict(ema.state_dict())
    assert clone.updates == 201 and torch.equal(clone.module[0].weight, ema.module[0].weight)
    with pytest.raises(ValueError, match="ema_decay must be in"):
        WeightEMA(model, decay=1.0)
    with pytest.raises(ValueError, match="ema_decay must be in"):
        TrainConfig(ema_decay=-0.1)


@pytest.mark.parametrize("ema", [False, True], ids=["weights", "ema"])
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, ema):
    config = _config(tmp_path, epochs=4)
    if ema:  # validation, best.pt and the test use the moving average, last.pt holds it too
        config.write_text(config.read_text().replace("threads = 1\n", "threads = 1\nema_decay = 0.95\n"))
        assert load_config(config).ema_decay == 0.95
    straight = _cli("train", "--config", str(config), "--out", str(tmp_path / "straight"), "--quiet")
    assert straight.returncode == 0, straight.stderr

    killed_dir = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "msresnet1d.cli", "train", "--config", str(config), "--out",
                             str(killed_dir), "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not (killed_dir / "checkpoints" / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed_dir / "metrics.json").exists(), "the run finished before it was killed"
    assert load_checkpoint(killed_dir / "checkpoints" / "last.pt")["epoch"] < 3

    resumed = _cli("train", "--config", str(config), "--out", str(killed_dir), "--resume", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(killed_dir / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert ("ema" in a) == ema
    if ema:
        assert a["ema"]["updates"] == b["ema"]["updates"] > 0
        assert all(torch.equal(v, b["ema"]["module"][k]) for k, v in a["ema"]["module"].items())
        best = load_checkpoint(tmp_path / "straight" / "checkpoints" / "best.pt")
        if best["epoch"] == 3:
            assert all(torch.equal(v, a["ema"]["module"][k]) for k, v in best["model"].items())
        assert not all(torch.equal(v, a["model"][k]) for k, v in a["ema"]["module"].items())
        # evaluating last.pt runs the moving average, as validation and best.pt do
        from msresnet1d.training.checkpoint import atomic_save
        from msresnet1d.training.ensemble import ensemble_predict

        averaged = {k: v for k, v in a.items() if k != "ema"} | {"model": a["ema"]["module"]}
        atomic_save(averaged, tmp_path / "averaged.pt")
        last = ensemble_predict([tmp_path / "straight" / "checkpoints" / "last.pt"])[2]
        np.testing.assert_array_equal(last, ensemble_predict([tmp_path / "averaged.pt"])[2])
    ma = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    mb = json.loads((killed_dir / "metrics.json").read_text())
    assert ma["test"] == mb["test"]
    assert (tmp_path / "straight" / "log.csv").read_text().count("\n") == (killed_dir / "log.csv").read_text().count("\n")


def test_sigterm_stops_a_run_as_ctrl_c_and_it_resumes_from_anywhere(tmp_path):
    # a scheduler's stop (SIGTERM) ends a run as Ctrl-C does; the run keeps its data folder as an absolute
    # path, so that it resumes from another folder; a temporary file left by a kill is cleaned up
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "msresnet1d.cli", "train", "--config", str(_config(tmp_path, 3)),
                             "--out", str(out), "--quiet", "--data-dir", str(SAMPLE.relative_to(REPO))], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "checkpoints" / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and f"interrupted: the last completed epoch is in {out / 'checkpoints' / 'last.pt'}" \
        in err, err
    assert not (out / "metrics.json").exists(), "the run finished before it was stopped"
    assert json.loads((out / "config.json").read_text())["data"]["data_dir"] == str(SAMPLE)
    stale = [out / "checkpoints" / ".last.pt.k1ll3d.tmp", out / ".log.csv.k1ll3d.tmp", out / ".curves.png.k1ll3d.png"]
    others = [out / ".eval.json.wr1t1ng.tmp", out / ".100.pred.wr1t1ng.tmp"]  # evaluate --json / predict, writing
    for path in stale + others:
        path.write_bytes(b"half a file")
    resumed = _cli("train", "--out", str(out), "--resume", "--quiet", "--threads", "2", "--set", "eval_batch_size=100",
                   cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    # logged as the command prints Python's warnings: "warning: ...", not "WARNING msresnet1d.training.engine: ..."
    assert "\nwarning: --resume: the run trained with threads=1, it continues with threads=2" in "\n" + resumed.stderr
    assert "the run trained with eval_batch_size=1024, it continues with eval_batch_size=100" in resumed.stderr
    assert not any(path.exists() for path in stale) and load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 2
    assert all(path.exists() for path in others)  # another command's temporary files are not the resume's to remove


def test_resume_refuses_another_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert _cli("train", "--config", str(_config(tmp_path, 1)), "--out", str(out), "--quiet").returncode == 0
    other = _here(capsys, "train", "--config", str(_config(tmp_path, 1)), "--out", str(out), "--resume", "--quiet",
                          "--set", "lr=0.01")
    assert other.returncode == 1 and f"the run in {out} (its config.json) was made with another model or config " \
        "(lr: then 0.003, now 0.01)\n" in other.stderr  # a file of the run, not a checkpoint
    longer = _here(capsys, "train", "--config", str(_config(tmp_path, 1)), "--out", str(out), "--resume", "--quiet",
                           "--epochs", "3")
    assert longer.returncode == 1 and "(epochs: then 1, now 3); the learning-rate schedule spans a run's epochs, so " \
        "a run cannot be lengthened: train the longer run in another folder" in longer.stderr
    # the run folder records every data option, defaults included, so a changed default cannot
    # change what it means; a finished run is reused for the same config, given in full or not
    saved = json.loads((out / "config.json").read_text())
    assert saved["lr"] == 3e-3  # the refused resume left the folder's config as it was
    assert set(saved["data"]) == set(BEAT_DEFAULTS) and saved["data"]["template_from"] == "all"
    # and every model option, the preset's defaults too (the model_kwargs given were kernels, widths, stem_channels)
    assert set(saved["model_kwargs"]) == model_options("msresnet1d_beat") - {"in_channels", "num_classes",
                                                                            "extra_features", "out_features"}
    assert saved["model_kwargs"]["stem_pool"] is True and saved["model_kwargs"]["kernels"] == [3, 9]
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["config"]["model_kwargs"] == saved["model_kwargs"] and best["code"] == code_version()
    cfg = load_config(_config(tmp_path, 1))
    assert train_or_reuse(cfg, out) == json.loads((out / "metrics.json").read_text())
    saved["data"] = cfg.data  # as run folders were written before: only the options given
    saved["model_kwargs"] = cfg.model_kwargs
    (out / "config.json").write_text(json.dumps(saved))
    train_or_reuse(cfg, out)
    with pytest.raises(ValueError, match="another model or config.*template_from"):
        train_or_reuse(load_config(_config(tmp_path, 1), {"data.template_from": "regular"}), out)
    with pytest.raises(ValueError, match=r"another model or config \(model_kwargs\.stem_pool: then True, now False\)"):
        train_or_reuse(load_config(_config(tmp_path, 1), {"model_kwargs.stem_pool": False}), out)


def test_predict_extension_is_ascii_letters_as_wfdb_requires():
    import argparse
    from msresnet1d.cli import annotation_extension

    assert annotation_extension("pred") == "pred"
    for bad in ("pred2", "prédiction", "", "a.b"):
        with pytest.raises(argparse.ArgumentTypeError, match="ASCII letters only"):
            annotation_extension(bad)


def test_a_bf16_run_reports_the_figures_evaluate_gives(tmp_path):
    # bf16 autocasts the training steps only: validation and the test run in float32, as evaluate and predict
    # run the checkpoint, so that metrics.json is what evaluate reproduces (under autocast, probabilities moved
    # by up to 0.004 and labels flipped)
    from msresnet1d.training.ensemble import ensemble_predict
    from msresnet1d.training.metrics import json_safe
    from msresnet1d.training.run import train

    cfg = load_config(_config(tmp_path, 1), {"bf16": True, "data.val_records": 0})
    result = train(cfg, tmp_path / "run", quiet=True)
    task, y_true, probabilities = ensemble_predict([tmp_path / "run" / "checkpoints" / "best.pt"])
    again = classification_report(y_true, probabilities, task.class_names, task.scored)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test"] == json.loads(json.dumps(json_safe(again)))
    assert result["test"]["macro_auc"] == again["macro_auc"]  # the returned figures too, unrounded


def test_a_run_killed_between_its_two_checkpoints_tests_the_selected_weights(tmp_path, monkeypatch):
    # last.pt is written before best.pt: killed in between, the resume writes best.pt from last.pt
    import msresnet1d.training.engine as engine
    from msresnet1d.training.run import train

    cfg = load_config(_config(tmp_path, 3), {"select_epoch": "last"})
    straight = train(cfg, tmp_path / "straight", quiet=True)
    save = engine.atomic_save

    def killed_at_the_last_best(state, path):  # the final epoch: no later epoch would write best.pt again
        if path.name == "best.pt" and state["epoch"] == 2:
            raise KeyboardInterrupt
        save(state, path)

    monkeypatch.setattr(engine, "atomic_save", killed_at_the_last_best)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run", quiet=True)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert load_checkpoint(checkpoints / "last.pt")["epoch"] == 2 and load_checkpoint(checkpoints / "best.pt")["epoch"] == 1
    monkeypatch.setattr(engine, "atomic_save", save)
    resumed = train(cfg, tmp_path / "run", resume=True, quiet=True)  # nothing left to train: the resume repairs
    assert load_checkpoint(checkpoints / "best.pt")["epoch"] == 2
    assert resumed["best_epoch"] == straight["best_epoch"] == 3
    tested = [json.loads((tmp_path / run / "metrics.json").read_text())["test"] for run in ("run", "straight")]
    assert tested[0] == tested[1]  # the selected (last) epoch's weights, as without the kill
    # a best.pt of another epoch than the history selected is refused, never tested in its place
    last = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    torch.save(last | {"history": last["history"] | {"best_epoch": 0}}, checkpoints / "last.pt")
    shutil.copy(tmp_path / "straight" / "checkpoints" / "best.pt", checkpoints / "best.pt")
    (tmp_path / "run" / "metrics.json").unlink()
    with pytest.raises(TrainingError, match=r"best\.pt holds epoch 3, but the run's history selected epoch 1: the "
                                            "selected weights are lost"):
        train(cfg, tmp_path / "run", resume=True, quiet=True)


def test_resume_checks_the_selected_weights_says_other_code_and_leaves_a_run_finished_meanwhile(
        tmp_path, monkeypatch, caplog):
    import msresnet1d.training.engine as engine
    import msresnet1d.training.run as run_module
    from msresnet1d.training.run import train

    cfg = load_config(_config(tmp_path, 3))
    save = engine.atomic_save

    def killed_after_the_second_epoch(state, path):
        save(state, path)
        if path.name == "last.pt" and state["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(engine, "atomic_save", killed_after_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "lost", quiet=True)
    monkeypatch.setattr(engine, "atomic_save", save)
    shutil.copytree(tmp_path / "lost", tmp_path / "old")
    # best.pt lost (epoch 1 selected, 2 saved last): refused before epoch 3 trains, not after it, at the test
    last = load_checkpoint(tmp_path / "lost" / "checkpoints" / "last.pt")
    torch.save(last | {"history": last["history"] | {"best_epoch": 0}}, tmp_path / "lost" / "checkpoints" / "last.pt")
    for damage in ("missing", "damaged"):
        if damage == "missing":
            (tmp_path / "lost" / "checkpoints" / "best.pt").unlink()
        else:
            (tmp_path / "lost" / "checkpoints" / "best.pt").write_bytes(b"not a checkpoint")
        with pytest.raises(TrainingError, match=r"best\.pt (is missing|is not a file torch\.save wrote).*the run's "
                                                r"history selected epoch 1: the selected weights are lost"):
            train(cfg, tmp_path / "lost", resume=True, quiet=True)
        assert load_checkpoint(tmp_path / "lost" / "checkpoints" / "last.pt")["epoch"] == 1  # nothing trained
    # damaged, but the selected epoch is the one last.pt holds: written again from it (was refused, the run lost)
    torch.save(last | {"history": last["history"] | {"best_epoch": 1}}, tmp_path / "lost" / "checkpoints" / "last.pt")
    trainer_resume = engine.Trainer.resume

    class Repaired(Exception):
        pass

    def resume_and_stop(self, *args):  # the repair alone: best.pt as the resume left it
        trainer_resume(self, *args)
        raise Repaired

    monkeypatch.setattr(engine.Trainer, "resume", resume_and_stop)
    with pytest.raises(Repaired):
        train(cfg, tmp_path / "lost", resume=True, quiet=True)
    repaired = load_checkpoint(tmp_path / "lost" / "checkpoints" / "best.pt")
    assert repaired["epoch"] == 1 and all(torch.equal(repaired["model"][k], last["model"][k]) for k in last["model"])
    monkeypatch.undo()
    # a run of 2 processes resumed in 1: its schedule's length and batches differ (2 -> 1 died, for good)
    last = load_checkpoint(tmp_path / "old" / "checkpoints" / "last.pt")
    assert last["world_size"] == 1
    torch.save(last | {"world_size": 2}, tmp_path / "old" / "checkpoints" / "last.pt")
    monkeypatch.setattr(run_module, "build_task", lambda *a: pytest.fail("the data was loaded first"))
    with pytest.raises(ValueError, match=r"last\.pt: the run trained in 2 process\(es\), this resume has 1: a "
                                         r"step's batch \(2 x batch_size\) and the learning-rate schedule's length "
                                         r"depend on it; resume with 2 \(torchrun's --nproc_per_node x --nnodes\)"):
        train(cfg, tmp_path / "old", resume=True, quiet=True)
    monkeypatch.undo()
    # a last.pt of an older version (no code or processes named, rows without train_accuracy): said, and its log
    # still written
    rows = [{k: v for k, v in row.items() if k != "train_accuracy"} for row in last["history"]["rows"]]
    old = {k: v for k, v in last.items() if k not in ("code", "world_size")}
    old["history"] = last["history"] | {"rows": rows}
    torch.save(old, tmp_path / "old" / "checkpoints" / "last.pt")
    with caplog.at_level("WARNING"):
        train(cfg, tmp_path / "old", resume=True, quiet=True)  # was "dict contains fields not in fieldnames"
    assert "last.pt was written by msresnet1d of a version before checkpoints named theirs, this is " in caplog.text
    logged = _log_rows(tmp_path / "old")
    assert [row["train_accuracy"] == "" for row in logged] == [True, True, False]
    # a resume whose data load another resume outlasted: it finds metrics.json under the lock, and leaves it
    shutil.copytree(tmp_path / "old", tmp_path / "raced")
    metrics = (tmp_path / "raced" / "metrics.json").read_text()
    (tmp_path / "raced" / "metrics.json").unlink()
    build_task = run_module.build_task

    def the_other_resume_finishes(*args):
        task = build_task(*args)
        (tmp_path / "raced" / "metrics.json").write_text(metrics)
        return task

    monkeypatch.setattr(run_module, "build_task", the_other_resume_finishes)
    monkeypatch.setattr(engine.Trainer, "test", lambda self: pytest.fail("the test split scored again"))
    assert train(cfg, tmp_path / "raced", resume=True, quiet=True) == json.loads(metrics)
    monkeypatch.undo()
    # last.pt is read once, before the data load, and read again under the lock only if another resume replaced it
    # meanwhile (it continued the run: the epochs it saved are not lost)
    for folder, replaced in (("once", False), ("replaced", True)):
        shutil.copytree(tmp_path / "old", tmp_path / folder)
        (tmp_path / folder / "metrics.json").unlink()
        last, read = tmp_path / folder / "checkpoints" / "last.pt", []

        def reading(path):
            read.append(Path(path).name)
            return load_checkpoint(path)

        def data_load(*args):
            if replaced:
                engine.atomic_save(load_checkpoint(last), last)
            return build_task(*args)

        monkeypatch.setattr(engine, "load_checkpoint", reading)
        monkeypatch.setattr(run_module, "load_checkpoint", reading)
        monkeypatch.setattr(run_module, "build_task", data_load)
        train(cfg, tmp_path / folder, resume=True, quiet=True)
        assert read.count("last.pt") == 1 + replaced


def _log_rows(run_dir: Path) -> list[dict[str, str]]:
    """log.csv's rows without its timings, which differ from run to run."""
    with open(run_dir / "log.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in ("train_seconds", "train_samples_per_s")}
                for row in csv.DictReader(f)]


def test_a_run_killed_after_its_last_checkpoint_or_while_plotting_ends_whole(tmp_path, monkeypatch):
    # killed after the final epoch's last.pt, before log.csv took that epoch: no epoch is left to add the row, so
    # the resume writes log.csv from the checkpoint's history; killed while plotting: metrics.json is written
    # last, so the run is not taken as finished, and train_or_reuse completes it, plots included
    import msresnet1d.training.engine as engine
    import msresnet1d.training.plots as plots
    from msresnet1d.training.run import train

    cfg = load_config(_config(tmp_path, 2))
    straight, run = tmp_path / "straight", tmp_path / "run"
    train(cfg, straight, quiet=True)
    write_log = engine.Trainer._write_log

    def killed_before_the_last_row(self):
        if len(self.history.rows) == cfg.epochs:
            raise KeyboardInterrupt
        write_log(self)

    monkeypatch.setattr(engine.Trainer, "_write_log", killed_before_the_last_row)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run, quiet=True)
    monkeypatch.setattr(engine.Trainer, "_write_log", write_log)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1 and len(_log_rows(run)) == 1

    def killed_while_plotting(rows, path, tested_epoch):
        (path.parent / f".{path.name}.x.png").write_bytes(b"half a plot")  # as atomic_path leaves one
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "plot_curves", killed_while_plotting)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run, resume=True, quiet=True)
    assert not (run / "metrics.json").exists() and _log_rows(run) == _log_rows(straight)
    monkeypatch.undo()
    result = train_or_reuse(cfg, run)
    assert result == json.loads((run / "metrics.json").read_text())
    assert result["test"] == json.loads((straight / "metrics.json").read_text())["test"]
    assert (run / "curves.png").is_file() and not list(run.glob(".curves.png.*"))
    assert _log_rows(run) == _log_rows(straight)


def test_a_run_started_again_removes_the_temporary_files_a_killed_one_left(tmp_path):
    # killed before its first checkpoint, a run may be started afresh in its folder (no --resume needed): its own
    # half-written files go, another command's do not
    from msresnet1d.training.run import train

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    left = [run / "checkpoints" / ".last.pt.abc.tmp", run / ".config.json.abc.tmp", run / ".log.csv.abc.tmp"]
    for path in left:
        path.write_bytes(b"half")
    # an evaluate --json writing into the folder; an editor's files, named like the run's
    others = [run / ".eval.json.abc.tmp", run / ".config.json.swp", run / ".log.csv.bak", run / ".log.csv.1.csv~"]
    for path in others:
        path.write_bytes(b"half")
    train(load_config(_config(tmp_path, 1)), run, quiet=True)
    assert not any(path.exists() for path in left) and all(path.exists() for path in others)


def _interrupted_after_one_epoch(cfg: TrainConfig, run_dir: Path, monkeypatch) -> None:
    """Train ``cfg`` in ``run_dir`` until a KeyboardInterrupt as the second epoch's checkpoint is
    saved: ``last.pt`` holds the first epoch, as after a kill."""
    import msresnet1d.training.engine as engine
    from msresnet1d.training.run import train

    save = engine.atomic_save

    def killed_after_epoch_1(state, path):
        if state["epoch"] == 1:
            raise KeyboardInterrupt
        save(state, path)

    monkeypatch.setattr(engine, "atomic_save", killed_after_epoch_1)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cfg, run_dir, quiet=True)
    finally:
        monkeypatch.setattr(engine, "atomic_save", save)


def test_train_leaves_the_callers_random_states_threads_and_process_group(tmp_path):
    """A library call: train seeds and sets its threads for its run only, and keeps a process group
    the caller made (it destroyed it before); loading the checkpoint draws no random number."""
    import random

    import torch.distributed as torch_dist
    from msresnet1d.training.ensemble import load_members
    from msresnet1d.training.run import load_trained_model, train

    def draws() -> tuple:
        return random.random(), np.random.rand(), torch.rand(1).item()

    def seed() -> None:
        random.seed(5)
        np.random.seed(5)
        torch.manual_seed(5)

    seed()
    expected = draws()
    torch_dist.init_process_group("gloo", init_method=(tmp_path / "group").as_uri(), rank=0, world_size=1)
    try:
        seed()
        train(load_config(_config(tmp_path, epochs=1)), tmp_path / "run", quiet=True)  # threads = 1
        assert draws() == expected and torch.get_num_threads() == 2 and torch_dist.is_initialized()
    finally:
        torch_dist.destroy_process_group()
    seed()
    load_trained_model(tmp_path / "run" / "checkpoints" / "best.pt")
    load_members([tmp_path / "run" / "checkpoints" / "best.pt"])  # as evaluate and the ensembles load them
    assert draws() == expected


_NEW_TF32 = hasattr(torch.backends.cuda.matmul, "fp32_precision")  # torch >= 2.9 spells TF32 so too


def _cuda_flags() -> tuple:
    """cuDNN's deterministic and benchmark flags, then TF32 in convolutions and matrix products, in
    the spelling of the installed torch (the legacy allow_tf32 cannot be read once the new one is used)."""
    backends = torch.backends
    tf32 = ((backends.cudnn.conv.fp32_precision, backends.cuda.matmul.fp32_precision) if _NEW_TF32
            else (backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32))
    return (backends.cudnn.deterministic, backends.cudnn.benchmark, *tf32)


_DETERMINISTIC = (True, False, *(("ieee", "ieee") if _NEW_TF32 else (False, False)))


@pytest.fixture
def cuda_flags_kept():
    """The process's cuDNN and TF32 flags as they were after the test (it sets them as a caller would)."""
    before = _cuda_flags()
    yield
    backends = torch.backends
    backends.cudnn.deterministic, backends.cudnn.benchmark = before[:2]
    if _NEW_TF32:
        backends.cudnn.conv.fp32_precision, backends.cuda.matmul.fp32_precision = before[2:]
    else:
        backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = before[2:]


@pytest.mark.parametrize("spelling", ["legacy", "new"])
def test_a_run_on_a_gpu_is_deterministic_without_tf32_and_leaves_the_callers_cuda_flags(spelling, cuda_flags_kept):
    # torch.device("cuda") objects and the flags need no GPU; a caller's TF32 set with torch's new spelling made the
    # legacy one that the block read raise ("a mix of the legacy and new APIs")
    from msresnet1d.training.engine import deterministic_cuda

    if spelling == "new" and not _NEW_TF32:
        pytest.skip("this torch has no fp32_precision")
    backends = torch.backends
    for deterministic, benchmark, tf32 in ((False, True, True), (True, False, False)):  # a caller's own settings
        backends.cudnn.deterministic, backends.cudnn.benchmark = deterministic, benchmark
        if spelling == "legacy":
            backends.cudnn.allow_tf32 = backends.cuda.matmul.allow_tf32 = tf32
        else:
            backends.cudnn.conv.fp32_precision = backends.cuda.matmul.fp32_precision = "tf32" if tf32 else "ieee"
        before = _cuda_flags()
        with deterministic_cuda(torch.device("cpu")):
            assert _cuda_flags() == before  # the CPU's run changes nothing
        for device in ("cuda", "cuda:1"):
            with deterministic_cuda(torch.device(device)):
                assert _cuda_flags() == _DETERMINISTIC
            assert _cuda_flags() == before
        with pytest.raises(RuntimeError, match="stopped"):
            with deterministic_cuda(torch.device("cuda")):
                raise RuntimeError("stopped")
        assert _cuda_flags() == before
        if spelling == "legacy":  # the caller's spelling still reads
            assert backends.cudnn.allow_tf32 is tf32 and backends.cuda.matmul.allow_tf32 is tf32


def test_train_runs_a_gpu_run_with_the_cuda_flags_set(monkeypatch, cuda_flags_kept):
    from msresnet1d.training import run

    monkeypatch.setattr(torch.random, "fork_rng", lambda devices: contextlib.nullcontext())  # no GPU to fork
    before = _cuda_flags()
    with run.callers_state_kept(torch.device("cuda:0")):  # the block train runs in
        assert _cuda_flags() == _DETERMINISTIC
    assert _cuda_flags() == before


def test_saved_random_states_give_the_same_draws_again():
    # mid-stream states (numpy's position inside its key block, Python's cached gauss): a state saved without them
    # round-trips to itself yet draws other numbers than the run would have
    import random

    from msresnet1d.training.checkpoint import rng_state, set_rng_state

    np.random.seed(3), random.seed(3), torch.manual_seed(3)
    np.random.random(7), random.gauss(0, 1), torch.rand(5)  # numpy at position 7 of 624, a gauss value cached
    state = rng_state()
    first = (np.random.random(3), random.gauss(0, 1), random.random(), torch.rand(3))
    set_rng_state(state)
    again = (np.random.random(3), random.gauss(0, 1), random.random(), torch.rand(3))
    np.testing.assert_array_equal(first[0], again[0])
    assert first[1:3] == again[1:3] and torch.equal(first[3], again[3])


def test_resume_restores_the_random_states_the_checkpoint_saved(tmp_path, monkeypatch):
    import random

    import msresnet1d.training.engine as engine
    from msresnet1d.training.run import train

    cfg = load_config(_config(tmp_path, 2))
    _interrupted_after_one_epoch(cfg, tmp_path / "run", monkeypatch)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["rng"]
    found = {}

    def states_then_stop(self):  # the states training goes on from, right after the resume
        found.update(torch=torch.get_rng_state(), numpy=np.random.get_state()[1], python=random.getstate()[1])
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.Trainer, "fit", states_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run", resume=True, quiet=True)
    assert torch.equal(found["torch"], saved["torch"])
    np.testing.assert_array_equal(found["numpy"], saved["numpy"]["keys"].numpy())
    assert list(found["python"]) == list(saved["python"][0])


def test_a_resume_builds_its_checked_models_and_reads_its_checkpoints_as_few_times_as_it_needs(tmp_path, monkeypatch):
    # a resume built 10 models on the meta device (each config check resolved both configs, each resolution
    # built twice) and read best.pt 3 times (twice in the resume, once for the test)
    import msresnet1d.training.configured as configured
    from msresnet1d.training.run import train

    cfg = load_config(_config(tmp_path, 2))
    _interrupted_after_one_epoch(cfg, tmp_path / "run", monkeypatch)  # epoch 1 selected: its best.pt is checked
    builds, reads = Counter(), Counter()
    create, load = configured.create_model, torch.load

    def counted_create(*args, **kwargs):
        model = create(*args, **kwargs)
        builds[next(model.parameters()).device.type] += 1
        return model

    def counted_load(path, *args, **kwargs):
        reads[Path(path).name] += 1
        return load(path, *args, **kwargs)

    monkeypatch.setattr(configured, "create_model", counted_create)
    monkeypatch.setattr(torch, "load", counted_load)
    assert train(cfg, tmp_path / "run", resume=True, quiet=True)["best_epoch"] == 2
    # the TOML config resolved (its options learnt, then checked to build the model), then one build in each
    # check of the run's config (config.json before the data load, last.pt's in the resume); the model trained
    assert builds == {"meta": 4, "cpu": 1}
    # last.pt once, before the data load; best.pt checked once by the resume, read once by the test (epoch 2
    # replaced it)
    assert reads == {"last.pt": 1, "best.pt": 2}


def test_resume_refuses_another_database_than_the_run_found(tmp_path, monkeypatch):
    # no data_dir in the config: the database is found (here the embedded sample) and pinned in the checkpoint
    from msresnet1d.training.run import train

    cfg = load_config(_config(tmp_path, 2))
    del cfg.data["data_dir"]
    monkeypatch.delenv("MSRESNET1D_DATA", raising=False)  # the sample is the fallback only without it
    monkeypatch.setattr(locate, "data_home", lambda: tmp_path / "nothing")
    with pytest.warns(UserWarning, match="sample"):
        _interrupted_after_one_epoch(cfg, tmp_path / "run", monkeypatch)
    assert Path(load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["database"]) == SAMPLE
    other = tmp_path / "other" / "mitdb"  # the same records in another folder: another database to the run
    other.mkdir(parents=True)
    for f in SAMPLE.iterdir():
        (other / f.name).symlink_to(f)
    monkeypatch.setenv("MSRESNET1D_DATA", str(tmp_path / "other"))
    with pytest.raises(ValueError, match="trained on the database in .*mitdb-sample, the resume would read .*other"):
        train(cfg, tmp_path / "run", resume=True, quiet=True)


def test_reuse_and_resume_take_the_same_database_spelt_otherwise(tmp_path, monkeypatch):
    # data.data_dir is compared as the folder it names: relative, through a symlink, as the folder
    # holding mitdb/ or as mitdb/ itself, the same database; the same records in another folder, not
    from msresnet1d.training.run import check_same_run, train

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mitdb").symlink_to(SAMPLE)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(_config(tmp_path, 2), {"data.data_dir": "data"})
    spelt = lambda folder: dataclasses.replace(cfg, data={**cfg.data, "data_dir": str(folder)})  # noqa: E731
    _interrupted_after_one_epoch(cfg, tmp_path / "run", monkeypatch)
    for folder in (tmp_path / "data", "data/mitdb", tmp_path / "data" / "mitdb", SAMPLE):
        check_same_run(spelt(folder), tmp_path / "run")
    train(spelt(SAMPLE), tmp_path / "run", resume=True, quiet=True)  # the checkpoint's check agrees
    assert train_or_reuse(spelt("data"), tmp_path / "run")["best_epoch"] == 2  # reused, not trained again
    other = tmp_path / "other"
    other.mkdir()
    for f in SAMPLE.iterdir():
        (other / f.name).symlink_to(f)
    with pytest.raises(ValueError, match="another model or config \\(data.data_dir: then"):
        train_or_reuse(spelt(other), tmp_path / "run")


def test_early_stopping_survives_resume_and_undefined_scores_select_nothing(tmp_path, monkeypatch):
    import msresnet1d.training.engine as engine
    from msresnet1d.training.run import train

    evaluate, score = engine.Trainer.evaluate, {"value": 0.5}

    def constant_validation(self, split):  # the same validation score every epoch: only the first is selected
        report = evaluate(self, split)
        return report | {"macro_f1": score["value"]} if split == "val" else report

    def killed(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.Trainer, "evaluate", constant_validation)
    cfg = load_config(_config(tmp_path, 4), {"early_stopping": 1})
    monkeypatch.setattr(engine.Trainer, "test", killed)  # stopped early, then killed before the test
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run", quiet=True)
    monkeypatch.undo()
    monkeypatch.setattr(engine.Trainer, "evaluate", constant_validation)
    result = train(cfg, tmp_path / "run", resume=True, quiet=True)
    assert result["epochs_run"] == 2 and result["best_epoch"] == 1  # not a third epoch after the resume
    # a validation score undefined at every epoch selects nothing: an error, not a test of unselected weights
    score["value"] = float("nan")
    with pytest.raises(engine.TrainingError, match="no epoch was selected.*last.pt"):
        train(load_config(_config(tmp_path, 1)), tmp_path / "nan", quiet=True)
    # a finished run is reused only under the same selection rule
    with pytest.raises(ValueError, match="select_epoch"):
        train_or_reuse(load_config(_config(tmp_path, 4), {"early_stopping": 0, "select_epoch": "last"}), tmp_path / "run")


def test_the_test_split_is_predicted_once_after_training_and_the_lowest_training_loss_selects_without_validation(
        tmp_path, monkeypatch):
    from msresnet1d.training import tasks
    from msresnet1d.training.run import train

    splits, predict = [], tasks.Task.predict

    def counted(self, model, split, device, adapt_bn=False):
        splits.append(split)
        return predict(self, model, split, device, adapt_bn)

    monkeypatch.setattr(tasks.Task, "predict", counted)
    train(load_config(_config(tmp_path, 2)), tmp_path / "run", quiet=True)
    assert splits == ["val", "val", "test"]  # validation every epoch, the test once at the end
    splits.clear()
    from msresnet1d.training import engine

    epoch_of = engine.Trainer.train_epoch

    def rising_loss(self, epoch):  # the first epoch's loss the lower: the last epoch must not be chosen
        return {**epoch_of(self, epoch), "train_loss": [1.0, 2.0][epoch]}

    monkeypatch.setattr(engine.Trainer, "train_epoch", rising_loss)
    result = train(load_config(_config(tmp_path, 2), {"data.val_records": []}), tmp_path / "no-val", quiet=True)
    assert splits == ["test"]
    with open(tmp_path / "no-val" / "log.csv", newline="") as f:
        assert [float(row["train_loss"]) for row in csv.DictReader(f)] == [1.0, 2.0]
    assert result["best_epoch"] == 1


def test_a_rebuild_that_splits_other_data_is_named():
    from types import SimpleNamespace

    from msresnet1d.training.engine import check_same_splits

    names = [str(r) for r in range(100, 120)]
    task = SimpleNamespace(splits={"database": "/b/mitdb", "train_records": names[1:] + ["999"], "fold": 0})
    saved = {"splits": {"train_records": names, "fold": 0}}
    with pytest.raises(ValueError, match=r"^ckpt: its run's train_records differs in this rebuild of its splits from "
                                         r"/b/mitdb \(20 then, 20 now; in one only: 100, 999\): that is other data"):
        check_same_splits(saved, task, "ckpt")
    task.splits["train_records"] = names[::-1]
    with pytest.raises(ValueError, match=r"\(20 then, 20 now \(the same names in another order\)\)"):
        check_same_splits(saved, task, "ckpt")
    task.splits.update(train_records=names, fold=1)
    with pytest.raises(ValueError, match=r"its run's fold differs .*\(0 then, 1 now\)"):
        check_same_splits(saved, task, "ckpt")
    check_same_splits({"splits": {**saved["splits"], "fold": 1}}, task, "ckpt")  # the same splits, elsewhere: fine
    check_same_splits({}, task, "ckpt")  # a checkpoint from before splits were kept, of a task without test names


def test_a_non_finite_gradient_stops_the_step_that_has_it_under_clipping():
    from msresnet1d.training.engine import train_one_epoch

    class Sqrt(torch.nn.Module):  # d sqrt(g)/dg is inf at 0, times the 0 in front: a NaN gradient, a finite loss
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.g = torch.nn.Linear(3, 2), torch.nn.Parameter(torch.zeros(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x) + 0 * self.g.sqrt()

    model = Sqrt()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    batches = [(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))] * 2
    with pytest.raises(TrainingError, match=r"non-finite gradient norm \(nan\) at batch 1 \(after 0 samples\)"):
        train_one_epoch(model, batches, torch.nn.CrossEntropyLoss(), optimizer, scheduler, grad_clip=1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # that step was not taken


@pytest.mark.parametrize("value, message", [
    (float("nan"), r"weights not finite after the epoch's last step \(\S+; the loss before that step was finite\) "
                   r"at epoch 2; the last good checkpoint is kept"),
    (3e38, r"on the val split: \d+ of \d+ rows of probabilities are not finite .*; the epoch's checkpoints were not "
           r"written"),  # finite weights whose outputs overflow
])
def test_weights_broken_by_an_epochs_last_step_are_caught_before_they_are_saved(tmp_path, monkeypatch, value,
                                                                                   message):
    # the loss is checked before each step, so the last step's update is only seen by the weights
    from msresnet1d.training import engine
    from msresnet1d.training.run import train

    calls, one_epoch = [], engine.train_one_epoch

    def breaks_second(model, *args, **kwargs):
        result = one_epoch(model, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            with torch.no_grad():
                model.fc.weight.fill_(value)
        return result

    monkeypatch.setattr(engine, "train_one_epoch", breaks_second)
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=message):
        train(load_config(_config(tmp_path, 3), {"ema_decay": 0.0}), out, quiet=True)  # validation sees the model
    for name in ("last.pt", "best.pt"):
        ckpt = load_checkpoint(out / "checkpoints" / name)
        assert ckpt["epoch"] == 0 and all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_a_scored_class_absent_from_validation_is_warned_of(tmp_path):
    import warnings

    from msresnet1d.training.run import train

    cfg = load_config(_config(tmp_path, 1), {"data.val_records": ["106"]})  # N and V beats only
    with pytest.warns(UserWarning, match=r"the validation split \([\d,]+ examples\) holds no example of scored "
                                         r"classes S, F, so the epoch is chosen without them \(validation "
                                         r"macro_f1: macro-F1 leaves an absent class out while nothing is predicted "
                                         r"as it, else counts its F1 as 0"):
        train(cfg, tmp_path / "run", quiet=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(dataclasses.replace(cfg, monitor="accuracy"), tmp_path / "acc", quiet=True)  # every class counts
    assert not [w for w in caught if "validation split" in str(w.message)]


def test_a_balanced_sampler_on_top_of_class_weights_is_warned_of(tmp_path):
    from msresnet1d.training.run import train

    cfg = load_config(_config(tmp_path, 1), {"balanced_sampler": True})  # class_weights' default: inverse_sqrt
    with pytest.warns(UserWarning, match=r"class_weights = 'inverse_sqrt' weighs the rare ones up again: the "
                                         r"imbalance is corrected twice"):
        train(cfg, tmp_path / "run", quiet=True)


def test_test_outputs_that_are_not_finite_say_the_checkpoints_are_kept(tmp_path, monkeypatch):
    from msresnet1d.training.run import train
    from msresnet1d.training.tasks import Task

    predict = Task.predict

    def nan_on_test(self, model, split, device, adapt_bn=False):
        y, p = predict(self, model, split, device, adapt_bn)
        if split == "test":
            p[0] = np.nan
        return y, p

    monkeypatch.setattr(Task, "predict", nan_on_test)
    with pytest.raises(TrainingError, match=r"on the test split: 1 of [\d,]+ rows of probabilities are not finite "
                                            r".*; the checkpoints are kept"):
        train(load_config(_config(tmp_path, 1)), tmp_path / "run", quiet=True)
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()


def test_outputs_that_are_not_finite_are_named_not_scored():
    probabilities = np.full((4, 5), 0.2)
    probabilities[2] = np.nan
    with pytest.raises(ValueError, match=r"1 of 4 rows of probabilities are not finite \(the first, row 2\)"):
        classification_report(np.zeros(4, dtype=int), probabilities, list("NSVFQ"), list("NSVF"))


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    result = _cli("train", "--config", str(_config(tmp_path, 2)), "--out", str(out), "--quiet", "--set", "lr=1e30",
                  "--set", "optimizer=\"sgd\"", "--set", "schedule=\"constant\"")
    assert result.returncode == 1
    assert "non-finite loss" in result.stderr and "at epoch 1; no checkpoint was saved" in result.stderr
    assert not (out / "metrics.json").exists() and not (out / "checkpoints" / "last.pt").exists()
    # failing in the second epoch: the first epoch's checkpoint is named, and kept
    from msresnet1d.training import engine
    from msresnet1d.training.run import train

    calls, one_epoch = [], engine.train_one_epoch

    def fails_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise TrainingError("non-finite loss (nan) after 0 samples")
        return one_epoch(*args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", fails_second)
    with pytest.raises(TrainingError, match=re.escape(f"at epoch 2; the last good checkpoint is kept in "
                                                      f"{tmp_path / 'second' / 'checkpoints' / 'last.pt'}")):
        train(load_config(_config(tmp_path, 2)), tmp_path / "second", quiet=True)
    assert load_checkpoint(tmp_path / "second" / "checkpoints" / "last.pt")["epoch"] == 0


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    missing = _cli("train", "--config", str(_config(tmp_path, 1)), "--out", str(tmp_path / "a"), "--quiet",
                   "--data-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "nowhere" in missing.stderr and "Traceback" not in missing.stderr
    unknown = _here(capsys, "train", "--config", str(_config(tmp_path, 1)), "--out", str(tmp_path / "b"), "--quiet",
                            "--model", "resnet9000")
    assert unknown.returncode == 1 and "unknown model 'resnet9000'" in unknown.stderr
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    unwritable = _here(capsys, "train", "--config", str(_config(tmp_path, 1)), "--out", str(blocked / "run"), "--quiet")
    assert unwritable.returncode == 1 and f"cannot be created: {blocked} is a file" in unwritable.stderr


_RANK_ROWS = """
import json, os, sys

import msresnet1d.training.engine as engine
from msresnet1d.cli import main

fit = engine.Trainer.fit


def recorded(self):  # each rank's own log rows, which rank 0 alone writes to log.csv
    history = fit(self)
    with open(os.path.join(os.environ["ROWS_DIR"], f"rank{self.dist.rank}.json"), "w") as f:
        json.dump([{k: v for k, v in row.items() if k.startswith("val_")} for row in history.rows], f)
    return history


engine.Trainer.fit = recorded
sys.exit(main())
"""


def test_torchrun_two_processes_save_once(tmp_path, monkeypatch):
    monkeypatch.delenv("MSRESNET1D_DATA", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = locate.find_database("mitdb")
    if found != locate.embedded_sample("mitdb"):  # the test counts the sample's warning (rank 0's alone)
        pytest.skip(f"a full MIT-BIH at {found} (datasets/ or the download folder) is found before the embedded sample")
    out = tmp_path / "ddp"
    config = _config(tmp_path, 2)
    config.write_text(re.sub(r"(?m)^data_dir = .*\n", "", config.read_text()))  # the embedded sample, with a warning
    (tmp_path / "rank_rows.py").write_text(_RANK_ROWS)
    env = {**{k: v for k, v in os.environ.items() if k != "MSRESNET1D_DATA"},  # set, it would rule the sample out
           "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "MSRESNET1D_CACHE": str(tmp_path / "cache"),
           "ROWS_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(tmp_path / "rank_rows.py"), "train", "--config", str(config), "--out", str(out), "--set", "ema_decay=0.9"],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # every rank validates rank 0's model (BatchNorm statistics and weight average included): one score, one choice
    rows = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert len(rows[0]) == 2 and rows[0] == rows[1]
    # only rank 0 reports, and warns (both ranks read the same data)
    assert result.stdout.count("run folder:") == 1 and result.stdout.count("wall time:") == 1
    assert result.stderr.count("warning: database 'mitdb' not found") == 1, result.stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert len((out / "log.csv").read_text().splitlines()) == 3
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 1 and not any(k.startswith("module.") for k in ckpt["model"])


def test_a_model_trained_on_another_annotator_reads_it_and_predict_reads_it_by_default(tmp_path, capsys):
    # a database whose reference annotations are <record>.ann: [data] annotator, and predict's default follows it
    db = tmp_path / "ann"
    db.mkdir()
    for record in ("100", "101", "105", "106", "118"):
        for ext in ("hea", "dat"):
            shutil.copy(SAMPLE / f"{record}.{ext}", db)
        shutil.copy(SAMPLE / f"{record}.atr", db / f"{record}.ann")
    config = tmp_path / "ann.toml"
    config.write_text(TINY.format(epochs=1).replace(str(SAMPLE), str(db)).replace(
        'train_records = ["101", "106", "118", "119", "208", "209"]\nval_records = ["106", "209"]\n'
        'test_records = ["100", "105", "232", "233"]', 'train_records = ["101", "106", "118"]\nval_records = ["106"]\n'
                                                      'test_records = ["100", "105"]\nannotator = "ann"'))
    out = tmp_path / "run"
    trained = _cli("train", "--config", str(config), "--out", str(out), "--quiet", "--threads", "1")
    assert trained.returncode == 0, trained.stderr
    best = out / "checkpoints" / "best.pt"
    assert load_checkpoint(best)["config"]["data"]["annotator"] == "ann"
    labelled = _here(capsys, "predict", str(best), str(db / "100"), "--out-dir", str(tmp_path / "labels"),
                     "--threads", "1")
    assert labelled.returncode == 0, labelled.stderr
    rows = (tmp_path / "labels" / "100.pred.csv").read_text().splitlines()
    from msresnet1d.data.aami import BEAT_SYMBOLS
    from msresnet1d.data.records import read_annotations

    beats = np.isin(read_annotations(db / "100", "ann").symbol, list(BEAT_SYMBOLS)).sum()
    assert len(rows) - 1 == beats  # a row a beat of 100.ann
    refused = _here(capsys, "predict", str(best), str(db / "100"), "--out-dir", str(tmp_path / "other"),
                    "--annotator", "atr", "--threads", "1")
    assert refused.returncode == 1 and "file 100.atr is missing" in refused.stderr


def test_a_two_lead_checkpoint_loads_as_a_model_and_predicts_records_whose_leads_are_named_otherwise(tmp_path, capsys):
    from msresnet1d.training.checkpoint import inference_state
    from msresnet1d.training.run import load_trained_model
    from msresnet1d.training.tasks import build_task, model_inputs, task_classes

    out = tmp_path / "run"
    two_leads = ["--set", 'data.leads=["MLII", "V1|V5"]']  # V1 in most records, V5 in 100
    trained = _cli("train", "--config", str(_config(tmp_path, 1)), "--out", str(out), "--quiet", *two_leads)
    assert trained.returncode == 0, trained.stderr
    best = out / "checkpoints" / "best.pt"
    ckpt = load_checkpoint(best)
    cfg = TrainConfig.from_dict(ckpt["config"])
    task = build_task(cfg)
    assert model_inputs(cfg) == (task.in_channels, task.extra_features) == (4, 8)  # 2 leads + 2 templates, rr = true
    assert list(task_classes(cfg.task)) == task.class_names
    # the run says which of the alternatives each record gave, as its header names them
    import wfdb
    given = json.loads((out / "metrics.json").read_text())["splits"]["leads"]
    records = task.splits["train_records"] + task.splits["val_records"] + task.splits["test_records"]
    assert sorted(given) == sorted(records) and given["100"] == ["MLII", "V5"]
    for record, leads in given.items():
        names = wfdb.rdheader(str(SAMPLE / record)).sig_name
        assert leads == ["MLII", "V1" if "V1" in names else "V5"]
    model = load_trained_model(best)
    assert not model.training and model.num_classes == 5
    assert all(torch.equal(v, inference_state(ckpt)[k]) for k, v in model.state_dict().items())
    # a recording whose leads are named otherwise: --leads says which of its leads stand for MLII and V1|V5
    renamed = tmp_path / "device"
    renamed.mkdir()
    for ext in ("dat", "atr"):
        shutil.copy(SAMPLE / f"100.{ext}", renamed / f"100.{ext}")
    header = (SAMPLE / "100.hea").read_text().replace(" MLII\n", " II\n").replace(" V5\n", " chest\n")
    (renamed / "100.hea").write_text(header)
    refused = _here(capsys, "predict", str(best), str(renamed / "100"), "--out-dir", str(tmp_path / "a"))
    assert refused.returncode == 1
    assert "no lead 'MLII', 'V1|V5' (leads: II, chest); name the record's leads that stand for MLII, V1|V5 with --leads" \
        in refused.stderr
    for folder, record, extra in ((tmp_path / "a", renamed / "100", ["--leads", "II", "chest"]),
                                  (tmp_path / "b", SAMPLE / "100", [])):
        result = _here(capsys, "predict", str(best), str(record), "--out-dir", str(folder), *extra)
        assert result.returncode == 0, result.stderr
        assert f"beats labelled from {', '.join(extra[1:] or ['MLII', 'V5'])} (" in result.stdout
    assert (tmp_path / "a" / "100.pred.csv").read_text() == (tmp_path / "b" / "100.pred.csv").read_text()
    only_one = _here(capsys, "evaluate", str(best), "--data-dir", str(renamed))  # it needs the training records too
    assert only_one.returncode == 1 and "101.hea is missing; the folder holds 1 other record(s), e.g. 100 (another database, or a partial copy?) " \
        "(evaluate rebuilds the run's splits" in only_one.stderr
    wrong_count = _here(capsys, "predict", str(best), str(renamed / "100"), "--leads", "II")
    assert wrong_count.returncode == 1 and "leads (--leads) names 1 lead(s) (II); the model reads 2: MLII, V1|V5" in wrong_count.stderr
    # weights that do not fit the model the config builds: one line naming the file, for evaluate and predict
    torch.save({**ckpt, "model": {k: v for k, v in ckpt["model"].items() if not k.startswith("fc.")}},
               tmp_path / "edited.pt")
    for command in (["evaluate", str(tmp_path / "edited.pt")],
                    ["predict", str(tmp_path / "edited.pt"), str(SAMPLE / "100"), "--out-dir", str(tmp_path / "c")]):
        result = _here(capsys, *command)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "its weights do not fit the model its config builds ('msresnet1d_beat'): " in result.stderr
        assert 'Missing key(s) in state_dict: "fc.weight", "fc.bias"' in result.stderr
        if command[0] == "evaluate":  # evaluate takes several checkpoints: the message names the one at fault
            assert f"checkpoint {tmp_path / 'edited.pt'}: its weights" in result.stderr
    # a config that builds a model far larger than its weights (an edited file): refused before any allocation, where
    # widths of 300,000 asked for a terabyte (a traceback) or, smaller, took the machine's memory
    from msresnet1d.training.run import checkpoint_model

    huge = {**ckpt, "config": {**ckpt["config"], "model_kwargs": {**ckpt["config"]["model_kwargs"],
                                                                   "widths": [300_000, 16, 16]}}}
    with pytest.raises(ValueError, match=r"^the checkpoint: its weights do not fit the model its config builds "
                                         r"\('msresnet1d_beat'\): .*size mismatch"):
        checkpoint_model(huge)
    torch.save(huge, tmp_path / "huge.pt")
    result = _here(capsys, "evaluate", str(tmp_path / "huge.pt"))
    assert result.returncode == 1 and "Traceback" not in result.stderr and "size mismatch" in result.stderr


@pytest.mark.parametrize("template", [False, True])
def test_predict_writes_csv_and_wfdb_annotations_that_rdann_reads(tmp_path, template, capsys):
    import wfdb

    from msresnet1d.data import read_annotations
    from msresnet1d.data.aami import BEAT_SYMBOLS

    out = tmp_path / "run"
    # the template model (median of the regular beats) also reads only the dimensionless RR features
    options = ["--set", f"data.template={str(template).lower()}"]
    if template:
        options += ["--set", 'data.rr=["prev_over_local", "next_over_local", "prev_over_record", "next_over_prev"]',
                    "--set", "data.template_from=regular"]
    trained = _cli("train", "--config", str(_config(tmp_path, 1)), "--out", str(out), "--quiet", *options)
    assert trained.returncode == 0, trained.stderr
    assert json.loads((out / "config.json").read_text())["data"]["template"] is template
    labels = tmp_path / "labels"
    result = _here(capsys, "predict", str(out / "checkpoints" / "best.pt"), str(SAMPLE / "100"), "--out-dir",
                   str(labels))
    assert result.returncode == 0, result.stderr
    ann = wfdb.rdann(str(labels / "100"), "pred")
    reference = read_annotations(SAMPLE / "100", "atr")
    beats = reference.sample[np.isin(reference.symbol, list(BEAT_SYMBOLS))]
    assert np.array_equal(ann.sample, beats)
    assert set(ann.symbol) <= {"N", "S", "V", "F", "Q"}
    rows = (labels / "100.pred.csv").read_text().splitlines()
    assert rows[0].startswith("sample,time_s,label,p_N")
    assert [r.split(",")[2] for r in rows[1:]] == ann.symbol
    assert ann.fs == 360
    # the same probabilities as evaluate's for the record's beats: RR features and template as in training
    from msresnet1d.training.ensemble import member_predictions

    task, _, evaluated = member_predictions([out / "checkpoints" / "best.pt"], "test")
    in_100 = np.asarray(task.groups["test"]) == "100"
    predicted = np.loadtxt(labels / "100.pred.csv", delimiter=",", skiprows=1, usecols=range(3, 8))
    np.testing.assert_allclose(predicted, evaluated[0][in_100], atol=1e-4)  # the CSV's 4 decimals
    # --adapt-bn: BatchNorm statistics of the record's own inputs, as evaluate --adapt-bn re-estimates them
    assert _here(capsys, "predict", str(out / "checkpoints" / "best.pt"), str(SAMPLE / "100"), "--out-dir",
                         str(tmp_path / "adabn"), "--adapt-bn").returncode == 0
    _, _, adapted = member_predictions([out / "checkpoints" / "best.pt"], "test", adapt_bn=True)
    on_record = np.loadtxt(tmp_path / "adabn" / "100.pred.csv", delimiter=",", skiprows=1, usecols=range(3, 8))
    np.testing.assert_allclose(on_record, adapted[0][in_100], atol=2e-4)
    assert not np.allclose(on_record, predicted, atol=1e-3)
    if not template:  # a checkpoint whose config says tta = "flip": the mean of the model on x and on -x
        best = load_checkpoint(out / "checkpoints" / "best.pt")
        negated = {**best, "model": {**best["model"], "stem.0.weight": -best["model"]["stem.0.weight"]}}
        torch.save({**best, "config": {**best["config"], "tta": "flip"}}, tmp_path / "flip.pt")
        torch.save(negated, tmp_path / "negated.pt")
        probabilities = {}
        for name in ("flip", "negated"):
            assert _here(capsys, "predict", str(tmp_path / f"{name}.pt"), str(SAMPLE / "100"), "--out-dir",
                                 str(tmp_path / name)).returncode == 0
            probabilities[name] = np.loadtxt(tmp_path / name / "100.pred.csv", delimiter=",", skiprows=1,
                                             usecols=range(3, 8))
        plain = np.loadtxt(labels / "100.pred.csv", delimiter=",", skiprows=1, usecols=range(3, 8))
        np.testing.assert_allclose(probabilities["flip"], (plain + probabilities["negated"]) / 2, atol=2e-4)
        assert not np.allclose(plain, probabilities["negated"], atol=1e-2)
    not_ecg = _here(capsys, "predict", str(out / "checkpoints" / "best.pt"), str(tmp_path / "nope"))
    assert not_ecg.returncode == 1 and "nope" in not_ecg.stderr
    digit = _here(capsys, "predict", str(out / "checkpoints" / "best.pt"), str(SAMPLE / "100"), "--out-dir",
                          str(tmp_path / "digit"), "--extension", "pred2")
    assert digit.returncode == 2 and "ASCII letters only" in digit.stderr and not (tmp_path / "digit").exists()
    if not template:  # a model of spectrograms is refused up front, naming the option
        spec = {**best, "config": {**best["config"], "data": {**best["config"]["data"], "representation": "spectrogram"}}}
        torch.save(spec, tmp_path / "spec.pt")
        refused = _here(capsys, "predict", str(tmp_path / "spec.pt"), str(SAMPLE / "100"), "--out-dir",
                        str(tmp_path / "s"))
        assert refused.returncode == 1 and "data.representation = 'spectrogram'" in refused.stderr


def test_beat_task_validates_on_its_held_out_training_records_and_standardises_rr_on_the_others():
    # validation: the val records' beats (never the test's), left out of training; RR statistics of the rest only
    from msresnet1d.data.beats import load_beats
    from msresnet1d.data.rr import rr_columns
    from msresnet1d.training.tasks import build_task

    fit_records, val_records = ["101", "118"], ["106"]
    task = build_task(TrainConfig(data={"data_dir": str(SAMPLE), "train_records": fit_records + val_records,
                                        "val_records": val_records, "test_records": ["100"], "cache": False}))
    fit, held = (load_beats(r, db_dir=SAMPLE, cache=False) for r in (fit_records, val_records))
    assert task.splits["train_records"] == fit_records
    np.testing.assert_array_equal(task.train_labels, fit.y)

    class Uniform(torch.nn.Module):
        def forward(self, x, *extra):
            return torch.zeros(len(x), 5)

    y_val, _ = task.predict(Uniform(), "val", torch.device("cpu"))
    np.testing.assert_array_equal(y_val, held.y)
    columns = rr_columns(True)
    np.testing.assert_allclose(task.state["rr_mean"].numpy(), fit.rr[:, columns].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(task.state["rr_std"].numpy(), fit.rr[:, columns].std(axis=0) + 1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match=r"^train and test records overlap: \['101'\]"):  # a test record trained on
        build_task(TrainConfig(data={"data_dir": str(SAMPLE), "train_records": fit_records, "test_records": ["101"]}))
    with pytest.raises(ValueError, match=r"val_records \['100'\] are not training records"):
        build_task(TrainConfig(data={"data_dir": str(SAMPLE), "train_records": fit_records, "val_records": ["100"],
                                     "test_records": ["100"], "cache": False}))


def test_main_job_defaults_build_on_the_embedded_sample():
    from msresnet1d.training.tasks import build_task

    task = build_task(TrainConfig(data={"data_dir": str(SAMPLE)}))
    assert len(task.splits["val_records"]) == 4 and task.has_validation
    assert not set(task.splits["val_records"]) & set(task.splits["test_records"])
    assert task.splits["train_beats"]["S"] > 0 and task.splits["train_beats"]["V"] > 0
    balanced = build_task(TrainConfig(data={"data_dir": str(SAMPLE)}, balanced_sampler=True))
    weights, y = balanced.train.sample_weights.numpy(), balanced.train_labels
    present = [c for c in range(4) if (y == c).any()]  # N, S, V, F drawn equally; Q at its natural share
    assert [weights[y == c].sum() for c in present] == pytest.approx([(1 - (y == 4).mean()) / len(present)] * len(present))


@pytest.mark.parametrize("representation", ["signal", "spectrogram"])
def test_beat_augmentation_changes_training_batches_only(representation):
    from msresnet1d.training.tasks import build_task

    data = {"data_dir": str(SAMPLE), "train_records": ["101", "106", "118"], "val_records": ["106"],
            "test_records": ["100"], "representation": representation}
    plain = build_task(TrainConfig(data=data, seed=0))
    augmented = build_task(TrainConfig(data={**data, "scale": 0.1, "noise_std": 0.05, "shift": 0.02}, seed=0))
    first = [next(iter(task.train)) for task in (plain, augmented)]
    assert first[0][0].shape == first[1][0].shape and torch.equal(first[0][-1], first[1][-1])  # same beats
    assert not torch.allclose(first[0][0], first[1][0])

    class Inputs(torch.nn.Module):  # "logits": the first inputs the predictor passes
        def forward(self, x, extra=None):
            return x.flatten(1)[:, :16]

    for split in ("val", "test"):  # evaluation sees the windows as they are
        for a, b in zip(plain.predict(Inputs(), split, torch.device("cpu")),
                        augmented.predict(Inputs(), split, torch.device("cpu"))):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"^config: \[data\] shift must be shorter than the window \(window = "
                                         r"\[-0\.25, 0\.45\]: 0\.7 s\), got 1\.0$"):  # before the data are read
        build_task(TrainConfig(data={**data, "shift": 1.0}))
    with pytest.raises(ValueError, match=r"shift=0.699 s \(126 samples at 180 Hz\) must be >= 0 and shorter than "
                                         r"the window \(126 samples\)"):  # shorter in seconds, not once rounded
        build_task(TrainConfig(data={**data, "shift": 0.699}))


@pytest.mark.parametrize("path", sorted((REPO / "experiments" / "configs").glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_config_loads_and_builds_its_model(path):
    from msresnet1d.data.rr import rr_columns
    from msresnet1d.training.run import create_configured_model

    cfg = load_config(path)  # unknown keys and bad values are errors
    beats = cfg.task == "beats"
    channels = 2 if beats and cfg.data.get("template", True) else 1
    extra = len(rr_columns(cfg.data.get("rr", True))) if beats else 0
    classes = {"beats": 5, "rhythm": 4, "fashion_mnist": 10}[cfg.task]
    model = create_configured_model(cfg, channels, classes, extra)  # a registered model that takes the model_kwargs
    assert model.dims == (2 if cfg.task == "fashion_mnist" else 1)


def test_train_without_config_runs_the_main_job_file(tmp_path, monkeypatch):
    from msresnet1d import arguments, cli

    assert cli._train_config_path(None) == REPO / "experiments" / "configs" / "mitdb_beats.toml"
    assert cli._train_config_path("fashion_mnist_28").name == "fashion_mnist_28.toml"
    for installed in (tmp_path, None):  # an installed wheel: no experiments/configs (was: the built-in defaults
        monkeypatch.setattr(arguments, "CONFIG_DIR", installed)  # trained, in a folder named as the main job)
        with pytest.raises(SystemExit, match=r"^error: msresnet1d train without --config trains the main job, whose "
                                             r"config experiments/configs/mitdb_beats\.toml is in the repository"):
            cli._train_config_path(None)
    with pytest.raises(SystemExit, match=r"config 'mitdb_beats' not found: no such file, and the configs named by "
                                         r"name are those of the repository's experiments/configs/, which an installed "
                                         r"package does not ship"):
        cli._train_config_path("mitdb_beats")
    assert cli._train_config_path(str(REPO / "experiments" / "configs" / "mitdb_beats.toml")).is_file()  # a path


def test_per_record_batchnorm_adaptation_predicts_each_record_from_its_own_beats(tmp_path):

    from msresnet1d.training.run import build_model
    from msresnet1d.training.tasks import build_task

    cfg = load_config(_config(tmp_path))
    task = build_task(cfg)
    model = build_model(cfg, task)
    with torch.no_grad():  # BatchNorm statistics unlike the records' (a model trained elsewhere)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 4)
    device = torch.device("cpu")
    y, plain = task.predict(model, "test", device)
    y_adapted, adapted = task.predict(model, "test", device, adapt_bn=True)
    assert np.array_equal(y, y_adapted) and adapted.shape == plain.shape
    assert np.allclose(adapted.sum(axis=1), 1, atol=1e-5) and not np.allclose(adapted, plain, atol=1e-3)
    # each record is predicted as if it were the only test record: its statistics are its own beats'
    for record in ("105", "232"):
        alone = build_task(load_config(_config(tmp_path), {"data.test_records": [record]}))
        np.testing.assert_allclose(alone.predict(model, "test", device, adapt_bn=True)[1],
                                   adapted[task.groups["test"] == record], rtol=1e-5, atol=1e-6)
    assert np.array_equal(task.predict(model, "test", device)[1], plain)  # the model itself is left as it was
    with pytest.raises(ValueError, match="needs several examples of each record .*'test' split has one example a record or none"):
        dataclasses.replace(task, groups={}).predict(model, "test", device, adapt_bn=True)


def test_select_epoch_last_keeps_and_tests_the_final_weights(tmp_path):
    cfg = load_config(_config(tmp_path, epochs=3), {"select_epoch": "last"})
    result = train_or_reuse(cfg, tmp_path / "run", quiet=True)
    assert result["best_epoch"] == result["epochs_run"] == 3 and result["select_epoch"] == "last"
    best, last = (load_checkpoint(tmp_path / "run" / "checkpoints" / f"{name}.pt") for name in ("best", "last"))
    assert best["model"].keys() == last["model"].keys()
    assert all(torch.equal(best["model"][k], v) for k, v in last["model"].items())
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(rows) == 4 and "val_macro_f1" in rows[0]  # validation still logged every epoch
    assert result["best_val_score"] == pytest.approx(float(rows[-1].split(",")[rows[0].split(",").index("val_macro_f1")]))
    with pytest.raises(ValueError, match="early_stopping=2 stops on the validation monitor"):
        TrainConfig(select_epoch="last", early_stopping=2)
    with pytest.raises(ValueError, match="select_epoch must be one of"):
        TrainConfig(select_epoch="first")


def test_info_prints_the_models_table_and_the_datasets(capsys):
    from msresnet1d.models import list_models

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "min. input" in out and "datasets:" in out and "mitdb" in out
    printed = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = re.findall(r"^\| `(\w+)` \| ([12])D \| (\d+) \| ([\d,]+) \| ([\d,.]+)(?: at 224x224)? \| (\d+) \|$",
                       readme, re.M)
    assert len(table) == 10 and {row[0] for row in table} == {name for name in printed if name in list_models()}
    for name, *cells in table:  # the README's Models table is info's output
        assert printed[name][1:] == cells, name


def test_a_config_compares_equal_to_itself_read_back_from_json():
    from msresnet1d.training.checkpoint import check_compatible

    made = {"config": {"model_kwargs": {"widths": (8, 16), "kernels": [(3, 5)]}, "epochs": 2}}  # from the Python API
    check_compatible(made, {"model_kwargs": {"widths": [8, 16], "kernels": [[3, 5]]}, "epochs": 2}, "x.pt",
                     ("model_kwargs", "epochs"))
    with pytest.raises(ValueError, match=r"model_kwargs.widths: checkpoint \(8, 16\), now \[8, 32\]"):
        check_compatible(made, {"model_kwargs": {"widths": [8, 32], "kernels": [[3, 5]]}}, "x.pt", ("model_kwargs",))


def test_fashion_mnist_run_saves_the_pixel_statistics_a_loaded_model_needs(fashion_mnist_dir, tmp_path, capsys):
    """257 training images in batches of 256: a last batch of one image, which BatchNorm cannot train on at
    ResNet-18's 1x1 last stage, is left out; the checkpoint's pixel statistics reproduce the run's test figures."""
    from msresnet1d.data.fashion_mnist import load_fashion_mnist, pixel_mean_std
    from msresnet1d.training.run import load_trained_model

    out = tmp_path / "fashion"
    args = ["train", "--config", "fashion_mnist_28", "--out", str(out), "--quiet", "--epochs", "1",
            "--data-dir", str(fashion_mnist_dir), "--set", "data.val_size=500", "--set", "data.train_size=257",
            "--set", "model_kwargs.widths=[4, 4, 4, 4]",
            "--set", "model_kwargs.stem_channels=4", "--set", "channels_last=false"]
    assert main(args) == 0
    ckpt = load_checkpoint(out / "checkpoints" / "best.pt")
    images, _ = load_fashion_mnist(fashion_mnist_dir, "train")
    order = torch.randperm(60_000, generator=torch.Generator().manual_seed(0))
    mean, std = pixel_mean_std(images[order[500:757]])  # the first 257 images after the 500 held out
    assert ckpt["task_state"]["pixel_mean"].item() == mean and ckpt["task_state"]["pixel_std"].item() == std
    test_images, test_labels = load_fashion_mnist(fashion_mnist_dir, "test")
    x = ((test_images.float() / 255 - ckpt["task_state"]["pixel_mean"]) / ckpt["task_state"]["pixel_std"]).float()
    with torch.no_grad():
        predicted = load_trained_model(out / "checkpoints" / "best.pt")(x[:, None]).argmax(dim=1)
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["splits"]["train_images"], metrics["splits"]["val_images"]) == (257, 500)
    assert (predicted == test_labels).float().mean().item() == pytest.approx(metrics["test"]["accuracy"], abs=1e-4)
    # evaluate without the images: the hint is about images (predict labels ECG records only)
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    # batches of one image cannot train this model at all: refused, saying why
    assert main([*args[:4], str(tmp_path / "ones"), *args[5:], "--batch-size", "1"]) == 1
    assert "batch_size=1 with 257 training example(s) per process: BatchNorm needs 2 or more values per channel" \
        in capsys.readouterr().err
    assert main(["evaluate", str(out / "checkpoints" / "best.pt"), "--data-dir", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "Fashion-MNIST train split not found" in err and "training images too" in err and "predict" not in err
    # an ensemble with a model of another seed (its own split: pixel statistics ~1e-4 apart) is evaluated;
    # one trained on other images (statistics far apart) is refused
    best = out / "checkpoints" / "best.pt"
    for name, shift in (("seed1", 1e-4), ("other", 0.05)):
        saved = {**ckpt, "task_state": {**ckpt["task_state"], "pixel_mean": ckpt["task_state"]["pixel_mean"] + shift}}
        torch.save(saved, tmp_path / f"{name}.pt")
    assert main(["evaluate", str(best), str(tmp_path / "seed1.pt"), "--data-dir", str(fashion_mnist_dir)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(best), str(tmp_path / "other.pt"), "--data-dir", str(fashion_mnist_dir)]) == 1
    assert "its pixel_mean" in capsys.readouterr().err
    # runs keep their data folder as an absolute path; a run from before, which kept it as typed, is the same data
    assert ckpt["config"]["data"]["data_dir"] == os.path.abspath(fashion_mnist_dir)
    typed = os.path.relpath(fashion_mnist_dir)
    old = {**ckpt, "config": {**ckpt["config"], "data": {**ckpt["config"]["data"], "data_dir": typed}}}
    torch.save(old, tmp_path / "old.pt")
    assert main(["evaluate", str(best), str(tmp_path / "old.pt")]) == 0


def _weighted_mean_on_rank(rank: int, port: int, results) -> None:
    import torch.distributed as torch_dist

    from msresnet1d.training.distributed import DistContext

    torch_dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:  # rank 0: loss 1.0 over 30 samples, rank 1: 4.0 over 10
        results[rank] = DistContext(rank, 2).weighted_mean([1.0, 4.0][rank], [30, 10][rank])
    finally:
        torch_dist.destroy_process_group()


def test_ranks_agree_on_the_training_loss_that_selects_the_epoch_without_validation():
    """Without validation the training loss chooses the epoch: every rank must see the same one, the
    mean over all shards (one rank choosing another epoch, or stopping early alone, hangs the other)."""
    import socket

    import torch.multiprocessing as mp

    from msresnet1d.training.distributed import DistContext

    assert DistContext().weighted_mean(2.5, 7) == 2.5  # one process: its own
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_weighted_mean_on_rank, args=(port, results), nprocs=2, join=True)
    assert results[0] == results[1] == pytest.approx((1.0 * 30 + 4.0 * 10) / 40)


def test_asking_for_a_split_the_run_did_not_hold_out_says_why():
    from msresnet1d.training.tasks import Task

    task = Task(None, np.zeros(0), ["N"], ["N"], 1, 100, 0, {"test": None}, {}, "test")
    with pytest.raises(ValueError, match=re.escape("this task has no 'val' split (has ['test']): its run held out no "
                                                   "validation data ([data] val_records, val_fraction or val_size 0)")):
        task.predict(None, "val", torch.device("cpu"))


def test_curves_show_the_training_accuracy_beside_the_validation_metrics(tmp_path, drawn):
    from msresnet1d.training.plots import plot_curves

    rows = [{"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.5 + e / 10, "val_accuracy": 0.4 + e / 10}
            for e in (1, 2, 3)]
    plot_curves(rows, tmp_path / "curves.png", tested_epoch=2)
    lines = {line.get_label(): line for line in drawn["curves.png"].axes[1].get_lines()}
    # d2l's train acc, dashed, then the validation figures, then the epoch whose weights were tested
    assert list(lines) == ["train accuracy", "val accuracy", "tested epoch"]
    assert list(lines["train accuracy"].get_ydata()) == [0.6, 0.7, 0.8]
    assert lines["train accuracy"].get_linestyle() == "--"
    assert list(lines["tested epoch"].get_xdata()) == [2, 2]
    plot_curves(rows[:1], tmp_path / "one.png", tested_epoch=1)
    for name in ("curves.png", "one.png"):  # whole epochs on the axis, not 0.945-1.065 for a one-epoch run
        for ax in drawn[name].axes:
            assert all(float(tick).is_integer() for tick in ax.get_xticks())
    plot_curves([{k: v for k, v in row.items() if k != "train_accuracy"} for row in rows], tmp_path / "old.png")
    assert [line.get_label() for line in drawn["old.png"].axes[1].get_lines()] == ["val accuracy"]  # an older log
    rhythm = [{**row, "val_macro_f1": 0.3, "val_cinc_score": 0.3} for row in rows]  # the same mean F1 of N, A, O
    plot_curves(rhythm, tmp_path / "rhythm.png")
    assert [line.get_label() for line in drawn["rhythm.png"].axes[1].get_lines()][1:] == ["val accuracy",
                                                                                       "val cinc score"]


def test_confusion_plots_show_shares_supports_and_absent_classes(tmp_path, drawn):
    from msresnet1d.training.plots import plot_confusion

    cm = np.array([[90, 10, 0], [3, 1, 0], [0, 0, 0]])
    plot_confusion(cm, ["N", "S", "Q"], tmp_path / "cm.png", title="a " * 60)
    ax = drawn["cm.png"].axes[0]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["N (n=100)", "S (n=4)", "Q (n=0)"]
    texts = [t.get_text() for t in ax.texts]
    assert texts[:2] == ["90\n90%", "10\n10%"] and texts[-1] == "0"  # no share of an absent class
    assert len(ax.patches) == 1 and ax.patches[0].get_hatch() == "//"  # its row hatched
    assert max(map(len, ax.get_title().splitlines())) <= 50  # a long title wrapped


def test_without_a_terminal_a_long_epoch_prints_progress_lines(tmp_path, monkeypatch, capsys):
    from msresnet1d.training import engine

    monkeypatch.setattr(engine, "PROGRESS_LINE_S", 0.0)  # a line after every batch (capsys is no terminal: no bar)
    assert main(["train", "--config", str(_config(tmp_path, 1)), "--out", str(tmp_path / "run")]) == 0
    lines = re.findall(r"^epoch 1/1: batch (\d+)/(\d+), loss \d+\.\d{4}, \d+ samples/s, \d+\.\d min$",
                       capsys.readouterr().out, flags=re.MULTILINE)
    assert [int(step) for step, _ in lines] == list(range(1, len(lines) + 1)) and len(lines) == int(lines[0][1]) > 1
    assert main(["train", "--config", str(_config(tmp_path, 1)), "--out", str(tmp_path / "quiet"), "--quiet"]) == 0
    assert "batch 1/" not in capsys.readouterr().out


def test_a_scored_class_without_training_examples_warns_naming_it_and_the_records(tmp_path):
    from msresnet1d.training.run import warn_absent_classes
    from msresnet1d.training.tasks import build_task

    few = build_task(load_config(None, {"data.data_dir": str(SAMPLE), "data.val_records": 0,
                                        "data.train_records": ["101", "118"]}))
    assert few.splits["train_beats"]["F"] == 0 < min(few.splits["train_beats"][c] for c in "NSV")
    with pytest.warns(UserWarning, match=r"^class F: no example in the training records 101, 118 \(\d+ examples\): "
                                         r"the model cannot learn it, so its test Se and F1 will be 0"):
        warn_absent_classes(few)
    few.train_labels = few.train_labels[few.train_labels == 0]  # N only
    with pytest.warns(UserWarning, match=r"^classes S, V, F: no example in .* cannot learn them, so their test"):
        warn_absent_classes(few)
    from types import SimpleNamespace  # the rhythm task counts its records (a TypeError joining them)

    rhythm = SimpleNamespace(train_labels=np.array([0, 2, 3]), class_names=["N", "A", "O", "~"],
                             scored=["N", "A", "O"], splits={"train_records": 3})
    with pytest.warns(UserWarning, match=r"^class A: no example in the training split \(3 examples\)"):
        warn_absent_classes(rhythm)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warn_absent_classes(build_task(load_config(None, {"data.data_dir": str(SAMPLE), "data.val_records": 0})))
    # through train: said before the first epoch
    config = tmp_path / "few.toml"
    config.write_text(f'task = "beats"\nepochs = 1\n[data]\ndata_dir = "{SAMPLE}"\nval_records = 0\n'
                      'train_records = ["101", "118"]\ntest_records = ["100"]\n')
    with pytest.warns(UserWarning, match=r"^class F: no example in the training records 101, 118"):
        assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 0


def test_evaluate_never_downloads_what_a_checkpoints_config_asks_for(tmp_path):
    # a Fashion-MNIST checkpoint made with data.download = true, into a folder of its choosing: evaluate fetches
    # nothing (it went to the mirrors, into the checkpoint's folder); the data_dir given replaces the saved one
    from msresnet1d.training.ensemble import _config
    from msresnet1d.training.tasks import resolve_data, task_classes

    saved = resolve_data(TrainConfig(task="fashion_mnist", model="resnet18_d2l",
                                     data={"download": True, "data_dir": str(tmp_path / "theirs")})).to_dict()
    ckpt = {"config": saved, "class_names": list(task_classes("fashion_mnist")), "task_state": {}}
    cfg = _config(ckpt, tmp_path / "ckpt.pt", None)
    assert cfg.data["download"] is False and cfg.data["data_dir"] == str(tmp_path / "theirs")
    assert saved["data"]["download"] is True  # the checkpoint's own config is left as it was
    assert _config(ckpt, tmp_path / "ckpt.pt", str(tmp_path / "mine")).data["data_dir"] == str(tmp_path / "mine")
