"""examples/encoder_in_your_model.py: an exported encoder inside a model of your own."""

from pathlib import Path


def test_encoder_in_your_model(tmp_path: Path, load_example) -> None:
    example = load_example("encoder_in_your_model")
    out = example.main(steps=40, pretrain_steps=10)
    assert out["embeddings"] == (8, 16, 64)  # (B, N, D): 16 tokens of 4 x 4 pixels
    assert out["encoder_unchanged"] and out["trainable"] < out["frozen"]
    assert out["loss_last"] < out["loss_first"] and out["accuracy"] > 0.6
    # an export of your own (--encoder): the folder that `relpos export` writes
    folder = example.make_export(tmp_path / "model", steps=2)
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    assert example.main(encoder=str(folder), steps=2)["encoder_unchanged"]
