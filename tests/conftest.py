"""Shared fixtures. Real data is found through MSRESNET1D_DATA (a folder holding mitdb/, cinc2017/,
fashion-mnist/). Without it, tests that need real data are skipped, unless
MSRESNET1D_REQUIRE_DATA=1 (set by .ci/run), in which case they fail."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb

REPO = Path(__file__).resolve().parents[1]


def _require(path: Path, what: str) -> Path:
    if path.is_dir():
        return path
    message = f"{what} not found at {path} (set MSRESNET1D_DATA to the folder holding it)"
    if os.environ.get("MSRESNET1D_REQUIRE_DATA") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = os.environ.get("MSRESNET1D_DATA")
    return _require(Path(root) if root else Path("/nonexistent"), "MSRESNET1D_DATA")


@pytest.fixture(scope="session")
def mitdb_dir(data_root: Path) -> Path:
    return _require(data_root / "mitdb", "MIT-BIH (mitdb)")


@pytest.fixture(scope="session")
def cinc2017_dir(data_root: Path) -> Path:
    return _require(data_root / "cinc2017", "CinC 2017 (cinc2017)")


@pytest.fixture(scope="session")
def fashion_mnist_dir(data_root: Path) -> Path:
    return _require(data_root / "fashion-mnist", "Fashion-MNIST (fashion-mnist)")


@pytest.fixture
def short_records(tmp_path: Path) -> Path:
    """A folder holding ``one`` and ``none``: the embedded sample's record 100, its first 10 s (MLII,
    V5), with 1 N beat annotated and with no beat (a rhythm annotation only)."""
    record = wfdb.rdrecord(str(REPO / "datasets" / "mitdb-sample" / "100"), sampto=3600)
    for name, sample, symbol, aux in (("one", 1000, "N", None), ("none", 5, "+", ["(N"])):
        wfdb.wrsamp(name, fs=360, units=record.units, sig_name=record.sig_name, p_signal=record.p_signal,
                    fmt=["16", "16"], write_dir=str(tmp_path))
        wfdb.wrann(name, "atr", np.array([sample]), [symbol], aux_note=aux, fs=360, write_dir=str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session", autouse=True)
def _nothing_written_outside_pytests_folders(tmp_path_factory):
    """The tests, and the programs they start, keep their files under pytest's temporary folders:
    the data cache (MSRESNET1D_CACHE, unless set, when reruns reuse it; else it would be the
    clone's datasets/cache/), TMPDIR for programs started (torchrun leaves torchelastic_*
    folders) and MPLCONFIGDIR (matplotlib's font cache, else under ~/.cache). Not onnxruntime's:
    it reads HOME as it is imported, and writes a device id under ~/.cache/Microsoft/ when it
    opens a model. A PYTHONWARNINGS of the user's is cleared: tests
    check the warnings the programs they start print. The programs import this checkout's
    package, as the tests do, even where another checkout is installed in editable mode."""
    root = tmp_path_factory.mktemp("session")
    with pytest.MonkeyPatch.context() as patch:
        if not os.environ.get("MSRESNET1D_CACHE"):
            patch.setenv("MSRESNET1D_CACHE", str(root / "cache"))
        (root / "tmp").mkdir()
        patch.setenv("TMPDIR", str(root / "tmp"))
        patch.setenv("MPLCONFIGDIR", str(root / "matplotlib"))
        patch.delenv("PYTHONWARNINGS", raising=False)  # the programs started are tested for the warnings they print
        # the programs started import this checkout's package too (pyproject's pythonpath is pytest's own)
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        yield


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Each test starts from seed 0 and 2 torch threads, and leaves the thread count it found
    (a command run in-process sets its own: --threads)."""
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)
