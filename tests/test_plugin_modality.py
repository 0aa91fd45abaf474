"""A researcher's path: register a new modality, sampler and data source outside relpos, then
train it from the command line without touching relpos (in-process, and as a ``--plugin``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Literal

import torch
from torch.utils.data import TensorDataset

import relpos
from relpos import cli
from relpos.core.modality import Modality
from relpos.train.checkpoint import load_model

TINY = [
    "--set", "optim.epochs=1", "--set", "optim.max_steps=2", "--set", "optim.batch_size=4",
    "--set", "encoder.dim=16", "--set", "encoder.depth=1", "--set", "encoder.heads=2",
    "--set", "runtime.progress=false", "--set", "runtime.checkpoint_every=0",
]  # fmt: skip


# ---------------------------------------------------------------------- a new modality
def heatmap(channels: int = 2) -> Modality:
    """2-channel 8x8 heat maps, cut into 2x2 tokens at 6 random places."""
    return Modality(
        "heatmap_test", channels, (2, 2), relpos.RandomSpans(2, 6, ndim=2), relpos.Grid((2, 2)),
        data_source="heatmaps_test",
    )  # fmt: skip


def heatmaps(path, split, labelled, **kwargs):
    g = torch.Generator().manual_seed(0 if split == "pretrain" else 1)
    x = torch.randn(12, 2, 8, 8, generator=g)
    if not labelled:
        return TensorDataset(x)
    y = (x.mean((1, 2, 3)) > 0).long()
    return TensorDataset(x, y), torch.arange(12) // 4  # groups: 3 "recordings"


class CornersConfig(relpos.SamplerConfig):
    """A sampler registered here: the four corners and the centre, as spans of the token size."""

    kind: Literal["corners_test"] = "corners_test"

    def build(self, token_shape):
        return relpos.RandomSpans(tuple(float(t) for t in token_shape), 5)

    def axes(self):
        return 2


relpos.register_modality("heatmap_test", heatmap)
relpos.register_data_source("heatmaps_test", heatmaps)
relpos.register_sampler("corners_test", CornersConfig)


def test_train_a_registered_modality_from_the_cli(tmp_path, capsys):
    pt, ft = tmp_path / "pt", tmp_path / "ft"
    code = cli.main(["pretrain", "--modality", "heatmap_test", "--data", "-", "--out", str(pt), *TINY])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert (pt / "encoder.safetensors").exists()
    _, cfg = load_model(pt / "final.pt")
    assert cfg.modality.name == "heatmap_test" and cfg.pretext.sampler.kind == "modality"
    assert (cfg.modality.channels, cfg.modality.extent) == (2, [8, 8])  # from the data

    code = cli.main([
        "finetune", "--modality", "heatmap_test", "--data", "-", "--out", str(ft),
        "--init", str(pt / "encoder.safetensors"), "--set", "finetune.num_classes=2", *TINY,
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    _, cfg = load_model(ft / "final.pt")
    assert cfg.task == "finetune" and cfg.grid_sampler().num_spans((8, 8)) == 16

    code = cli.main([
        "pretrain", "--modality", "heatmap_test", "--data", "-", "--out", str(tmp_path / "c"),
        "--set", "pretext.sampler={kind: corners_test}", *TINY,
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "pretrained encoder" in capsys.readouterr().out


PLUGIN = """
import torch
from torch.utils.data import TensorDataset

import relpos
from relpos.core.modality import Modality


def tiles(channels=1):
    return Modality("tiles", channels, (2, 2), relpos.RandomSpans(2, 5, ndim=2),
                    relpos.Grid((2, 2)), data_source="tile_noise")


def tile_noise(path, split, labelled, **kwargs):
    return TensorDataset(torch.randn(8, 1, 6, 6, generator=torch.Generator().manual_seed(0)))


relpos.register_modality("tiles", tiles)
relpos.register_data_source("tile_noise", tile_noise)
"""


def test_plugin_module_in_a_subprocess(tmp_path):
    (tmp_path / "relpos_tiles_plugin.py").write_text(textwrap.dedent(PLUGIN))
    out = tmp_path / "run"
    argv = ["pretrain", "--plugin", "relpos_tiles_plugin", "--modality", "tiles", "--data", "-"]
    proc = subprocess.run(
        [sys.executable, "-m", "relpos", *argv, "--out", str(out), *TINY],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"pretrained encoder: {out / 'encoder.safetensors'}")


def test_plugin_file_path(tmp_path, capsys):
    plugin = tmp_path / "tiles_file_plugin.py"
    plugin.write_text(textwrap.dedent(PLUGIN).replace('"tiles"', '"tiles_file"'))
    argv = ["--plugin", str(plugin), "--modality", "tiles_file", "--data", "-"]
    code = cli.main(["pretrain", *argv, "--out", str(tmp_path / "r"), *TINY])
    assert code == 0, capsys.readouterr().err
    assert "tiles_file" in relpos.list_modalities()
    code = cli.main(["pretrain", "--plugin", str(tmp_path / "none.py"), "--out", "x"])
    assert code == 2 and "no such file" in capsys.readouterr().err
