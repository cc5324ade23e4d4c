"""The ``beats`` task: MIT-BIH beats in the AAMI classes, trained on DS1's records and tested on
DS2's (inter-patient; or a config's own train_records and test_records, as in the DS1
cross-validation), validation held out from the training records."""

from __future__ import annotations

import numbers
import warnings
from pathlib import Path

import numpy as np
import torch

from ...data.loader import TensorBatchLoader
from ..config import TrainConfig
from ..distributed import DistContext
from ..metrics import AAMI_SCORED
from ..optim import balanced_sample_weights, record_sample_weights
from .base import Task, array_predictor
from .options import DATABASES, beat_config, resolve_data


def _check_default_records(db_dir: Path, defaults: list[str]) -> None:
    """Raise DataError, saying how to name another database's records, when folder ``db_dir``
    lacks some of the ``defaults`` (the DS1 and DS2 records a config that names none reads)."""
    from ...data import DataError, list_records

    absent = [name for name in defaults if not (db_dir / f"{name}.hea").is_file()]
    if absent:
        held = list_records(db_dir)
        raise DataError(f"database {db_dir} lacks {len(absent)} of the {len(defaults)} records of the default split "
                        f"(MIT-BIH's DS1 and DS2: {', '.join(absent[:5])}{', ...' if len(absent) > 5 else ''}): for "
                        f"another database, or a partial copy, name the records it holds ({', '.join(held[:5])}"
                        f"{', ...' if len(held) > 5 else ''}) with --set 'data.train_records=[\"{held[0]}\", ...]' "
                        "and --set 'data.test_records=[...]'")


def _database_name(db_dir: Path, records: list[str]) -> str:
    """How results name the database of ``records``: "MIT-BIH" for the embedded sample or records
    whose headers are MIT-BIH's published ones, else the folder (another database, or a copy
    rewritten at another rate)."""
    from ...data.locate import has_published_headers, is_embedded_sample

    if is_embedded_sample(db_dir, "mitdb") or has_published_headers(db_dir, records):
        return "MIT-BIH"
    return f"database {db_dir.name}"


