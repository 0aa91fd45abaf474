"""Load an exported relpos encoder into a torch model of your own.

An export folder (``relpos export RUN OUT`` or ``relpos.save_pretrained``) holds
``config.json``, ``model.safetensors`` and a model card. ``relpos.load_encoder`` turns it into
a plain ``torch.nn.Module`` (a ViT); ``config.json`` says how inputs were cut into tokens. Here
the encoder becomes the frozen feature extractor of a small classifier: images -> on-grid
tokens -> token embeddings ``(B, N, D)`` -> their mean and spread -> your head.

Without ``--encoder`` the script first makes an export to load: a short PART pretraining on
synthetic 16 x 16 stripe images (three orientations). The classifier then learns the
orientation from a few labelled batches, with the encoder frozen.

    python examples/encoder_in_your_model.py [--encoder runs/model] [--steps 150]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

import relpos
from relpos.core.extract import tokenize
from relpos.core.tokenizer import Tokenizer, TokenizerConfig

SIZE, PATCH, CLASSES = 16, 4, 3


def stripes(n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``(n, 1, SIZE, SIZE)`` noisy stripes and their orientation ``(n,)``: 0 horizontal,
    1 vertical, 2 diagonal (random period and phase)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    axis = torch.arange(SIZE, dtype=torch.float32)
    r, c = torch.meshgrid(axis, axis, indexing="ij")
    coord = torch.stack([r, c, (r + c) / math.sqrt(2)])[y]  # (n, SIZE, SIZE)
    period = 3 + 3 * torch.rand(n, 1, 1, generator=g)
    phase = 2 * math.pi * torch.rand(n, 1, 1, generator=g)
    noise = 0.3 * torch.randn(n, SIZE, SIZE, generator=g)
    x = torch.sin(2 * math.pi * coord / period + phase) + noise
    return x.unsqueeze(1), y


def make_export(folder: Path, steps: int) -> Path:
    """Pretrain PART briefly on unlabelled stripes and export the encoder as a model folder."""
    cfg = relpos.TrainConfig.model_validate(
        {
            "modality": {"name": "image", "channels": 1, "extent": [SIZE, SIZE],
                         "token_shape": [PATCH, PATCH]},
            "encoder": {"preset": "vit_mini", "dim": 64, "depth": 2, "heads": 4},
            "pretext": {"sampler": {"kind": "boxes", "size": PATCH, "count": 16}, "num_pairs": 64},
            "optim": {"epochs": 1000, "max_steps": steps, "batch_size": 32},
            "runtime": {"progress": False, "checkpoint_every": 0, "log_every": 50},
        }
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as run_dir:
        relpos.train(cfg, TensorDataset(stripes(512, seed=1)[0]), run_dir)
        return relpos.save_pretrained(run_dir, folder)


def input_spec(export: Path) -> tuple[tuple[int, ...], Tokenizer]:
    """How the encoder's inputs were cut: token shape and tokenizer, from the export's
    ``config.json`` (a model folder) or ``encoder.json`` (an ``encoder.safetensors``)."""
    meta_file = export / "config.json" if export.is_dir() else export.with_suffix(".json")
    modality = json.loads(meta_file.read_text())["modality"]
    shape = tuple(modality["token_shape"])
    return shape, TokenizerConfig.model_validate(modality.get("tokenizer", {})).build(shape)


class OrientationClassifier(nn.Module):
    """Your model: a pretrained relpos encoder (frozen) as its feature extractor, your head."""

    def __init__(
        self, encoder: relpos.ViT, token_shape: tuple[int, ...], tokenizer: Tokenizer
    ) -> None:
        super().__init__()
        self.encoder = encoder.requires_grad_(False)  # frozen: only the head learns
        self.grid, self.tokenizer = relpos.Grid(token_shape), tokenizer
        d = encoder.dim  # pooled: mean and spread of the tokens
        self.head = nn.Sequential(nn.LayerNorm(2 * d), nn.Linear(2 * d, CLASSES))

    def train(self, mode: bool = True) -> OrientationClassifier:
        super().train(mode)
        self.encoder.eval()  # a frozen encoder stays in eval mode (dropout off)
        return self

    def token_embeddings(self, x: Tensor) -> Tensor:
        """``x (B, C, H, W)`` -> one embedding per on-grid token ``(B, N, D)``."""
        tokens, spans = tokenize(x, self.grid, self.tokenizer)  # (B, N, C, *token_shape)
        features = self.encoder.forward_features(tokens, spans)  # (B, prefix + N, D)
        return features[:, self.encoder.num_prefix_tokens :]

    def forward(self, x: Tensor) -> Tensor:
        emb = self.token_embeddings(x)  # (B, N, D)
        return self.head(torch.cat([emb.mean(1), emb.std(1)], -1))  # (B, CLASSES)


def main(
    encoder: str | None = None, steps: int = 150, pretrain_steps: int = 100, seed: int = 0
) -> dict[str, Any]:
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(encoder) if encoder else make_export(Path(tmp) / "model", pretrain_steps)
        vit = relpos.load_encoder(export)  # a folder, an encoder.safetensors or a checkpoint
        token_shape, tokenizer = input_spec(export)
    model = OrientationClassifier(vit, token_shape, tokenizer)
    frozen = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    x, y = stripes(1024, seed=2)
    x_test, y_test = stripes(512, seed=3)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=3e-3)
    model.train()
    losses = []
    for _ in range(steps):  # a few labelled batches
        idx = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        emb = model.token_embeddings(x_test[:8])
        acc = float((model(x_test).argmax(-1) == y_test).float().mean())
    unchanged = all(torch.equal(frozen[k], v) for k, v in model.encoder.state_dict().items())
    out = {
        "embeddings": tuple(emb.shape),
        "trainable": sum(p.numel() for p in trainable),
        "frozen": sum(p.numel() for p in model.encoder.parameters()),
        "encoder_unchanged": unchanged,
        "loss_first": sum(losses[:10]) / max(1, len(losses[:10])),
        "loss_last": sum(losses[-10:]) / max(1, len(losses[-10:])),
        "accuracy": acc,
    }
    print(
        f"token embeddings {out['embeddings']} (B, N, D); {out['trainable']:,} trainable and "
        f"{out['frozen']:,} frozen parameters (encoder unchanged: {unchanged})\n"
        f"loss {out['loss_first']:.3f} -> {out['loss_last']:.3f}; held-out accuracy {acc:.3f} "
        f"(chance {1 / CLASSES:.3f})"
    )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default=None, help="an export folder, encoder.safetensors")
    parser.add_argument("--steps", type=int, default=150, help="classifier training steps")
    parser.add_argument("--pretrain-steps", type=int, default=100, help="without --encoder")
    args = parser.parse_args()
    main(args.encoder, args.steps, args.pretrain_steps)
