"""ONNX Runtime time of candidate networks with random weights: which ones fit a speed budget.

Trained weights do not change the time, so this answers "how fast would it be" before anyone
spends an hour training. Each network is exported to ONNX (opset of torch's exporter) and run on
625 patches (one 2048² image) in batches of 25 (one row of patches; ``miq predict`` sends two on a CPU), one
thread, best of ``--repeats``; the ratio is to v3's network (compact, width 16) in the same run.
Networks: the registered architectures (compact, stride4, separable) at several widths, and the
compact network with narrowed layers (``channels``, as v3-slim has).

It also measures how fast this core can multiply and add at all: the best float32 rate of one
large matrix product on one thread (numpy's BLAS, 2048³, and ONNX Runtime's MatMul, 1024³). Each
network's multiply-adds per image divided by that rate is a floor on its time that no float32
engine on this core goes below; for v2 it prints the multiply-adds of each layer as well. With
``--data FOLDER`` (e.g. ``../shared/data/in-focus``) it also counts, for the bundled v2 weights,
the channels of each layer that are ever positive after their ReLU on that folder's patches,
sharp and blurred (a channel that never is could be removed without changing any output).

Needs torch (``pip install -e '.[train]'``).

Usage: python -m benchmarks.architecture_speed [--repeats 5] [--data ../shared/data/in-focus]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import limit_threads

limit_threads()

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from miq.model.network import build_network  # noqa: E402

PATCHES, BATCH = 625, 25
#: layer widths of the compact network timed besides ``width``: v3-slim's, then narrower ones
COMPACT_CHANNELS = [
    (8, 24, 24, 48, 48),
    (8, 32, 32, 64, 64),
    (8, 16, 24, 32, 32),
    (8, 16, 16, 32, 32),
]


def _one_thread_session(model_bytes_or_path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes_or_path, options, providers=["CPUExecutionProvider"])


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
        session = _one_thread_session(str(path))
    patches = np.random.default_rng(0).random((PATCHES, 1, 84, 84), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats + 1):  # the first run warms up
        start = time.perf_counter()
        for i in range(0, PATCHES, BATCH):
            session.run(None, {"x": patches[i : i + BATCH]})
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def layer_multiply_adds(net: nn.Module) -> list[tuple[str, int]]:
    """(layer description, multiply-adds) of every convolution and linear layer for one 84² patch.

    A convolution costs (output elements) × (input channels per group) × kh × kw; a linear layer
    in × out. Normalisation, activations and pooling (a few % at most) are not counted.
    """
    counts: list[tuple[str, int]] = []

    def count(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = output[0].numel() * (module.in_channels // module.groups) * kh * kw
            label = (
                f"conv {kh}×{kw}/{module.stride[0]} {module.in_channels}→{module.out_channels}"
                + (f" (groups {module.groups})" if module.groups > 1 else "")
                + f" at {output.shape[-2]}×{output.shape[-1]} px"
            )
        else:
            macs = module.in_features * module.out_features
            label = f"linear {module.in_features}→{module.out_features}"
        counts.append((label, int(macs)))

    hooks = [
        m.register_forward_hook(count)
        for m in net.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    with torch.no_grad():
        net.eval()(torch.rand(1, 1, 84, 84))
    for hook in hooks:
        hook.remove()
    return counts


def core_multiply_add_rate(repeats: int) -> dict[str, float]:
    """Best one-thread float32 multiply-adds per second of one large matrix product, by engine."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    rates = {}
    a, b = rng.random((2048, 2048), dtype=np.float32), rng.random((2048, 2048), dtype=np.float32)
    best = min(_timed(lambda: a @ b) for _ in range(repeats + 1))
    rates["numpy BLAS sgemm 2048³"] = 2048**3 / best
    n = 1024
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "matmul",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = _one_thread_session(model.SerializeToString())
    feeds = {"a": a[:n, :n].copy(), "b": b[:n, :n].copy()}
    best = min(_timed(lambda: session.run(None, feeds)) for _ in range(repeats + 1))
    rates[f"ONNX Runtime MatMul {n}³"] = n**3 / best
    return rates


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def active_channels(folder: Path, blur_sigmas_px=(0, 2, 5, 10)) -> list[tuple[int, int]]:
    """(active, total) channels after each ReLU of the bundled v2 network, over every 84² patch
    of every plane in ``folder`` except label masks (the patches as ``miq predict`` cuts them), each plane also
    blurred by a Gaussian of each sigma in ``blur_sigmas_px`` (px). Active = positive somewhere."""
    from scipy.ndimage import gaussian_filter

    import miq
    from miq.assessment import prepare_patches
    from miq.io import find_images, read_planes
    from miq.model.network import load_network
    from miq.model.package import BUNDLED_MODEL, ModelPackage

    network = load_network(ModelPackage.open(BUNDLED_MODEL))
    model = miq.load_model("default", threads=1)
    peaks: dict[str, torch.Tensor] = {}

    def record(name):
        def hook(_module, _inputs, output):
            peak = output.amax(dim=(0, 2, 3))
            peaks[name] = torch.maximum(peaks[name], peak) if name in peaks else peak

        return hook

    for name, module in network.named_modules():
        if isinstance(module, nn.ReLU):
            module.register_forward_hook(record(name))
    n_patches = 0
    for path in find_images([str(folder)]):
        if "mask" in path.stem.lower():  # label images, not fluorescence
            continue
        for plane in read_planes(path):
            for sigma in blur_sigmas_px:
                data = plane.data.astype(np.float32)
                data = gaussian_filter(data, sigma) if sigma else data
                if min(data.shape) < 84:
                    continue
                patches = prepare_patches(data, model)[1]
                with torch.no_grad():
                    network(torch.from_numpy(patches)[:, None])
                n_patches += len(patches)
    print(
        f"\nv2's channels active on {n_patches} patches of {folder} (blur σ {blur_sigmas_px} px):"
    )
    counts = []
    for name, peak in peaks.items():
        counts.append((int((peak > 0).sum()), peak.numel()))
        print(f"  after {name:16s} {counts[-1][0]:3d} of {counts[-1][1]:3d}")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--data", type=Path, help="folder of real images for the active-channel count"
    )
    args = parser.parse_args()
    torch.manual_seed(0)

    rates = core_multiply_add_rate(args.repeats)
    ceiling = max(rates.values())
    print("one core's float32 multiply-add rate (one large matrix product, best of runs):")
    for engine, rate in rates.items():
        print(f"  {engine:32s} {rate / 1e9:6.1f} G/s")

    candidates = [("compact width 16 (v2's, v3's)", build_network("compact", width=16))]
    candidates += [(f"compact width {w}", build_network("compact", width=w)) for w in (12, 11)]
    candidates += [  # narrowed layers (docs/lab-notebook/slim-network.md); v3-slim's first
        (f"compact channels {','.join(map(str, c))}", build_network("compact", channels=c))
        for c in COMPACT_CHANNELS
    ]
    candidates += [
        (f"stride4 width {w}", build_network("stride4", width=w)) for w in (24, 32, 40, 48)
    ]
    candidates += [
        (f"separable width {w}", build_network("separable", width=w)) for w in (16, 24, 32, 48)
    ]

    layers = layer_multiply_adds(candidates[0][1])
    total = sum(macs for _, macs in layers)
    print(f"\nv2's multiply-adds per 84² patch: {total:,}")
    for label, macs in layers:
        print(f"  {label:44s} {macs:10,d}  {100 * macs / total:5.1f} %")
    if args.data is not None:
        active_channels(args.data)

    print(
        f"\nONNX Runtime {ort.__version__}, one thread, {PATCHES} patches in batches of {BATCH};"
        f" floor = multiply-adds / {ceiling / 1e9:.1f} G/s"
    )
    header = f"{'network':40s} {'parameters':>10s} {'G MAC':>6s} {'ms':>7s} {'x v2':>6s}"
    print(f"{header} {'G MAC/s':>8s} {'floor ms':>8s}")
    baseline = None
    for label, net in candidates:
        n_params = sum(p.numel() for p in net.parameters())
        giga_macs = PATCHES * sum(macs for _, macs in layer_multiply_adds(net)) / 1e9
        ms = onnx_ms(net, args.repeats)
        baseline = baseline or ms
        print(
            f"{label:40s} {n_params:10d} {giga_macs:6.2f} {ms:7.1f} {ms / baseline:6.2f}"
            f" {giga_macs / ms * 1e3:8.1f} {giga_macs * 1e12 / ceiling:8.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
