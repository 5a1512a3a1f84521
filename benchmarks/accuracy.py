"""miq models against the classical focus measures on the data of ../shared/data, with 95 %
bootstrap intervals over fields of view.

Data sets (each skipped in one line when absent; whether a model saw one in training is read from
its model.json and printed with the set):

* held-out-fields/<source> — every plane of ../shared/data/held-out-fields (no model trains or
  calibrates on them; BBBC013 rows E–H: 48 fields × 2 channels) defocused by the simulator to
  each level with ``--seeds`` noise seeds. A field is one site (both channels together).
* 8 held-out planes — the in-focus planes of ``HELD_OUT`` (benchmarks/common.py), synthetic the
  same way; a field is one ``HELD_OUT`` pattern (all channels of a field of view together).
* all held-out fields — the two sets above pooled (the same images, each field its own: 48 + 5
  fields), the set the model issue states its targets on ("held-out-fields/ + the 8 earlier
  held-out planes"; ../shared/data/README.md: "together with the 8 held-out planes");
* held out by laboratory — every plane of the ``HELD_OUT_LAB`` sources (cellprofiler-fly),
  synthetic the same way; a field is one position (POS number). The next models are trained
  without them; the bundled v2 and fast-v1 saw two of its three positions (marked).
* BBBC006 real in/out — the 8 BBBC006 z00 fields (~32 µm out of focus: level 10, out of focus)
  and the 8 held-out in-focus planes (level 0, in focus); fields = files (fly planes: positions).
* BBBC006 z10 vs z00 — real, sharper z10 images against z00 (ordering: AUC = P(z10 rated
  sharper than z00)); z10's exact defocus is undocumented, so no level accuracy.
* deconwolf DAPI stack — 40 planes, 0.3 µm apart, best plane 19 (NA 1.45 widefield).
* DFNN microtubule stack — 31 single-plane files, 0.05 µm apart, best plane Abs0051.
  (One stack each: no intervals.)

The NEUBIAS Golgi stack is left out: its best plane is not documented.

Per model: exact and within-one accuracy, ECE, field CE (|accuracy − mean probability of the
reported level| over each field's images, averaged over fields: over- and under-confidence on
different fields do not cancel) and, beside them, the ECE and field CE a *perfectly calibrated*
model with the same confidences would score on these images by chance (mean, and the 97.5 %
point of 2 000 draws: `miq.metrics.calibration_floor`; a measured value below that point cannot
be told from sampling noise; the noise seeds of one simulated image share one draw, since the
model's answer rarely changes with the seed: the share of images whose seeds it does not get all
right or all wrong is printed below it, and accuracy.json also keeps the floor with every image
drawn on its own as ``independent``; per field, accuracy and mean confidence are kept as
``field_calibration``), how well the stated confidence tells the images whose level is
right from those whose level is wrong (ROC-AUC of the confidence for "right": 0.5 = no better
than chance, 1 = every wrong level stated less surely than every right one), the F-score of its
own in/out flag with no tuning, ROC-AUC and Spearman of its expected level, and the gross-error
check (true level ≥ 6 rated ≤ 2, true ≤ 2 rated ≥ 6). Per measure
(PLLS, FocusScore, variance of Laplacian, Tenengrad): ROC-AUC and Spearman. Every one of these is
``value [low, high]``: the 95 % percentile interval over ``--bootstrap`` resamples of whole fields
(seed 0; the same resamples for every method). Every model after the first also gets its
exact, ECE and field CE *minus the first model's*, with the interval of that difference over
the same resamples (paired: a field drawn counts for both models, so what they share cancels;
in ``accuracy.json`` also within-one and untuned F, as ``minus_first``). The F-score of the
10/90 protocol (Bray et al. 2012: threshold tuned on a random 10 %, F on the other 90 %) is
``mean ± sd`` over ``--splits`` splits, as before, for the models and the measures; best-plane
errors on the stacks.

Last, a table of the model issue's targets (gross errors, within-one, exact, untuned F, ECE and
field CE on the pooled held-out set; within-one and field CE held out by laboratory; the BBBC006
and best-plane checks), PASS or FAIL per model with the value (`GOALS`).

Each image is simulated once and rated by every model (models must share levels and optics).

``--model`` also takes the variants of `benchmarks.model_variants` (test-time augmentation
``NAME+tta4``, ensembles ``A&B``).

Usage: python -m benchmarks.accuracy [--model default --model fast | --model DIR ...]
       [--seeds 2] [--first-seed 0] [--splits 100] [--bootstrap 1000] [--limit-fields N]
       [--datasets TEXT ...] [-o OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    HELD_OUT_LAB,
    SHARED_DATA,
    add_first_seed,
    field_of_view,
    held_out_files,
    held_out_lab_files,
    new_held_out_files,
    shared_data_missing,
)
from benchmarks.model_variants import load_variant
from miq.errors import MiqError
from miq.evaluation import BEST_FOCUS, MODEL, dataset_metrics, evaluate, run_items
from miq.ground_truth import Item, manifest_items, stack_items, synthetic_items
from miq.io.write import json_ready
from miq.metrics import (
    accuracy_within,
    calibration,
    calibration_floor,
    f_score,
    group_bootstrap,
    group_calibration_error,
    group_resamples,
    roc_auc,
    spearman,
)
from miq.model.lineage import lineage
from miq.model.package import BUNDLED_MODELS, MODEL_VERSIONS

COMPARED = ("plls", "focus_score", "variance_of_laplacian", "tenengrad")  # focus_score also
# feeds the "miq best-focus" rows: miq's in-focus plateau refined by FocusScore (focal stacks).
OTHERS = ("local_focus_score_20", "brenner", "correlation_20")
REAL = SHARED_DATA / "real-defocus"
MODEL_STATS = (
    "exact",
    "within_one",
    "ece",
    "field_ce",
    "confidence_auc",
    "f_fixed",
    "roc_auc",
    "spearman",
)
MEASURE_STATS = ("roc_auc", "spearman")
GROSS_HIGH, GROSS_LOW = 6, 2  # true ≥ 6 rated ≤ 2, or true ≤ 2 rated ≥ 6: a gross error
#: every field no model trained or calibrated on: held-out-fields/ and the 8 held-out planes
POOLED = "all held-out fields (held-out-fields/ + 8 held-out planes)"


@dataclasses.dataclass
class DataSet:
    """Items of one data set, the field of view of each, and what it is."""

    name: str
    items: list[Item]
    fields: list[str]
    files: list[Path]
    info: dict
    bootstrap: bool = True  # False for single focal stacks: one field, no interval
    members: tuple[str, ...] = ()  # a pooled set: the data sets whose images it gathers

    @property
    def gathers(self) -> tuple[str, ...]:
        """The data set names of this set's images (its own name, or its members')."""
        return self.members or (self.name,)


def pooled_set(name: str, members: list[DataSet]) -> DataSet:
    """The images of ``members`` as one set (not rated again: the same items), each field still
    its own field; what it is in ``info``."""
    info = {
        "kind": "pooled: the images and fields of " + ", ".join(m.name for m in members),
        "n_fields": sum(m.info.get("n_fields", 0) for m in members),
    }
    return DataSet(
        name,
        [i for m in members for i in m.items],
        [f for m in members for f in m.fields],
        [f for m in members for f in m.files],
        info,
        members=tuple(m.name for m in members),
    )


def _manifest(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _file_of(item: Item) -> str:
    return item.name.split(" [", 1)[0].split(" @", 1)[0]


def synthetic_set(
    name: str, files: list[Path], model, seeds: int, limit: int | None, first_seed: int = 0
):
    """Every plane of ``files`` defocused to each level with noise seeds ``first_seed`` …
    ``first_seed + seeds − 1`` (the first ``limit`` fields only)."""
    by_field: dict[str, list[Path]] = {}
    for f in files:
        by_field.setdefault(field_of_view(f), []).append(f)
    kept = sorted(by_field)[:limit] if limit else sorted(by_field)
    items, fields, used = [], [], []
    for field in kept:
        for f in by_field[field]:
            own = synthetic_items(
                [f],
                dataset=name,
                seeds=seeds,
                first_seed=first_seed,
                optics=model.optics,
                levels=model.levels,
            )
            items += own
            fields += [field] * len(own)
            used.append(f)
    info = {
        "kind": "synthetic defocus of in-focus planes",
        "files": [str(f) for f in used],
        "seeds": list(range(first_seed, first_seed + seeds)),
        "noise_seed_rule": "1000 * level + seed",
        "n_fields": len(kept),
    }
    return DataSet(name, items, fields, used, info)


def build_datasets(
    model, seeds: int, limit: int | None, workdir: Path, first_seed: int = 0
) -> list[DataSet]:
    """Every data set that exists under ../shared/data (one line on stderr for each missing)."""
    sets: list[DataSet] = []

    def skip(name: str, why: str) -> None:
        print(f"{name}: skipped ({why})", file=sys.stderr)

    new = new_held_out_files()
    sources = sorted({f.parent.relative_to(SHARED_DATA) for f in new})
    if not sources:
        skip("held-out-fields", f"nothing under {SHARED_DATA / 'held-out-fields'}")
    for source in sources:
        files = [f for f in new if f.parent.relative_to(SHARED_DATA) == source]
        sets.append(synthetic_set(str(source), files, model, seeds, limit, first_seed))

    held = held_out_files()
    if held:
        sets.append(synthetic_set("8 held-out planes", held, model, seeds, limit, first_seed))
    else:
        skip("8 held-out planes", "no HELD_OUT file under in-focus/")
    if sources and held:  # the sets so far, pooled: the set the held-out targets are stated on
        sets.append(pooled_set(POOLED, list(sets)))
    lab = held_out_lab_files()
    if lab:
        name = f"held out by lab: {', '.join(HELD_OUT_LAB)}"
        sets.append(synthetic_set(name, lab, model, seeds, limit, first_seed))
    else:
        skip("held out by lab", f"no {', '.join(HELD_OUT_LAB)} under in-focus/")

    z00 = sorted((REAL / "bbbc006-hoechst-z00").glob("*.tif"))
    z10 = sorted((REAL / "bbbc006-hoechst-z10").glob("*.png"))
    name = "BBBC006 real in/out"
    if z00 and held:
        rows = [f"{f},32,0" for f in z00] + [f"{f},0,1" for f in held]
        m = _manifest(workdir / "real_in_out.csv", "file,defocus_um,in_focus", rows)
        items = manifest_items(m, dataset=name, um_per_level=model.um_per_level)
        fields = [field_of_view(_file_of(i)) for i in items]
        sets.append(DataSet(name, items, fields, z00 + held, {"manifest": m.read_text()}))
    else:
        skip(name, "no BBBC006 z00 images or held-out planes")
    name = "BBBC006 z10 vs z00"
    if z00 and z10:
        rows = [f"{f},1" for f in z10] + [f"{f},0" for f in z00]
        m = _manifest(workdir / "z10_vs_z00.csv", "file,in_focus", rows)
        items = manifest_items(m, dataset=name)
        info = {"manifest": m.read_text(), "note": "in_focus = 1 means 'sharper z10'"}
        sets.append(DataSet(name, items, [_file_of(i) for i in items], z10 + z00, info))
    else:
        skip(name, "no BBBC006 z10 or z00 images")

    name = "deconwolf DAPI stack"
    stack = REAL / "deconwolf-dapi-stack" / "dapi_001.tif"
    if stack.exists():
        items = stack_items(stack, 0.3, 19, dataset=name)
        info = {"z_step_um": 0.3, "best_z": 19}
        sets.append(DataSet(name, items, [i.stack for i in items], [stack], info, False))
    else:
        skip(name, f"{stack} not found")
    name = "DFNN microtubule stack"
    planes = sorted((REAL / "dfnn-microtubules" / "stack").glob("*.tif"))
    if planes:
        rows = []
        for f in planes:
            index = int(re.search(r"Abs(\d+)", f.name).group(1))
            rows.append(f"{f},{abs(index - 51) * 0.05:.2f},dfnn,{index}")
        m = _manifest(workdir / "dfnn.csv", "file,defocus_um,stack,stack_z", rows)
        items = manifest_items(m, dataset=name)
        info = {"z_step_um": 0.05, "best": "Abs0051"}
        sets.append(DataSet(name, items, [i.stack for i in items], planes, info, False))
    else:
        skip(name, "no DFNN stack planes")
    return sets


def rate_all(sets: list[DataSet], models: dict, measures: tuple[str, ...]) -> dict:
    """Per model label, one `ItemResult` per item of ``sets`` (in order): each image is loaded
    (simulated) once, rated by every model; the measures are computed once."""
    from tqdm import tqdm

    out = {label: [] for label in models}
    # each item once: a pooled set shares its members' items
    items = list({id(item): item for s in sets for item in s.items}.values())
    for item in tqdm(items, desc="rating", unit="image", file=sys.stderr):
        try:
            image = item.load()

            def load(image=image):
                return image

        except MiqError as exc:

            def load(exc=exc):
                raise exc

        cached = dataclasses.replace(item, load=load)
        first = None
        for label, model in models.items():
            own = measures if first is None else ()
            r = run_items([cached], model, measures=own, progress=False)[0]
            r.item = item
            if first is None:
                first = r
            else:
                r.measures = dict(first.measures)
            out[label].append(r)
    return out


def _arrays(results) -> dict:
    """The numbers the bootstrap needs, over the results that did not fail."""
    ok = [r for r in results if not r.error]
    levels = [r.item.level for r in ok]
    defocus = [r.item.defocus_um for r in ok]
    labels = [r.item.in_focus for r in ok]
    a = {"ok": ok}
    if ok and all(v is not None for v in levels):
        a["truth"] = np.array(levels)
        a["level"] = np.array([r.model["level"] for r in ok])
        # the probability the distribution gives the reported level
        a["confidence"] = np.array([r.model[f"prob_{r.model['level']}"] for r in ok])
    if ok and all(v is not None for v in defocus):
        a["rank_truth"] = np.array(defocus, dtype=float)
    elif "truth" in a:
        a["rank_truth"] = a["truth"].astype(float)
    if ok and all(v is not None for v in labels):
        a["out"] = np.array([not v for v in labels])
        a["flagged"] = np.array([not r.model["in_focus"] for r in ok])
    return a


def model_statistic(a: dict):
    """statistic(index, groups) → the MODEL_STATS of the model's ratings (NaN where unknown)."""
    nan = float("nan")
    score = np.array([r.score(MODEL) for r in a["ok"]])

    def statistic(i, g):
        out = dict.fromkeys(MODEL_STATS, nan)
        if "truth" in a:
            t, p, c = a["truth"][i], a["level"][i], a["confidence"][i]
            out.update(
                exact=accuracy_within(t, p, 0),
                within_one=accuracy_within(t, p, 1),
                ece=calibration(c, p == t).ece,
                field_ce=group_calibration_error(c, p == t, g),
                confidence_auc=roc_auc(p == t, c),
            )
        if "out" in a:
            out.update(f_fixed=f_score(a["out"][i], a["flagged"][i]))
            out.update(roc_auc=roc_auc(a["out"][i], score[i]))
        if "rank_truth" in a:
            out.update(spearman=spearman(a["rank_truth"][i], score[i]))
        return [out[k] for k in MODEL_STATS]

    return statistic


