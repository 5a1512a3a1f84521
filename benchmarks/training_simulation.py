"""Where ``miq train`` spends a step, on the CPU and on a CUDA GPU: the defocus simulation
(`miq.training.synthetic.DefocusBatches.next_batch`) and one optimiser step of the network.

For each device (the CPU, with ``--threads`` torch threads, and ``cuda``), draws batches of
``--batch-size`` simulated patches (procedural content, so no data is needed) and times
``next_batch`` and one AdamW step of a separable network of width 28 (fast-v2: 32; forward,
backward, update), best of ``--repeats`` after a warm-up; prints ms per step and the GPU/CPU
ratios. Then checks that both devices simulate the same thing: with one seed they draw the
same crops, defocus and camera, and only the noise stream differs, so each patch's mean DN and
the spread of its 4×4-px block means (what the blur leaves) may differ between them by no more
than ``TOLERANCE`` times as much as between two CPU simulations whose noise alone differs
(exit 1 otherwise: a wrong kernel or camera on the GPU). Exits 2 when no CUDA device can be
used (after timing the CPU alone).

Usage: python -m benchmarks.training_simulation [--threads 16] [--batch-size 128] [--repeats 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from benchmarks.common import gpu_description, machine_description

TOLERANCE = 2.0


def _batches(device: str, seed: int = 0):
    from miq.training.synthetic import DefocusBatches

    return DefocusBatches([], procedural_fraction=1.0, seed=seed, device=device)


def _synchronised(device: str):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _best_ms(fn, device: str, repeats: int) -> float:
    fn()
    _synchronised(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _synchronised(device)
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def _time_device(device: str, batch_size: int, repeats: int) -> tuple[float, float]:
    """(simulation ms, network step ms) per batch on ``device``."""
    import torch

    from miq.model.network import build_network

    batches = _batches(device)
    simulation = _best_ms(lambda: batches.next_batch(batch_size), device, repeats)
    x, y = batches.next_batch(batch_size)
    y = y.to(device)
    net = build_network("separable", width=28).to(device)
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def step() -> None:
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimiser.step()

    return simulation, _best_ms(step, device, repeats)


def _statistics(batch) -> np.ndarray:
    """Per patch: its mean DN (brightness, camera) and the standard deviation of its 4×4-px
    block means (structure left by the blur, little of the pixel noise), (B, 2)."""
    x = batch.double().cpu().numpy()[:, 0]
    b, side = x.shape[0], x.shape[-1] // 4 * 4
    blocks = x[:, :side, :side].reshape(b, side // 4, 4, side // 4, 4).mean(axis=(2, 4))
    return np.stack([x.mean(axis=(1, 2)), blocks.std(axis=(1, 2))], axis=1)


def _largest_differences(first, second, batch_size: int, draws: int = 4) -> np.ndarray:
    """The largest |difference| of each `_statistics` over ``draws`` batches of two generators."""
    worst = np.zeros(2)
    for _ in range(draws):
        a, _labels = first.next_batch(batch_size)
        b, _labels = second.next_batch(batch_size)
        worst = np.maximum(worst, np.abs(_statistics(a) - _statistics(b)).max(axis=0))
    return worst


def _agreement(batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(CPU vs GPU, CPU vs CPU with other noise) largest differences of the patch statistics.

    With one seed both devices draw the same crops, defocus and camera; only the noise stream
    differs. The second pair is the yardstick: two CPU simulations whose noise alone differs."""
    gpu = _largest_differences(_batches("cpu", 5), _batches("cuda", 5), batch_size)
    other_noise = _batches("cpu", 5)
    other_noise.torch_gen.manual_seed(999)
    null = _largest_differences(_batches("cpu", 5), other_noise, batch_size)
    return gpu, null


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    print(f"{machine_description()}; {args.threads} torch threads on the CPU")
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    if "cuda" in devices:
        print(f"device: {gpu_description()}; batch {args.batch_size} patches of 84²")
    timings = {d: _time_device(d, args.batch_size, args.repeats) for d in devices}
    print(f"{'device':8s} {'simulation ms':>14s} {'network step ms':>16s} {'total ms':>9s}")
    for device, (simulation, step) in timings.items():
        print(f"{device:8s} {simulation:14.1f} {step:16.1f} {simulation + step:9.1f}")
    if "cuda" not in devices:
        print(f"no CUDA device: torch {torch.__version__} cannot use one (the CPU timed alone)")
        return 2
    (cpu_sim, cpu_step), (gpu_sim, gpu_step) = timings["cpu"], timings["cuda"]
    print(
        f"GPU speed-up: simulation {cpu_sim / gpu_sim:.1f}x, network step "
        f"{cpu_step / gpu_step:.1f}x, both {(cpu_sim + cpu_step) / (gpu_sim + gpu_step):.1f}x; "
        f"simulating on the CPU for the GPU's network: {(cpu_sim + gpu_step):.1f} ms a step"
    )
    gpu, null = _agreement(args.batch_size)
    verdict = "PASS" if np.all(gpu <= TOLERANCE * null) else "FAIL"
    print(
        f"patch statistics, largest difference CPU vs GPU (CPU vs CPU with other noise): "
        f"mean {gpu[0]:.2f} ({null[0]:.2f}) DN, 4x4-block SD {gpu[1]:.2f} ({null[1]:.2f}) DN; "
        f"bound {TOLERANCE:g}x the second: {verdict}"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
