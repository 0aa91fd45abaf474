"""The scripts in examples/ run and do what they say, on small settings."""


def test_own_modality_learns_the_pretext(tmp_path, load_example):
    example = load_example("own_modality")
    out = example.main(steps=60, out=str(tmp_path / "run"))
    assert out["mse"] < 0.5 * out["mse_zero"]
    assert (tmp_path / "run" / "encoder.safetensors").exists()