def measure_statistic(a: dict, measures: tuple[str, ...]):
    """statistic(index, groups) → ROC-AUC and Spearman of each measure, measure by measure."""
    scores = {m: np.array([r.score(m) for r in a["ok"]]) for m in measures}

    def statistic(i, g):
        values = []
        for m in measures:
            s = scores[m][i]
            values.append(roc_auc(a["out"][i], s) if "out" in a else float("nan"))
            values.append(spearman(a["rank_truth"][i], s) if "rank_truth" in a else float("nan"))
        return values

    return statistic


#: statistics also reported as a difference to the first model, paired over the same fields
PAIRED = ("exact", "within_one", "ece", "field_ce", "f_fixed")


def paired_difference(candidate, reference, fields, draws, intervals: bool) -> dict:
    """Each `PAIRED` statistic of ``candidate`` minus ``reference`` (two statistics of the
    `model_statistic` kind, on the same images), on all images and with its 95 % interval
    over the resamples ``draws`` of ``fields``: a field drawn counts for both models at once, so
    what they share (its content, its camera noise) cancels, and a difference can be told from
    chance on sets whose single-model intervals overlap. Keys as `MODEL_STATS`' (the
    `_interval` entries)."""

    def statistic(i, g):
        return np.subtract(candidate(i, g), reference(i, g))

    b = group_bootstrap(statistic, fields, resamples=draws)
    return {k: _interval(b, MODEL_STATS.index(k), intervals) for k in PAIRED if k in MODEL_STATS}


