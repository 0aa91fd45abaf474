"""Model folders: save_pretrained's layout and card, load_encoder on all three forms (folder,
encoder.safetensors export, checkpoint), finetuning from a folder, `relpos export` and
`relpos --version`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import TensorDataset

from relpos.cli import main
from relpos.train.api import train
from relpos.train.checkpoint import load_encoder, read_provenance
from relpos.train.config import TrainConfig, merge
from relpos.train.export import resolve_checkpoint, save_pretrained

sys.path.insert(0, str(Path(__file__).parent))  # pytest runs with --import-mode=importlib
from test_train import tiny_config as train_config

SECTIONS = ("## Model", "## Data", "## Preprocessing", "## Pretext", "## Training budget")


def tiny_config(task: str = "pretrain") -> TrainConfig:
    """test_train's tiny config on a 3-step budget."""
    base = train_config(task, epochs=1, max_steps=3, warmup_epochs=1.0).model_dump()
    over = {"runtime": {"checkpoint_every": 2, "log_every": 20, "seed": 1}}
    return TrainConfig.model_validate(merge(base, over))


def tiny_data(n: int = 48) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(
        torch.randn(n, 1, 16, 16, generator=g), torch.randint(0, 3, (n,), generator=g)
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pre")
    prov = {"store": "somewhere/store", "split": "pretrain", "subjects": ["a", "b", "c"]}
    train(tiny_config(), tiny_data(), out, provenance=prov)
    return out


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0)


def test_folder_layout_card_and_round_trip(run_dir: Path, tmp_path: Path) -> None:
    results = {
        "kappa": 0.61,
        "macro_f1": float("nan"),
        "per_class": {"W": {"f1": 0.9, "support": 4}},
    }
    out = save_pretrained(
        run_dir, tmp_path / "model", results=results,
        extra={"preprocessing": {"bandpass": [0.3, 35]}, "license": "mit"},
    )  # fmt: skip
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    cfg = json.loads((out / "config.json").read_text(), parse_constant=pytest.fail)
    assert cfg["vit"]["dim"] == 32 and cfg["modality"]["name"] == "image"
    assert TrainConfig.model_validate(cfg["train_config"]) == tiny_config()
    assert cfg["step"] == 3 and cfg["provenance"]["subjects"] == ["a", "b", "c"]
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "relpos" and front["license"] == "mit"
    assert "image" in front["tags"] and "part" in front["tags"]
    for section in (*SECTIONS, "## Results", "## Usage"):
        assert section in card, section
    assert "3 subjects" in card and "bandpass" in card and "| kappa | 0.6100 |" in card
    assert "| macro_f1 | n/a |" in card and "| W | 0.9000 | 4 |" in card
    assert "samples seen | 48 " in card  # 3 steps x 16
    # the weights come back identical, from the folder and from the checkpoint alike
    ckpt = resolve_checkpoint(run_dir)
    assert ckpt.name == "final.pt"
    _same_weights(load_encoder(out), load_encoder(ckpt))
    _same_weights(load_encoder(out / "model.safetensors"), load_encoder(ckpt))
    assert read_provenance(out)["store"] == "somewhere/store"


def test_load_encoder_reads_all_three_forms(run_dir: Path, tmp_path: Path) -> None:
    folder = save_pretrained(run_dir / "final.pt", tmp_path / "m")
    export = run_dir / "encoder.safetensors"  # today's export
    encoders = [load_encoder(p) for p in (folder, export, run_dir / "final.pt")]
    for enc in encoders[1:]:
        _same_weights(encoders[0], enc)
    card = (folder / "README.md").read_text()
    assert "## Results\n\nnot measured" in card and "## Preprocessing\n\nnot recorded" in card
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_encoder(folder)


def test_finetune_from_a_folder(run_dir: Path, tmp_path: Path) -> None:
    folder = save_pretrained(run_dir, tmp_path / "m")
    cfg = tiny_config("finetune")
    cfg.finetune.init = str(folder)
    _, res = train(cfg, tiny_data(), tmp_path / "ft")
    assert res.steps == 3
    prov = read_provenance(res.final_checkpoint)
    assert prov["init"]["subjects"] == ["a", "b", "c"]


def test_save_pretrained_from_a_model_and_errors(tmp_path: Path) -> None:
    from relpos.nn.vit import create_model

    enc = create_model("vit_mini", dim=32, depth=1, heads=2)
    out = save_pretrained(enc, tmp_path / "bare")
    _same_weights(load_encoder(out), enc)
    assert "## Pretext\n\nnot recorded" in (out / "README.md").read_text()
    with pytest.raises(FileNotFoundError, match="no final.pt"):
        resolve_checkpoint(tmp_path / "bare")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="a JSON object"):
        save_pretrained(enc, tmp_path / "x", results=bad)


def test_cli_export_and_version(run_dir: Path, tmp_path: Path, capsys) -> None:
    metrics = tmp_path / "metrics.json"
    metrics.write_text(
        json.dumps({"kappa": 0.5, "accuracy": 0.7, "per_subject_kappa": {"a": 0.4, "b": None}})
    )
    assert main(["export", str(run_dir), str(tmp_path / "cli"), "--results", str(metrics)]) == 0
    assert "model folder" in capsys.readouterr().out
    card = (tmp_path / "cli" / "README.md").read_text()
    assert "| accuracy | 0.7000 |" in card and "over 1 subjects" in card
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("relpos ")
    assert main(["export", str(tmp_path / "nothing"), str(tmp_path / "o")]) == 2
