"""Side-by-side benchmarks (``relpos bench``): every number is a ratio measured in one run.

- ``extract`` vs a straightforward per-span loop (crop, then ``F.interpolate`` per span);
- ``extract`` vs ``clone()`` of a tensor the size of its output (the memory-bound floor);
- a full PART training step vs an encoder-only step on the same tokens.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from relpos.core.extract import extract
from relpos.core.part import PART
from relpos.core.samplers import RandomBoxes, RandomWindows, SpanSampler
from relpos.core.spans import Spans
from relpos.nn.heads import CrossAttentionHead
from relpos.nn.vit import ViT

__all__ = ["BenchResult", "loop_extract", "run"]


@dataclass
class BenchResult:
    name: str
    seconds: float  # median seconds per call
    reference: str
    reference_seconds: float

    @property
    def ratio(self) -> float:
        return self.reference_seconds / self.seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(
    fns: dict[str, Callable[[], object]],
    rounds: int,
    device: torch.device,
    inner: dict[str, int] | None = None,
) -> dict[str, float]:
    """Median seconds per call of each function, measured interleaved (round-robin, after a
    warm-up) so that machine noise hits all of them alike; ``inner[name]`` calls per round."""
    inner = inner or {}
    for fn in fns.values():
        fn()
    _sync(device)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(inner.get(name, 1)):
                t0 = time.perf_counter()
                fn()
                _sync(device)
                samples[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


def loop_extract(x: torch.Tensor, spans: Spans, token_shape: tuple[int, ...]) -> torch.Tensor:
    """The straightforward reference: for every example and span, crop the (integer-rounded)
    span and resize it with ``F.interpolate`` (linear/bilinear, antialiased)."""
    d = len(token_shape)
    mode = "linear" if d == 1 else "bilinear"
    lo_t, hi_t = spans.corners()
    lo = lo_t.floor().long().tolist()
    hi = hi_t.ceil().long().tolist()
    out = []
    for b in range(spans.batch):
        for n in range(spans.num):
            idx = tuple(slice(lo[b][n][a], max(hi[b][n][a], lo[b][n][a] + 1)) for a in range(d))
            key = (slice(b, b + 1), slice(None), *idx)
            crop = x[key]
            out.append(
                F.interpolate(
                    crop, size=token_shape, mode=mode, antialias=d == 2, align_corners=False
                )
            )
    return torch.cat(out).view(spans.batch, spans.num, x.shape[1], *token_shape)


def extract_case(
    name: str,
    x: torch.Tensor,
    sampler: SpanSampler,
    token_shape: tuple[int, ...],
    repeats: int,
    loop_repeats: int,
    device: torch.device,
    g: torch.Generator,
) -> list[BenchResult]:
    spans = sampler(tuple(x.shape[2:]), x.shape[0], generator=g, device=device)
    out = extract(x, spans, token_shape)
    floor = torch.empty_like(out)
    t = _time(
        {
            "loop": lambda: loop_extract(x, spans, token_shape),
            "extract": lambda: extract(x, spans, token_shape),
            "clone": lambda: floor.clone(),
        },
        loop_repeats,
        device,
        inner={"extract": repeats, "clone": repeats},
    )
    t_loop = t["loop"]
    return [
        BenchResult(f"{name}: loop / extract (speed-up)", t["extract"], "loop", t_loop),
        BenchResult(f"{name}: extract / clone (floor)", t["clone"], "extract", t["extract"]),
    ]


def step_case(
    batch: int, device: torch.device, repeats: int, g: torch.Generator
) -> list[BenchResult]:
    """A PART step (sample + extract + encode + head + loss + backward) against an encoder-only
    step (encode + a scalar loss + backward) on the same tokens; vit_tiny-sized encoder."""
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, device=device)
    sampler = RandomBoxes(size=4, count=64)
    encoder = ViT(token_dim=48, dim=192, depth=12, heads=3).to(device)
    model = PART(encoder, CrossAttentionHead(192, 2), num_pairs=128).to(device)
    spans = sampler((32, 32), batch, generator=g, device=device)
    tokens = extract(x, spans, (4, 4))

    def part_step() -> None:
        model.zero_grad(set_to_none=True)
        model.forward_raw(x, sampler, (4, 4), generator=g).loss.backward()

    def encoder_step() -> None:
        encoder.zero_grad(set_to_none=True)
        encoder.forward_features(tokens).pow(2).mean().backward()

    t = _time({"part": part_step, "encoder": encoder_step}, repeats, device)
    return [
        BenchResult(
            f"train step B={batch} vit_tiny: PART step / encoder-only step",
            t["encoder"],
            "PART",
            t["part"],
        )
    ]


def run(quick: bool = False, device: str | None = None, seed: int = 0) -> list[BenchResult]:
    """Run all benchmarks and return their results (printing is the CLI's job)."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    g = torch.Generator(device=dev).manual_seed(seed)
    reps, loop_reps = (3, 2) if quick else (5, 5)
    b = 64 if quick else 256
    x2 = torch.randn(b, 3, 32, 32, device=dev)
    x1 = torch.randn(b, 6, 3000, device=dev)
    cases = [
        (f"2D B={b} N=64 32x32x3, 4x4 tokens, off-grid", x2, RandomBoxes(4, 64), (4, 4)),
        (f"2D B={b} N=64 32x32x3, 4x4 tokens, integer", x2, RandomBoxes(4, 64, snap=True), (4, 4)),
        (f"1D B={b} N=40 6x3000, 100-sample windows, off-grid", x1, RandomWindows(100, 40), (100,)),
        (
            f"1D B={b} N=40 6x3000, 100-sample windows, integer",
            x1,
            RandomWindows(100, 40, snap=True),
            (100,),
        ),
    ]
    results: list[BenchResult] = []
    for name, x, sampler, ts in cases:
        results += extract_case(name, x, sampler, ts, reps, loop_reps, dev, g)
    results += step_case(8 if quick else 32, dev, 2 if quick else 5, g)
    return results


def format_results(results: list[BenchResult]) -> str:
    width = max(len(r.name) for r in results)
    lines = [f"{'benchmark':<{width}}  {'time':>10}  {'reference':>10}  ratio", "-" * (width + 36)]
    for r in results:
        lines.append(
            f"{r.name:<{width}}  {r.seconds * 1e3:>8.2f}ms  {r.reference_seconds * 1e3:>8.2f}ms  "
            f"{r.ratio:>6.2f}x"
        )
    return "\n".join(lines)