def _interval(b, k: int, bootstrap: bool) -> dict:
    value = float(b.value[k])
    if not bootstrap or value != value:
        return {"value": None if value != value else value, "low": None, "high": None}
    return {"value": value, "low": float(b.low[k]), "high": float(b.high[k])}


def seen_in_training(s: DataSet, model) -> dict:
    """Which of the data set's files the model, or a model it was built from (its starting
    weights, teacher or averaged runs: `miq.model.lineage`), trained on."""
    found = lineage(model.package.path)
    seen = found.seen(s.files)
    return {
        "known": bool(found.trained_on),
        "n_files": len(s.files),
        "seen": sorted(Path(k).name for k in seen),
        "seen_by": sorted(set(seen.values())),
        "lineage_complete": found.complete,
        "unresolved": found.unresolved,
    }


def _by_chance(a: dict, fields) -> dict:
    """ECE and field CE that a perfectly calibrated model with these confidences would score on
    these images by chance (`miq.metrics.calibration_floor`, the noise draws of one simulated
    image sharing their outcome): mean and 95 % range of draws; ``independent``: the same with
    every image drawn on its own (lower, and falling as noise seeds are added although the
    model's answers do not become more independent); ``split_draws``: the share of simulated
    images (one plane at one defocus) whose noise draws the model got neither all right nor all
    wrong, with ``n_images`` such images (None when no image has more than one draw)."""
    draws_of = [r.item.image for r in a["ok"]]
    shared = calibration_floor(a["confidence"], fields, draws_of=draws_of)
    alone = calibration_floor(a["confidence"], fields)
    _, image = np.unique(draws_of, return_inverse=True)
    n_draws = np.bincount(image)
    n_right = np.bincount(image, weights=a["level"] == a["truth"])
    several = n_draws > 1
    split = (n_right > 0) & (n_right < n_draws)
    return {
        "ece": {"value": shared.ece, "low": shared.ece_low, "high": shared.ece_high},
        "field_ce": {"value": shared.group, "low": shared.group_low, "high": shared.group_high},
        "independent": {
            "ece": {"value": alone.ece, "low": alone.ece_low, "high": alone.ece_high},
            "field_ce": {"value": alone.group, "low": alone.group_low, "high": alone.group_high},
        },
        "split_draws": float(split[several].mean()) if several.any() else None,
        "n_images": int(several.sum()),
        "n_draws": shared.n_draws,
    }


