"""Where the in/out-of-focus call falls on Gaussian blur: the blurred images of
``benchmarks.screen`` (the same draws: σ uniform in 2–8 px, fresh shot noise), each rated by
every model given, and the σ of those still flagged in focus.

Gaussian blur is not defocus (the levels are defined by the simulator's defocus PSF), so this
says where a model draws its line on a blur users often try first, not whether it is right.

Usage: python -m benchmarks.blur_threshold [--models default v3-slim] [--count 200] [--side 2048]
"""

from __future__ import annotations

import argparse

from benchmarks.common import limit_threads

limit_threads()

import numpy as np  # noqa: E402


def main() -> None:
    import miq
    from benchmarks.screen import screen_images

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["default", "v3-slim"])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--side", type=int, default=2048)
    args = parser.parse_args()
    models = [miq.load_model(name, threads=1) for name in args.models]
    sigmas, flagged = [], []
    for _, image, sigma in screen_images(args.count, args.side, 0.4):
        if sigma > 0:
            sigmas.append(sigma)
            flagged.append([bool(miq.assess(image, model=m).in_focus) for m in models])
    sigmas, flagged = np.asarray(sigmas), np.asarray(flagged)
    print(f"{len(sigmas)} images blurred by a Gaussian of σ 2–8 px")
    for name, column in zip(args.models, flagged.T):
        inside = np.sort(sigmas[column])
        out = sigmas[~column]
        print(
            f"{name}: {column.sum()} flagged in focus (σ {', '.join(f'{s:.2f}' for s in inside)}"
            f" px); smallest σ called out of focus: {out.min():.2f} px"
            if len(out)
            else f"{name}: all {column.sum()} flagged in focus"
        )


if __name__ == "__main__":
    main()
