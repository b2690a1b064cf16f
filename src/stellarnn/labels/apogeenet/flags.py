"""APOGEENet result flags, summary flags and output fields (Astra APOGEENet documentation; REFERENCE.md).

Bits of ``result_flags``:

=====  ==========================  ==========================================================
bit    name                        set when
=====  ==========================  ==========================================================
2^0    flag_runtime_exception      an exception was raised while processing the spectrum
2^1    flag_unreliable_teff        Teff outside 1,700 - 100,000 K
2^2    flag_unreliable_logg        log g outside -1 ... 6 (the documented range; the public
                                   code tests 10, which we do not copy)
2^3    flag_unreliable_fe_h        Teff < 3,200 K, or log g > 5, or [Fe/H] outside -4 ... +2
=====  ==========================  ==========================================================

``flag_warn`` = flag_unreliable_fe_h or a warn bit below; ``flag_bad`` = any of the four bits or a
bad bit below.

Information and out-of-distribution bits 2^4-2^10 (``flag_missing_chip``, ``flag_low_snr``,
``flag_featureless``, ``flag_ood_chi2``, ``flag_ood_chi2_bad``, ``flag_outside_training``,
``flag_far_outside_training``), shared with the other pipeline: their table is in :mod:`stellarnn.labels.pipeline`.
"""
from __future__ import annotations

import numpy as np

from ..emulator_ood import OOD_BAD_FLAGS, OOD_FLAG_BITS, OOD_WARN_FLAGS
from ..pipeline import POPULATION_FIELD, QUALITY_FIELDS, FieldInfo
from ..spectrum_information import INFORMATION_FLAG_BITS, INFORMATION_FLAGS

FLAG_RUNTIME_EXCEPTION = 1 << 0
FLAG_UNRELIABLE_TEFF = 1 << 1
FLAG_UNRELIABLE_LOGG = 1 << 2
FLAG_UNRELIABLE_FE_H = 1 << 3
FLAG_BITS = {"flag_runtime_exception": FLAG_RUNTIME_EXCEPTION, "flag_unreliable_teff": FLAG_UNRELIABLE_TEFF,
             "flag_unreliable_logg": FLAG_UNRELIABLE_LOGG, "flag_unreliable_fe_h": FLAG_UNRELIABLE_FE_H,
             **INFORMATION_FLAG_BITS, **OOD_FLAG_BITS}

TEFF_RANGE = (1700.0, 100_000.0)  # K
LOGG_RANGE = (-1.0, 6.0)  # dex
FE_H_RANGE = (-4.0, 2.0)  # dex
FE_H_MIN_TEFF = 3200.0  # K
FE_H_MAX_LOGG = 5.0  # dex

LOGG_UNIT = "dex(cm / s2)"
FIELDS: dict[str, FieldInfo] = {
    "teff": FieldInfo("K", "APOGEENet effective temperature"),
    "e_teff": FieldInfo("K", "Uncertainty of teff after the noise model"),
    "logg": FieldInfo(LOGG_UNIT, "APOGEENet surface gravity, log10(g / (cm s-2))"),
    "e_logg": FieldInfo(LOGG_UNIT, "Uncertainty of logg after the noise model"),
    "fe_h": FieldInfo("dex", "APOGEENet metallicity [Fe/H]"),
    "e_fe_h": FieldInfo("dex", "Uncertainty of fe_h after the noise model"),
    "raw_e_teff": FieldInfo("K", "Formal uncertainty of teff (std over noise draws) before the noise model"),
    "raw_e_logg": FieldInfo(LOGG_UNIT, "Formal uncertainty of logg (std over noise draws) before the noise model"),
    "raw_e_fe_h": FieldInfo("dex", "Formal uncertainty of fe_h (std over noise draws) before the noise model"),
    "result_flags": FieldInfo("", "APOGEENet bitmask: 1 runtime exception, 2 Teff outside 1700-100000 K, "
                                  "4 log g outside -1..6, 8 unreliable [Fe/H] (Teff<3200 K, log g>5 or "
                                  "[Fe/H] outside -4..+2), 16 missing chip, 32 S/N < 5, 64 featureless "
                                  "(no stellar lines), 128 ood_chi2 > 25, 256 ood_chi2 > 100, 512 labels outside "
                                  "the training box, 1024 far outside it", "int64"),
    "flag_warn": FieldInfo("", "Warning: result_flags has bit 8, 128 or 512", "bool"),
    "flag_bad": FieldInfo("", "Bad: result_flags has any of bits 1, 2, 4, 8, 16, 32, 64, 256, 1024", "bool"),
    **POPULATION_FIELD,
    **QUALITY_FIELDS,
}


def result_flags(teff, logg, fe_h, runtime_exception) -> np.ndarray:
    """The ``result_flags`` bitmask for arrays of labels (K, dex, dex) and exception booleans.

    Non-finite labels fail their range tests (they are outside every range).
    """
    teff, logg, fe_h = (np.asarray(a, dtype=np.float64) for a in (teff, logg, fe_h))
    exc = np.asarray(runtime_exception, dtype=bool)
    flags = np.where(exc, FLAG_RUNTIME_EXCEPTION, 0).astype(np.int64)
    with np.errstate(invalid="ignore"):
        bad_teff = ~((teff >= TEFF_RANGE[0]) & (teff <= TEFF_RANGE[1]))
        bad_logg = ~((logg >= LOGG_RANGE[0]) & (logg <= LOGG_RANGE[1]))
        bad_fe_h = (teff < FE_H_MIN_TEFF) | (logg > FE_H_MAX_LOGG) | ~((fe_h >= FE_H_RANGE[0]) & (fe_h <= FE_H_RANGE[1]))
    ran = ~exc
    flags |= np.where(ran & bad_teff, FLAG_UNRELIABLE_TEFF, 0)
    flags |= np.where(ran & bad_logg, FLAG_UNRELIABLE_LOGG, 0)
    flags |= np.where(ran & bad_fe_h, FLAG_UNRELIABLE_FE_H, 0)
    return flags


def flag_warn(flags) -> np.ndarray:
    """True where the unreliable-[Fe/H] bit or an OOD warn bit (2^7, 2^9) is set."""
    return (np.asarray(flags, dtype=np.int64) & (FLAG_UNRELIABLE_FE_H | OOD_WARN_FLAGS)) != 0


def flag_bad(flags) -> np.ndarray:
    """True where any of the runtime-exception or unreliable Teff / log g / [Fe/H] bits, an information
    bit (2^4-2^6) or an OOD bad bit (2^8, 2^10) is set."""
    mask = (FLAG_RUNTIME_EXCEPTION | FLAG_UNRELIABLE_TEFF | FLAG_UNRELIABLE_LOGG | FLAG_UNRELIABLE_FE_H
            | INFORMATION_FLAGS | OOD_BAD_FLAGS)
    return (np.asarray(flags, dtype=np.int64) & mask) != 0


def decode_flags(value: int) -> list[str]:
    """Names of the flags set in one ``result_flags`` value."""
    return [name for name, bit in FLAG_BITS.items() if int(value) & bit]