def _field_calibration(a: dict, fields) -> dict:
    """Per field: images, accuracy (exact level) and mean confidence, the parts of the field
    CE (|accuracy − confidence| averaged over fields)."""
    out = {}
    right = a["level"] == a["truth"]
    for f in np.unique(fields):
        own = fields == f
        out[str(f)] = {
            "n_images": int(own.sum()),
            "accuracy": float(right[own].mean()),
            "confidence": float(a["confidence"][own].mean()),
        }
    return out


def analyse(sets, models, rated, evaluations, measures, n_boot: int) -> dict:
    """Per data set: intervals of every model's and measure's statistics, F (10/90) and
    best-plane errors from `evaluate`, gross errors, and what each model saw in training."""
    out = {}
    for s in sets:
        first = next(iter(models))
        results = [r for r in rated[first] if r.item.dataset in s.gathers]
        a = _arrays(results)
        if not a["ok"]:
            continue
        index_of = {id(it): k for k, it in enumerate(s.items)}

        def fields_of(results, s=s, index_of=index_of) -> np.ndarray:
            return np.array([s.fields[index_of[id(r.item)]] for r in results])

        fields = fields_of(a["ok"])
        draws = group_resamples(fields, n_boot if s.bootstrap else 0, seed=0)
        entry = {
            "n_images": len(results),
            "n_failed": len(results) - len(a["ok"]),
            "n_fields": int(np.unique(fields).size),
            "intervals": s.bootstrap and np.unique(fields).size > 1,
            "info": s.info,
            "members": list(s.members),
            "models": {},
            "measures": {},
        }
        statistics = {}  # each model's statistic, for its difference to the first model's
        for label, model in models.items():
            own = [r for r in rated[label] if r.item.dataset in s.gathers]
            am = _arrays(own)
            statistics[label] = model_statistic(am)
            b = group_bootstrap(statistics[label], fields, resamples=draws)
            m = {k: _interval(b, i, entry["intervals"]) for i, k in enumerate(MODEL_STATS)}
            ev = evaluations[label][s.name]
            own_methods = ev["methods"].get(MODEL, {})
            m["f_split"] = {"mean": own_methods.get("f_mean"), "sd": own_methods.get("f_sd")}
            m["best_plane_error"] = own_methods.get("best_plane_error_mean")
            m["best_plane_error_best_focus"] = (
                ev["methods"].get(BEST_FOCUS, {}).get("best_plane_error_mean")
            )
            if "truth" in am:
                t, p = am["truth"], am["level"]
                m["gross_errors"] = {
                    f"true>={GROSS_HIGH} rated<={GROSS_LOW}": int(
                        np.sum((t >= GROSS_HIGH) & (p <= GROSS_LOW))
                    ),
                    f"true<={GROSS_LOW} rated>={GROSS_HIGH}": int(
                        np.sum((t <= GROSS_LOW) & (p >= GROSS_HIGH))
                    ),
                }
                m["confusion"] = ev["model"].get("confusion")
                own_fields = fields_of(am["ok"])
                m["by_chance"] = _by_chance(am, own_fields)
                m["field_calibration"] = _field_calibration(am, own_fields)
            if "out" in am and "level" in am:  # extremes of the level on real in/out images
                levels, out_of_focus = am["level"], am["out"]
                m["level_range"] = {
                    "out_of_focus_min": int(levels[out_of_focus].min(initial=99)),
                    "in_focus_max": int(levels[~out_of_focus].max(initial=-1)),
                }
            m["seen_in_training"] = seen_in_training(s, model)
            entry["models"][label] = m
        for label in list(models)[1:]:
            entry["models"][label]["minus_first"] = paired_difference(
                statistics[label], statistics[first], fields, draws, entry["intervals"]
            )
        b = group_bootstrap(measure_statistic(a, measures), fields, resamples=draws)
        ev = evaluations[first][s.name]
        for j, measure in enumerate(measures):
            v = ev["methods"].get(measure, {})
            entry["measures"][measure] = {
                "roc_auc": _interval(b, 2 * j, entry["intervals"]),
                "spearman": _interval(b, 2 * j + 1, entry["intervals"]),
                "f_split": {"mean": v.get("f_mean"), "sd": v.get("f_sd")},
                "best_plane_error": v.get("best_plane_error_mean"),
            }
        out[s.name] = entry
    return out


