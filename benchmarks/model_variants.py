"""Levers on a trained model's certainty, measured rather than assumed (issue 21, item 2):
test-time flips/rotations and ensembles of models, as drop-in "models" for the benchmarks.

A variant is named by a spec that `load_variant` reads:

* ``NAME`` — a bundled model's name or a model folder, as ``miq --model`` takes;
* ``NAME+tta4`` / ``NAME+tta8`` — the model's uncalibrated patch distributions averaged over
  4 rotations (0°, 90°, 180°, 270°) or the 8 rotations and mirror images of each patch, then
  calibrated as the model is: 4× / 8× the network's work;
* ``A&B[&C…]`` — an ensemble: each member's calibrated patch distributions averaged (no further
  patch calibration), the whole-image temperature the geometric mean of the members'. The
  members must share levels, optics and patch size. Costs the sum of its members.

``python -m benchmarks.accuracy --model v3 --model v3+tta4 --model "v3&fast-v2"`` compares
them on every data set; ``python -m benchmarks.model_variants SPEC…`` times each on a
2048×2048 uint16 image (miq's rating as `miq predict` does it, one thread), against the plain
first spec in the same run, and prints ms per image and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import miq

__all__ = ["Augmented", "Ensemble", "load_variant"]


def _dihedral(patches: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the 8 rotations/mirror images of patches (N, P, P) (k < 4: rotations)."""
    out = np.rot90(patches, k % 4, axes=(1, 2))
    return np.ascontiguousarray(out[:, :, ::-1] if k >= 4 else out)


class Augmented:
    """A model whose patch distributions are averaged over ``n`` (4 or 8) rotations/mirror
    images of each patch (test-time augmentation); everything else is the model's."""

    def __init__(self, model, n: int) -> None:
        if n not in (4, 8):
            raise ValueError(f"test-time augmentation takes 4 or 8 transforms, not {n}")
        self.model, self.n = model, n
        self.name = f"{model.name}+tta{n}"

    def predict(self, patches: np.ndarray, calibrated: bool = True) -> np.ndarray:
        x = np.asarray(patches, dtype=np.float32)
        mean = sum(self.model.predict(_dihedral(x, k), calibrated=False) for k in range(self.n))
        mean = mean / self.n
        return self.model.calibrate(mean) if calibrated else mean

    def __getattr__(self, name):
        return getattr(self.model, name)


class Ensemble:
    """Models whose calibrated patch distributions are averaged; image temperature the
    geometric mean of theirs. ``package`` (training data, levels...) is the first member's."""

    def __init__(self, models: list) -> None:
        first = models[0]
        for m in models[1:]:
            if (m.levels, m.optics, m.patch_size) != (first.levels, first.optics, first.patch_size):
                raise ValueError(
                    f"{m.name} and {first.name} differ in levels, optics or patch size"
                )
        self.models = models
        self.name = "&".join(m.name for m in models)
        self.image_temperature = float(
            np.exp(np.mean([np.log(getattr(m, "image_temperature", 1.0)) for m in models]))
        )

    def predict(self, patches: np.ndarray, calibrated: bool = True) -> np.ndarray:
        return sum(m.predict(patches, calibrated=True) for m in self.models) / len(self.models)

    def calibrate(self, probabilities: np.ndarray) -> np.ndarray:
        return probabilities

    def __getattr__(self, name):
        return getattr(self.models[0], name)


def load_variant(spec: str, threads: int = 1):
    """The model or variant a spec names (see the module's description)."""
    if "&" in spec:
        return Ensemble([load_variant(part, threads) for part in spec.split("&")])
    name, _, lever = spec.partition("+")
    model = miq.load_model(name, threads=threads)
    if not lever:
        return model
    if lever in ("tta4", "tta8"):
        return Augmented(model, int(lever[3:]))
    raise ValueError(f"{spec}: unknown lever {lever!r} (tta4, tta8)")


def time_variant(model, image: np.ndarray, repeats: int) -> float:
    """Median seconds of `miq.assess` on ``image`` over ``repeats`` runs (after one warm-up)."""
    miq.assess(image, model)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        miq.assess(image, model)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description="ms per 2048² image of model variants")
    parser.add_argument("specs", nargs="+", help="model specs; the first is the baseline")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    image = rng.poisson(200 + 800 * rng.random((args.size, args.size))).astype(np.uint16)
    rows = [(spec, time_variant(load_variant(spec), image, args.repeats)) for spec in args.specs]
    base = rows[0][1]
    print(f"| variant | ms per {args.size}² image (one thread) | × {args.specs[0]} |")
    print("|---|---|---|")
    for spec, seconds in rows:
        print(f"| {spec} | {1000 * seconds:.0f} | {seconds / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
