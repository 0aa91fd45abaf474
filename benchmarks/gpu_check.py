"""One short GPU check (run on a machine with CUDA): the paper's 1D preset (ViT-1D, 12.9M
parameters, 40 random 1-s windows of 6 x 3000 EEG epochs, 512 pairs) pretraining step in bf16
autocast vs fp32, measured side by side in one run: samples/s and peak memory; the same for a
finetuning step (30 on-grid tokens, learned positions, 5 classes); extraction speed ratios on the
GPU; and the training loop itself with runtime.amp=bf16.

    python examples/gpu_check.py [--out DIR] [--batch 256] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import relpos
from relpos.nn.vit import count_parameters


def timed_steps(step, steps: int, batch: int) -> dict[str, float]:
    for _ in range(5):  # warm-up (cuDNN/cuBLAS heuristics, allocator)
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {
        "samples_per_s": batch / med,
        "step_ms": med * 1e3,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
    }


def pretrain_step(dtype: torch.dtype | None, batch: int):
    torch.manual_seed(0)
    dev = torch.device("cuda")
    enc = relpos.create_model("vit_eeg")
    model = relpos.PART(enc, relpos.CrossAttentionHead(enc.dim, 1), num_pairs=512).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
    x = torch.randn(batch, 6, 3000, device=dev)
    sampler = relpos.RandomWindows(100, 40, snap=True)
    g = torch.Generator(device=dev).manual_seed(0)

    def step():
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model.forward_raw(x, sampler, 100, generator=g)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step, count_parameters(model)


def finetune_step(dtype: torch.dtype | None, batch: int):
    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = relpos.create_model("vit_eeg", pos_embed="learned", num_tokens=30, num_classes=5).to(
        dev
    )
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
    x = torch.randn(batch, 6, 3000, device=dev)
    y = torch.randint(0, 5, (batch,), device=dev)
    spans = relpos.Grid(100)((3000,), batch, device=dev)

    def step():
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(relpos.extract(x, spans, 100), spans)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, count_parameters(model)


def loop_check(tmp: Path) -> dict[str, float]:
    """The training loop (fit) on the GPU with runtime.amp=bf16: runs, checkpoints, resumes."""
    from torch.utils.data import TensorDataset

    from relpos.train.api import train
    from relpos.train.config import TrainConfig

    cfg = TrainConfig.model_validate(
        {
            "modality": {"channels": 6, "extent": [3000], "token_shape": [100]},
            "encoder": {"preset": "vit_eeg"},
            "pretext": {
                "sampler": {"kind": "windows", "length": 100, "count": 40, "snap": True},
                "num_pairs": 512,
            },
            "optim": {"epochs": 1, "batch_size": 256, "max_steps": 40},
            "runtime": {"amp": "bf16", "checkpoint_every": 20, "log_every": 10, "progress": False},
        }
    )
    data = TensorDataset(torch.randn(256 * 40, 6, 3000))
    t0 = time.perf_counter()
    _, res = train(cfg, data, tmp / "run")
    wall = time.perf_counter() - t0
    _, again = train(cfg, data, tmp / "run")  # resumes at the end: no new steps
    return {
        "steps": res.steps,
        "samples_per_s": res.samples_per_s,
        "wall_s": wall,
        "resumed_steps": again.steps,
        "final_loss": res.last_metrics["loss"],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=".")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args()
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    report: dict = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "batch": args.batch,
    }
    for name, make in (("pretrain", pretrain_step), ("finetune", finetune_step)):
        rows = {}
        for label, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp32_again", None)):
            step, n = make(dtype, args.batch)
            rows[label] = timed_steps(step, args.steps, args.batch)
            del step
            torch.cuda.empty_cache()
        rows["parameters"] = n
        rows["bf16_over_fp32_speed"] = rows["bf16"]["samples_per_s"] / rows["fp32"]["samples_per_s"]
        rows["bf16_over_fp32_memory"] = rows["bf16"]["peak_mem_gib"] / rows["fp32"]["peak_mem_gib"]
        report[name] = rows
        print(name, json.dumps(rows, indent=1))
    from relpos.bench import format_results, run

    results = run(quick=True, device="cuda")
    print(format_results(results))
    report["bench"] = [
        {
            "name": r.name,
            "seconds": r.seconds,
            "reference_seconds": r.reference_seconds,
            "ratio": r.ratio,
        }
        for r in results
    ]
    with tempfile.TemporaryDirectory() as tmp:
        report["loop_bf16"] = loop_check(Path(tmp))
    print("loop", report["loop_bf16"])
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_check.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