def _ci(x: dict) -> str:
    if x is None or x.get("value") is None:
        return "–"
    if x.get("low") is None:
        return f"{x['value']:.3f}"
    return f"{x['value']:.3f} [{x['low']:.3f}, {x['high']:.3f}]"


def _delta(m: dict, key: str) -> str:
    """A model's paired difference to the first model (``minus_first``), signed."""
    x = (m.get("minus_first") or {}).get(key)
    if x is None or x.get("value") is None:
        return "–"
    if x.get("low") is None:
        return f"{x['value']:+.3f}"
    return f"{x['value']:+.3f} [{x['low']:+.3f}, {x['high']:+.3f}]"


def _f(x: dict) -> str:
    if not x or x.get("mean") is None:
        return "–"
    return f"{x['mean']:.3f} ± {x['sd']:.3f}"


def _chance(x: dict | None) -> str:
    if not x or x["ece"]["value"] is None:
        return "–"
    ece, field = x["ece"], x["field_ce"]
    return (
        f"{ece['value']:.3f}, {field['value']:.3f} (97.5 %: {ece['high']:.3f}, {field['high']:.3f})"
    )


def _split(x: dict | None) -> str:
    if not x or x.get("split_draws") is None:
        return "–"
    return f"{x['split_draws']:.3f} of {x['n_images']}"


