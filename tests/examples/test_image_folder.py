"""examples/image_folder.py: PART on an image folder of your own, then a linear probe."""

import pytest

pytest.importorskip("PIL.Image")


def test_the_generated_folder_reads_in_both_readers(tmp_path, load_example):
    from relpos.vision.streaming import StreamingImageFolder, load_image_folder

    example = load_example("image_folder")
    folder = example.make_folder(tmp_path / "mine", per_class=4, size=20)
    assert sorted(p.name for p in folder.iterdir()) == sorted(example.CLASSES)
    lazy = load_image_folder(folder, 16, streaming=True)
    assert isinstance(lazy, StreamingImageFolder) and len(lazy) == 12
    assert lazy.classes == sorted(example.CLASSES) and lazy[0][0].shape == (3, 16, 16)


def test_image_folder_pretrains_and_probes(tmp_path, capsys, load_example):
    example = load_example("image_folder")
    folder = example.make_folder(tmp_path / "mine", per_class=8, size=20)
    out = example.main(
        str(folder), size=16, token=4, steps=3, probe_steps=3, streaming=True,
        out=str(tmp_path / "run"),
    )  # fmt: skip
    assert out["streamed"] == 1.0
    assert 0.0 <= out["part"] <= 1.0 and 0.0 <= out["random"] <= 1.0
    assert out["euclidean"] > 0 and out["zero"] > 0 and out["chance"] == pytest.approx(1 / 3)
    assert (tmp_path / "run" / "pretrain" / "encoder.safetensors").exists()
    assert "linear probe accuracy" in capsys.readouterr().out
