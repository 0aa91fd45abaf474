"""A crafted "CIFAR" pickle must not run code: relpos.vision.cifar's restricted unpickler loads
numpy arrays and plain data (every pickle protocol) and refuses any other global, naming it."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

from relpos.vision.cifar import load_cifar

CLASSES = [c.encode() for c in "plane car bird cat deer dog frog horse ship truck".split()]


class _Payload:
    """Unpickling this calls ``exec``: the classic pickle exploit."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _write_cifar(folder, batch: dict, protocol: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ["test_batch", "batches.meta"]:
        obj = batch if name == "test_batch" else {b"label_names": CLASSES}
        with open(folder / name, "wb") as fh:
            pickle.dump(obj, fh, protocol=protocol)


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_real_cifar_pickles_load_under_every_protocol(tmp_path, protocol):
    data = np.random.default_rng(protocol).integers(0, 256, (3, 3072), dtype=np.uint8)
    batch = {b"batch_label": b"test", b"data": data, b"labels": [1, 2, 3]}
    _write_cifar(tmp_path / "cifar-10-batches-py", batch, protocol)
    ds = load_cifar(tmp_path, split="test")
    assert len(ds) == 3 and ds.classes[0] == "plane"


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_payload_does_not_run_and_the_error_names_file_and_global(tmp_path, protocol):
    marker = tmp_path / "pwned.txt"
    data = np.zeros((1, 3072), np.uint8)
    batch = {b"data": data, b"labels": [0], b"extra": _Payload(str(marker))}
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder, batch, protocol)
    with pytest.raises(ValueError) as err:
        load_cifar(tmp_path, split="test")
    assert not marker.exists(), "the payload ran"
    msg = str(err.value)
    assert (
        str(folder / "test_batch") in msg
        and "refusing to load" in msg
        and "exec" in msg
        and "\n" not in msg
    )


def test_payload_through_the_cli_is_one_line_and_runs_nothing(tmp_path, capsys):
    from relpos.cli import main

    marker = tmp_path / "pwned.txt"
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": _Payload(str(marker))}
    _write_cifar(tmp_path / "cifar-10-batches-py", batch, 4)
    code = main(["finetune", "--modality", "image", "--data-source", "cifar10", "--data",
                 str(tmp_path), "--split", "test", "--out", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and not marker.exists()
    assert err.startswith("relpos: error:") and err.count("\n") == 1, err
    assert "refusing to load builtins.exec" in err
    assert sys.modules.get("pwned") is None