def _planes(x) -> str:
    return "–" if x is None else f"{x:.0f}"


ROWS = (  # label, where (models / measures / both), cell
    ("exact", "models", lambda m: _ci(m["exact"])),
    ("within-one", "models", lambda m: _ci(m["within_one"])),
    ("ECE", "models", lambda m: _ci(m["ece"])),
    ("field CE", "models", lambda m: _ci(m["field_ce"])),
    (
        "ECE, field CE of a perfectly calibrated model, by chance",
        "models",
        lambda m: _chance(m.get("by_chance")),
    ),
    (
        "simulated images whose noise draws are not all right or all wrong",
        "models",
        lambda m: _split(m.get("by_chance")),
    ),
    (
        "confidence separates right from wrong levels (ROC-AUC)",
        "models",
        lambda m: _ci(m["confidence_auc"]),
    ),
    ("F, no tuning", "models", lambda m: _ci(m["f_fixed"])),
    ("exact − the first model's (paired)", "models", lambda m: _delta(m, "exact")),
    ("ECE − the first model's (paired)", "models", lambda m: _delta(m, "ece")),
    ("field CE − the first model's (paired)", "models", lambda m: _delta(m, "field_ce")),
    ("F (10/90 split)", "both", lambda m: _f(m["f_split"])),
    ("ROC-AUC", "both", lambda m: _ci(m["roc_auc"])),
    ("Spearman", "both", lambda m: _ci(m["spearman"])),
    ("best-plane error (planes)", "both", lambda m: _planes(m["best_plane_error"])),
    (
        "best-plane error, `miq best-focus` rule",
        "models",
        lambda m: _planes(m["best_plane_error_best_focus"]),
    ),
    (
        f"gross errors (true ≥ {GROSS_HIGH} → ≤ {GROSS_LOW} / true ≤ {GROSS_LOW} → ≥ {GROSS_HIGH})",
        "models",
        lambda m: " / ".join(map(str, m["gross_errors"].values())) if "gross_errors" in m else "–",
    ),
)


def _seen_line(entry: dict, labels: list[str]) -> str:
    parts = []
    for label in labels:
        seen = entry["models"][label]["seen_in_training"]
        if not seen["known"]:
            parts.append(f"{label}: training files not recorded")
        elif seen["seen"]:
            parts.append(
                f"**{label}: NOT held out** ({' and '.join(seen['seen_by'])} trained on "
                f"{len(seen['seen'])} of its {seen['n_files']} files: {', '.join(seen['seen'])})"
            )
        elif not seen.get("lineage_complete", True):
            parts.append(
                f"{label}: held out as far as recorded ({len(seen['unresolved'])} model(s) it "
                "was built from did not record their training files)"
            )
        else:
            parts.append(f"{label}: held out")
    return "; ".join(parts)


