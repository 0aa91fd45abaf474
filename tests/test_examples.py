"""The scripts in examples/ run and do what they say, on small settings."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_own_modality_learns_the_pretext(tmp_path):
    example = _load("own_modality")
    out = example.main(steps=60, out=str(tmp_path / "run"))
    assert out["mse"] < 0.5 * out["mse_zero"]
    assert (tmp_path / "run" / "encoder.safetensors").exists()
