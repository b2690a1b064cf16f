"""Row building of the label pipelines, per-row dicts (before) against columns (after) -> bench/results/label_rows.json.

What is timed: turning a batch's network predictions into the final rows -- noise model, flags, the
information / OOD columns and bits, summary flags, row dicts -- i.e. each pipeline's predictions-to-rows
step plus :meth:`stellarnn.labels.pipeline.QualityChecks.rows`, without the network and without the
emulator's OOD measures (``QualityChecks(False)``: the label box only), which are timed elsewhere
(bench/labels.py).

* "before": the per-spectrum dict building of commit 8616993 (copied below as ``before_*``: a dict per
  spectrum from the prediction arrays, then a copy and ``update`` per row, ``flag_warn`` / ``flag_bad``
  called on one-element arrays per row);
* "after": the columns of ``columns_from_predictions`` and ``QualityChecks.rows`` (arrays until
  :func:`stellarnn.labels.pipeline.rows_from_columns`).

Both run on the same inputs in one process, alternating, and must give identical rows (checked).
Inputs: ``--n`` real apStar spectra (the data layer's two stars and their visits, with fresh noise),
predictions drawn around plausible labels (so that some rows carry flags).  Medians over ``--repeats``.

Usage: ``python bench/label_rows.py [--n 1024] [--repeats 7] [--out bench/results/label_rows.json]``
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from stellarnn.labels.apogeenet import flags as apogeenet_flags
from stellarnn.labels.apogeenet.pipeline import LABELS as APOGEENET_LABELS, PUBLISHED_NOISE_MODEL
from stellarnn.labels.astronn import flags as astronn_flags
from stellarnn.labels.astronn.network import OUTPUT_LABELS
from stellarnn.labels.noise_model import NoiseModel
from stellarnn.labels.pipeline import QualityChecks
from labels import test_batch  # bench/labels.py: real spectra with fresh noise
from timing import median_seconds


# ---------------------------------------------------------------- before (commit 8616993), for comparison
def before_astronn_rows(noise_model, value, raw_error):
    e = noise_model.apply(raw_error)
    j = {name: i for i, name in enumerate(OUTPUT_LABELS)}
    flags = astronn_flags.result_flags(value[:, j["teff"]], value[:, j["logg"]], value[:, j["fe_h"]],
                                       e[:, j["teff"]], e[:, j["logg"]], e[:, j["fe_h"]], np.zeros(len(value), bool))
    warn, bad = astronn_flags.flag_warn(flags), astronn_flags.flag_bad(flags)
    rows = []
    for i in range(len(value)):
        row = {}
        for name, k in j.items():
            row[name] = float(value[i, k])
            row[f"e_{name}"] = float(e[i, k])
            row[f"raw_{name}"] = float(value[i, k])
            row[f"raw_e_{name}"] = float(raw_error[i, k])
        row.update(result_flags=int(flags[i]), flag_warn=bool(warn[i]), flag_bad=bool(bad[i]), reason="")
        rows.append(row)
    return rows


def before_apogeenet_rows(noise_model, pred):
    raw_e = np.stack([pred["raw_e_teff"], pred["raw_e_logg"], pred["raw_e_fe_h"]], axis=1)
    e = noise_model.apply(raw_e)
    flags = apogeenet_flags.result_flags(pred["teff"], pred["logg"], pred["fe_h"], np.zeros(len(pred["teff"]), bool))
    warn, bad = apogeenet_flags.flag_warn(flags), apogeenet_flags.flag_bad(flags)
    rows = []
    for i in range(len(flags)):
        rows.append({"teff": float(pred["teff"][i]), "e_teff": float(e[i, 0]),
                     "logg": float(pred["logg"][i]), "e_logg": float(e[i, 1]),
                     "fe_h": float(pred["fe_h"][i]), "e_fe_h": float(e[i, 2]),
                     "raw_e_teff": float(raw_e[i, 0]), "raw_e_logg": float(raw_e[i, 1]),
                     "raw_e_fe_h": float(raw_e[i, 2]), "result_flags": int(flags[i]),
                     "flag_warn": bool(warn[i]), "flag_bad": bool(bad[i]), "reason": ""})
    return rows


def before_quality_rows(n, info, good_idx, good_rows, labels, fields, flag_warn, flag_bad):
    """QualityChecks.rows of commit 8616993 without an emulator (label box only)."""
    from stellarnn.labels.emulator_ood import FLAG_FEATURELESS, OOD_FLAG_BITS, label_distance, ood_flags
    from stellarnn.labels.pipeline import QUALITY_FIELDS
    from stellarnn.labels.spectrum_information import INFORMATION_FLAG_BITS

    def summarise(row, flags):
        row["result_flags"] = int(flags)
        row["flag_warn"] = bool(flag_warn(np.asarray([flags]))[0])
        row["flag_bad"] = bool(flag_bad(np.asarray([flags]))[0])
        return row

    good_idx = list(good_idx)
    m = len(good_idx)
    nan = np.full(m, np.nan)
    dist, bits = nan, np.zeros(m, dtype=np.int64)
    measures = {"line_snr": nan, "ood_chi2": nan}
    if m:
        teff, logg, fe_h = (np.asarray(labels[k], dtype=np.float64) for k in ("teff", "logg", "fe_h"))
        errors = {k: np.array([r.get(f"e_{k}", np.nan) for r in good_rows], dtype=np.float64)
                  for k in ("teff", "logg", "fe_h")}
        dist = label_distance(teff, logg, fe_h, errors=errors)
        bits = ood_flags(nan, np.full(m, np.inf), dist)
    names = {**INFORMATION_FLAG_BITS, **OOD_FLAG_BITS}
    label_keys = [k for k, f in fields.items() if f.dtype.startswith("float") and k not in QUALITY_FIELDS]
    out = [None] * n
    for k, i in enumerate(good_idx):
        row = dict(good_rows[k])
        row.update(info.columns(i), line_snr=float(measures["line_snr"][k]),
                   ood_chi2=float(measures["ood_chi2"][k]), ood_label_distance=float(dist[k]))
        flags = int(row["result_flags"]) | int(bits[k])
        if bits[k] & FLAG_FEATURELESS:
            row.update({key: np.nan for key in label_keys})
        new = [name for name, bit in names.items() if bits[k] & bit]
        if new and not row.get("reason"):
            row["reason"] = ("no stellar information: " if bits[k] & FLAG_FEATURELESS else "out of distribution: ") + \
                ", ".join(new) + f" (line_snr {row['line_snr']:.3g}, ood_chi2 {row['ood_chi2']:.3g}, " \
                f"label distance {row['ood_label_distance']:.3g})"
        out[i] = summarise(row, flags)
    for i in range(n):
        if out[i] is None:
            row = {key: (np.nan if f.dtype.startswith("float") else None) for key, f in fields.items()}
            row.update(info.columns(i), reason=info.reasons[i])
            out[i] = summarise(row, int(info.flags[i]))
    return out


# ---------------------------------------------------------------- after: the pipelines' own code
class _Columns:
    """The pipelines' ``columns_from_predictions`` without loading a network (they use only these attributes)."""

    def __init__(self, noise_model):
        self.noise_model = noise_model