def table(analysis: dict, labels: list[str], measures: tuple[str, ...]) -> str:
    """Markdown: one table per data set, models then measures as columns."""
    lines = []
    for name, entry in analysis.items():
        fields = f"{entry['n_fields']} field{'s' if entry['n_fields'] != 1 else ''}"
        failed = f", {entry['n_failed']} failed" if entry["n_failed"] else ""
        lines += [
            f"**{name}** — {entry['n_images']} images, {fields}{failed}; "
            + _seen_line(entry, labels),
            "",
            f"| metric | {' | '.join(labels)} | {' | '.join(measures)} |",
            "|---" * (1 + len(labels) + len(measures)) + "|",
        ]
        for label, where, cell in ROWS:
            cells = [cell(entry["models"][x]) for x in labels]
            if where == "both":
                cells += [cell(entry["measures"][x]) for x in measures]
            else:
                cells += ["–"] * len(measures)
            if all(c == "–" for c in cells):
                continue
            lines.append(f"| {label} | {' | '.join(cells)} |")
        lines.append("")
    return "\n".join(lines)


def gross_lines(analysis: dict, labels: list[str]) -> list[str]:
    """One line per model: its gross errors on every data set with true levels."""
    out = []
    for label in labels:
        parts, total = [], 0
        for name, entry in analysis.items():
            g = entry["models"][label].get("gross_errors")
            if g is None or entry["members"]:  # a pooled set: its members are counted
                continue
            high, low = g.values()
            total += high + low
            parts.append(f"{name} {high}/{low}")
        out.append(
            f"gross-error check, {label}: {total} in all (true ≥ {GROSS_HIGH} rated ≤ "
            f"{GROSS_LOW} / true ≤ {GROSS_LOW} rated ≥ {GROSS_HIGH}: " + ", ".join(parts) + ")"
        )
    return out


def _value(analysis: dict, dataset: str, label: str, *keys: str):
    """A number of ``analysis`` (None where the data set or statistic is absent)."""
    x = analysis.get(dataset, {}).get("models", {}).get(label)
    for k in keys:
        x = x.get(k) if isinstance(x, dict) else None
    return x


#: The targets of the model issue (v3 / fast-v2, issue 21), each on the data set it names:
#: (what, data set (substring of its name), the value's keys, test).
_LAB, _IN_OUT, _Z10 = "held out by lab", "BBBC006 real in/out", "BBBC006 z10 vs z00"
GOALS = (
    ("no gross error", POOLED, ("gross_errors",), lambda g: sum(g.values()) == 0),
    ("within-one ≥ 0.99", POOLED, ("within_one", "value"), lambda v: v >= 0.99),
    ("exact ≥ 0.85", POOLED, ("exact", "value"), lambda v: v >= 0.85),
    ("untuned in/out F ≥ 0.95", POOLED, ("f_fixed", "value"), lambda v: v >= 0.95),
    ("ECE ≤ 0.05", POOLED, ("ece", "value"), lambda v: v <= 0.05),
    ("field CE ≤ 0.08", POOLED, ("field_ce", "value"), lambda v: v <= 0.08),
    (f"{_LAB}: within-one ≥ 0.97", _LAB, ("within_one", "value"), lambda v: v >= 0.97),
    (f"{_LAB}: field CE ≤ 0.10", _LAB, ("field_ce", "value"), lambda v: v <= 0.10),
    ("BBBC006: every z00 image rated ≥ 8", _IN_OUT, ("level_range", "out_of_focus_min"),
     lambda v: v >= 8),
    ("BBBC006 in/out set: every in-focus plane (the 8) rated ≤ 2", _IN_OUT,
     ("level_range", "in_focus_max"), lambda v: v <= 2),
    ("BBBC006: every z10 image sharper than every z00", _Z10, ("roc_auc", "value"),
     lambda v: v == 1.0),
    ("deconwolf stack: `miq best-focus` within one plane", "deconwolf",
     ("best_plane_error_best_focus",), lambda v: v <= 1),
    ("DFNN stack: `miq best-focus` within one plane", "DFNN",
     ("best_plane_error_best_focus",), lambda v: v <= 1),
)  # fmt: skip