def beat_task(cfg: TrainConfig, dist: DistContext) -> Task:
    """The ``beats`` task of ``cfg``: MIT-BIH beat windows (N, C, L samples at ``[data] fs`` Hz) in
    AAMI classes, trained on the train records less the validation ones, tested on the test
    records (DS1 and DS2 by default)."""
    from ...data import (AAMI_CLASSES, DS1, DS2, balanced_holdout, find_database, load_beats, resolve_leads,
                         shared_patients)
    from ...data.augment import BeatAugment
    from ...data.beats import with_rr_features
    from ...data.locate import is_embedded_sample
    from ...data.rr import rr_columns
    from ...data.spectrogram import Spectrogram

    opts = resolve_data(cfg).data
    db_dir = find_database(DATABASES["beats"], opts["data_dir"])
    beat_cfg = beat_config(opts)
    train_records = list(opts["train_records"] or DS1)
    test_records = list(opts["test_records"] or DS2)
    _check_default_records(db_dir, [*([] if opts["train_records"] else DS1), *([] if opts["test_records"] else DS2)])
    if set(train_records) & set(test_records):
        raise ValueError(f"train and test records overlap: {sorted(set(train_records) & set(test_records))}")
    if set(train_records) != set(DS1) or set(test_records) != set(DS2):  # DS1/DS2 part 201 and 202 on purpose
        for a, b in shared_patients(train_records, test_records):
            warnings.warn(f"config: [data] train_records holds {a} and test_records {b}, records of one patient: the "
                          "test is not inter-patient for them; put both on one side (the default DS1/DS2 split keeps "
                          "201 and 202 apart only to compare with the literature, which does)", stacklevel=2)
    train_all = load_beats(train_records, db_dir=db_dir, config=beat_cfg, cache=opts["cache"])
    test = load_beats(test_records, db_dir=db_dir, config=beat_cfg, cache=opts["cache"])
    columns = rr_columns(opts["rr"])
    val = opts["val_records"]
    if columns:  # a record of fewer than 2 beats has none: left out, with a warning
        (train_all, no_rr), (test, no_test_rr) = with_rr_features(train_all, "training"), with_rr_features(test, "test")
        train_records = [r for r in train_records if r not in no_rr]
        test_records = [r for r in test_records if r not in no_test_rr]
        val = val if isinstance(val, numbers.Integral) else [r for r in val if r not in no_rr]
    if isinstance(val, numbers.Integral):
        by_record = {r: train_all.y[train_all.record == r] for r in train_records}
        try:
            val = balanced_holdout(by_record, val, seed=opts["val_seed"])[1] if val else []
        except ValueError as e:  # as many validation records as training ones, or more
            raise ValueError(f"config: [data] val_records={val} of the {len(train_records)} training records "
                             f"({', '.join(train_records)}): {e}") from None
    missing = sorted(set(val) - set(train_records))
    if missing:
        raise ValueError(f"val_records {missing} are not training records: validation comes from training patients")
    fit_records = [r for r in train_records if r not in val]
    for a, b in shared_patients(fit_records, val):  # balanced_holdout keeps a patient on one side; a list may not
        warnings.warn(f"config: [data] val_records holds {b} and training keeps {a}, records of one patient: "
                      "validation, which chooses the epoch, sees a training patient; hold out both or neither",
                      stacklevel=2)
    fit, held = train_all.from_records(fit_records), train_all.from_records(val)
    if len(fit) == 0:
        raise ValueError(f"no training beats in records {fit_records} of {db_dir}")

    # RR features standardised with the training beats' statistics (no peeking at val/test).
    rr_mean, rr_std = fit.rr[:, columns].mean(axis=0), fit.rr[:, columns].std(axis=0) + 1e-6

    def inputs(arrays) -> list[torch.Tensor]:
        """[windows (N, C, L)] and, with RR features, [.., standardised RR (N, F)]."""
        out = [torch.from_numpy(np.ascontiguousarray(arrays.X))]
        if columns:
            out.append(torch.from_numpy(((arrays.rr[:, columns] - rr_mean) / rr_std).astype(np.float32)))
        return out

    transform = None
    input_size, dims = beat_cfg.length, 1
    if opts["representation"] == "spectrogram":
        spec_opts = opts["spectrogram"]
        spec = Spectrogram(fs=beat_cfg.fs, standardize=True, **spec_opts)
        transform = lambda x, generator=None: spec(x)  # noqa: E731 - a BatchTransform
        input_size, dims = spec_opts["size"], 2
    train_transform = transform
    if opts["scale"] or opts["noise_std"] or opts["shift"]:
        shift = round(opts["shift"] * beat_cfg.fs)
        if not 0 <= shift < beat_cfg.length:
            raise ValueError(f"[data] shift={opts['shift']} s ({shift} samples at {beat_cfg.fs:g} Hz) must be >= 0 "
                             f"and shorter than the window ({beat_cfg.length} samples)")
        augment = BeatAugment(len(beat_cfg.leads), beat_cfg.template, scale=opts["scale"],
                              noise_std=opts["noise_std"], shift=shift)
        train_transform = augment if transform is None else (
            lambda x, generator: transform(augment(x, generator)))  # a BatchTransform: augment, then the spectrogram

    scored = list(AAMI_SCORED)  # Q (8 DS1 beats) is not scored, and not balanced by the sampler
    weights = (balanced_sample_weights(fit.y, [AAMI_CLASSES.index(c) for c in scored]) if cfg.balanced_sampler
               else record_sample_weights(fit.record) if opts["record_balanced"] else None)
    fit_inputs, test_inputs = inputs(fit), inputs(test)
    loader = TensorBatchLoader(fit_inputs[0], torch.from_numpy(fit.y), cfg.batch_size, shuffle=True,
                               transform=train_transform, seed=cfg.seed, extra=fit_inputs[1] if columns else None,
                               sample_weights=weights, rank=dist.rank, world_size=dist.world_size)
    predictors = {"test": array_predictor(test_inputs, test.y, cfg.eval_batch_size, transform, test.record)}
    if len(held):
        predictors["val"] = array_predictor(inputs(held), held.y, cfg.eval_batch_size, transform, held.record)
    sample_note = " (embedded sample)" if is_embedded_sample(db_dir, "mitdb") else ""
    tested = "inter-patient test, DS2" if set(test_records) == set(DS2) else "test, the config's test_records"
    splits = {"database": str(db_dir), "train_records": fit_records, "val_records": list(val),
              "test_records": test_records, "train_beats": fit.class_counts(), "val_beats": held.class_counts(),
              "test_beats": test.class_counts()}
    if any("|" in lead for lead in beat_cfg.leads):  # which of the alternatives each record gave
        splits["leads"] = {r: resolve_leads(db_dir / r, beat_cfg.leads) for r in train_records + test_records}
    return Task(
        train=loader, train_labels=fit.y, class_names=list(AAMI_CLASSES), scored=scored,
        in_channels=beat_cfg.channels, input_size=input_size, extra_features=len(columns),
        predictors=predictors, dims=dims,
        splits=splits,
        test_title=f"{_database_name(db_dir, test_records)} {tested} ({len(test_records)} records, {len(test)} beats)"
                   f"{sample_note}",
        strip={"db_dir": db_dir, "beats": test, "inputs": test_inputs, "transform": transform},
        state={"rr_mean": torch.from_numpy(rr_mean), "rr_std": torch.from_numpy(rr_std)} if columns else {},
        groups={"test": test.record, "val": held.record},
    )