def after_astronn_rows(quality, noise_model, n, info, good, value, raw_error):
    from stellarnn.labels.astronn.pipeline import AstroNNPipeline

    cols = AstroNNPipeline.columns_from_predictions(_Columns(noise_model), value, raw_error)
    labels = {k: value[:, OUTPUT_LABELS.index(k)] for k in ("teff", "logg", "fe_h")}
    return quality.rows(n, info, good, cols, labels, astronn_flags.FIELDS, (), astronn_flags.flag_warn,
                        astronn_flags.flag_bad)


def after_apogeenet_rows(quality, noise_model, n, info, good, pred):
    from stellarnn.labels.apogeenet.pipeline import APOGEENetPipeline

    cols = APOGEENetPipeline.columns_from_predictions(_Columns(noise_model), pred)
    labels = {k: pred[k] for k in APOGEENET_LABELS}
    return quality.rows(n, info, good, cols, labels, apogeenet_flags.FIELDS, (), apogeenet_flags.flag_warn,
                        apogeenet_flags.flag_bad)


# ---------------------------------------------------------------- inputs, timing
def same_rows(a: list[dict], b: list[dict]) -> bool:
    def same(x, y):
        return type(x) is type(y) and (x == y or (isinstance(x, float) and x != x and y != y))
    return len(a) == len(b) and all(ra.keys() == rb.keys() and all(same(ra[k], rb[k]) for k in ra)
                                    for ra, rb in zip(a, b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1024, help="spectra per batch")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "label_rows.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    batch = test_batch(args.n)
    quality = QualityChecks(False)
    info = quality.assess(batch)
    info.flags[::17] |= 1 << 5  # some spectra without information: their rows are NaN rows
    info.reasons = [r or ("low S/N (bench)" if f else "") for r, f in zip(info.reasons, info.flags)]
    good = np.flatnonzero(info.usable)
    m = len(good)
    results = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "torch_threads": 1,
                           "load_average_at_start": list(os.getloadavg()),
                           "note": "shared 2-core machine: absolute times are noisy; compare the ratios"},
               "n_spectra": args.n, "n_usable": int(m), "repeats": args.repeats, "pipelines": {}}

    # AstroNN: 22 labels in z space around plausible values
    value = np.column_stack([rng.normal(4800, 900, m), rng.normal(2.5, 1.2, m), rng.normal(-0.3, 0.4, (m, 20))])
    raw_error = np.column_stack([rng.uniform(20, 300, m), rng.uniform(0.02, 0.4, m), rng.uniform(0.01, 0.3, (m, 20))])
    astronn_nm = NoiseModel(list(OUTPUT_LABELS), [1.1] * 22, [5.0, 0.01] + [0.01] * 20, {})
    apogeenet_pred = {"teff": rng.normal(5000, 1200, m), "logg": rng.normal(2.8, 1.3, m),
                      "fe_h": rng.normal(-0.3, 0.5, m),
                      "raw_e_teff": rng.uniform(10, 400, m), "raw_e_logg": rng.uniform(0.01, 0.3, m),
                      "raw_e_fe_h": rng.uniform(0.01, 0.3, m)}
    cases = {
        "astronn": (lambda: before_quality_rows(args.n, info, good, before_astronn_rows(astronn_nm, value, raw_error),
                                                {k: value[:, OUTPUT_LABELS.index(k)] for k in ("teff", "logg", "fe_h")},
                                                astronn_flags.FIELDS, astronn_flags.flag_warn, astronn_flags.flag_bad),
                    lambda: after_astronn_rows(quality, astronn_nm, args.n, info, good, value, raw_error)),
        "apogeenet": (lambda: before_quality_rows(args.n, info, good,
                                                  before_apogeenet_rows(PUBLISHED_NOISE_MODEL, apogeenet_pred),
                                                  {k: apogeenet_pred[k] for k in APOGEENET_LABELS},
                                                  apogeenet_flags.FIELDS, apogeenet_flags.flag_warn,
                                                  apogeenet_flags.flag_bad),
                      lambda: after_apogeenet_rows(quality, PUBLISHED_NOISE_MODEL, args.n, info, good,
                                                   apogeenet_pred)),
    }
    for name, (before, after) in cases.items():
        rows_before, rows_after = before(), after()
        # the same values and types; the new rows are in field order (dict order is not part of the contract)
        identical = same_rows([dict(sorted(r.items())) for r in rows_before],
                              [dict(sorted(r.items())) for r in rows_after])
        if not identical:
            raise SystemExit(f"{name}: the column rows differ from the per-row dicts")
        t_before, t_after = [], []
        for _ in range(args.repeats):  # alternate, so that load changes hit both
            t_before.append(median_seconds(before, 1))
            t_after.append(median_seconds(after, 1))
        tb, ta = statistics.median(t_before), statistics.median(t_after)
        results["pipelines"][name] = {
            "n_fields": len(rows_after[0]), "rows_identical": identical,
            "before_seconds_median": tb, "after_seconds_median": ta,
            "before_rows_per_s": args.n / tb, "after_rows_per_s": args.n / ta, "speedup": tb / ta,
            "n_flagged_rows": int(sum(bool(r["result_flags"]) for r in rows_after))}
        print(f"{name}: {args.n / tb:,.0f} -> {args.n / ta:,.0f} rows/s ({tb / ta:.1f}x)", flush=True)
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    results["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