def goal_lines(analysis: dict, labels: list[str]) -> list[str]:
    """Markdown: each `GOALS` target, PASS / FAIL per model with its value (– where its data set
    is absent; "not held out" where the model or one it was built from trained on the set)."""
    lines = [
        "**Targets of the model issue** (on the data set each names; robustness and speed: "
        "`benchmarks.robustness`, `benchmarks.speed`)",
        "",
        f"| target | {' | '.join(labels)} |",
        "|---" * (1 + len(labels)) + "|",
    ]
    for what, where, keys, passes in GOALS:
        dataset = next((name for name in analysis if where in name), None)
        cells = []
        for label in labels:
            v = _value(analysis, dataset, label, *keys) if dataset else None
            if v is None:
                cells.append("–")
                continue
            if isinstance(v, dict):  # gross errors: their count
                shown = str(sum(v.values()))
            elif keys[0].startswith("best_plane"):
                shown = f"{v:.0f} plane(s)"
            elif isinstance(v, float):
                digits = 3  # more where rounding would hide why it passes or fails
                while passes(float(f"{v:.{digits}f}")) != passes(v) and digits < 8:
                    digits += 1
                shown = f"{v:.{digits}f}"
            else:
                shown = str(v)
            seen = _value(analysis, dataset, label, "seen_in_training", "seen")
            shown += "; not held out" if seen else ""
            cells.append(f"{'PASS' if passes(v) else 'FAIL'} ({shown})")
        lines.append(f"| {what} | {' | '.join(cells)} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help="bundled model name, model folder or variant (benchmarks.model_variants: NAME+tta4, "
        "A&B; repeatable; default: every bundled model version: "
        f"{', '.join(MODEL_VERSIONS)})",
    )
    parser.add_argument("--seeds", type=int, default=2, help="noise seeds per synthetic level")
    add_first_seed(parser)
    parser.add_argument("--splits", type=int, default=100, help="random 10/90 F-score splits")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples of the fields")
    parser.add_argument(
        "--limit-fields", type=int, default=None, help="first N fields of each synthetic set"
    )
    parser.add_argument(
        "--datasets", nargs="+", default=None, help="only data sets whose name contains one of"
    )
    parser.add_argument(
        "-o", "--output", default=None, help="folder for accuracy.json and per-model evaluations"
    )
    parser.add_argument("--all-measures", action="store_true", help="also LocalFocusScore, ...")
    args = parser.parse_args()
    if shared_data_missing():
        return 2
    t0 = time.time()
    names = args.model or list(MODEL_VERSIONS)  # not the aliases: each model once
    models = {}
    for name in names:
        model = load_variant(name, threads=1)
        label = f"{name} ({model.name})" if name in BUNDLED_MODELS else model.name
        if label in models:  # two folders of one model (e.g. calibrated or not): say which
            label = f"{model.name} ({name})"
        models[label] = model
    first = next(iter(models.values()))
    for label, model in models.items():
        if model.levels != first.levels or model.optics != first.optics:
            sys.exit(f"{label}: its levels or optics differ from {first.name}'s; not comparable")
    measures = COMPARED + (OTHERS if args.all_measures else ())
    with tempfile.TemporaryDirectory() as tmp:
        sets = build_datasets(first, args.seeds, args.limit_fields, Path(tmp), args.first_seed)
        if args.datasets:
            sets = [s for s in sets if any(d in s.name for d in args.datasets)]
        n = len({id(item) for s in sets for item in s.items})  # a pooled set adds none
        print(f"{len(models)} model(s), {len(sets)} data sets, {n} images", file=sys.stderr)
        rated = rate_all(sets, models, measures)
        info = {s.name: s.info for s in sets}
        root = Path(args.output) if args.output else Path(tmp) / "evaluation"
        evaluations = {}
        for k, (label, model) in enumerate(models.items()):
            folder = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or f"model{k}"
            ev = evaluate(
                [r.item for r in rated[label]],
                root / folder,
                model,
                measures=measures,
                n_splits=args.splits,
                datasets_info=info,
                results=rated[label],
                overwrite=True,
                progress=False,
            )
            evaluations[label] = dict(ev.metrics)
            for s in sets:  # a pooled set's 10/90 F and the like, over its members' images
                if s.members:
                    evaluations[label][s.name] = dataset_metrics(
                        [r for r in rated[label] if r.item.dataset in s.members],
                        methods=(MODEL, *measures),
                        n_levels=model.n_levels,
                        n_splits=args.splits,
                    )
        analysis = analyse(sets, models, rated, evaluations, measures, args.bootstrap)
    labels = list(models)
    print(table(analysis, labels, measures))
    print("\n".join(gross_lines(analysis, labels)))
    print("\n" + "\n".join(goal_lines(analysis, labels)))
    wall = time.time() - t0
    if args.output:
        doc = {
            "command": "python -m benchmarks.accuracy " + " ".join(sys.argv[1:]),
            "wall_s": round(wall, 1),
            "seeds": args.seeds,
            "first_seed": args.first_seed,
            "splits": args.splits,
            "bootstrap": {
                "resamples": args.bootstrap,
                "seed": 0,
                "level": 0.95,
                "unit": "field of view (benchmarks.common.field_of_view)",
                "method": "percentile",
            },
            "limit_fields": args.limit_fields,
            "models": {label: {"name": m.name, "path": str(m.path)} for label, m in models.items()},
            "measures": list(measures),
            "datasets": analysis,
        }
        path = Path(args.output) / "accuracy.json"
        text = json.dumps(json_ready(doc), indent=2, default=str, allow_nan=False)
        path.write_text(text, encoding="utf-8")
        print(f"\n(accuracy.json and per-model evaluation folders in {args.output})")
    print(f"\nwall time {wall:.0f} s ({wall / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
