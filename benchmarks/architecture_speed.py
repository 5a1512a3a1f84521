"""ONNX Runtime time of candidate networks with random weights: which ones fit a speed budget.

Trained weights do not change the time, so this answers "how fast would it be" before anyone
spends an hour training. Each network is exported to ONNX (opset of torch's exporter) and run on
625 patches (one 2048² image) in batches of 25 (one row of patches, as ``miq predict`` does), one
thread, best of ``--repeats``; the ratio is to the default network's time in the same run.
Networks: the registered architectures (compact, stride4, separable) at several widths.

Needs torch (``pip install -e '.[train]'``).

Usage: python benchmarks/architecture_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from miq.model.network import build_network

PATCHES, BATCH = 625, 25


def onnx_ms(net: nn.Module, repeats: int) -> float:
    """Best-of-``repeats`` ms for 625 patches through ``net`` exported to ONNX."""
    net.eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.onnx"
        torch.onnx.export(
            net,
            torch.rand(BATCH, 1, 84, 84),
            str(path),
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
            dynamo=False,
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    patches = np.random.default_rng(0).random((PATCHES, 1, 84, 84), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats + 1):  # the first run warms up
        start = time.perf_counter()
        for i in range(0, PATCHES, BATCH):
            session.run(None, {"x": patches[i : i + BATCH]})
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    candidates = [("compact width 16 (the default v2's)", build_network("compact", width=16))]
    candidates += [
        (f"stride4 width {w}", build_network("stride4", width=w)) for w in (24, 32, 40, 48)
    ]
    candidates += [(f"separable width {w}", build_network("separable", width=w)) for w in (32, 48)]
    print(f"ONNX Runtime {ort.__version__}, one thread, {PATCHES} patches in batches of {BATCH}")
    print(f"{'network':40s} {'parameters':>10s} {'ms':>7s} {'x v2':>6s}")
    baseline = None
    for label, net in candidates:
        n_params = sum(p.numel() for p in net.parameters())
        ms = onnx_ms(net, args.repeats)
        baseline = baseline or ms
        print(f"{label:40s} {n_params:10d} {ms:7.1f} {ms / baseline:6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
