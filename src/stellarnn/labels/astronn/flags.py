"""AstroNN result flags, summary flags and output fields (Astra AstroNN documentation; REFERENCE.md).

Bits of ``result_flags``:

=====  ======================  ===============================================================
bit    name                    set when
=====  ======================  ===============================================================
2^0    flag_uncertain_logg     e_logg > 0.2 and ``|e_logg / logg|`` > 0.075
2^1    flag_uncertain_teff     e_teff > 300 K
2^2    flag_uncertain_fe_h     ``|e_fe_h / fe_h|`` > 0.12
2^11   flag_no_result          exception raised when loading (or processing) the spectrum
=====  ======================  ===============================================================

``flag_warn`` = any bit set (result_flags > 0); ``flag_bad`` = bits 0, 1 and 2 all set, 2^11 (no labels at
all), or a bad bit below.

Information and out-of-distribution bits 2^4-2^10 (``flag_missing_chip``, ``flag_low_snr``,
``flag_featureless``, ``flag_ood_chi2``, ``flag_ood_chi2_bad``, ``flag_outside_training``,
``flag_far_outside_training``), shared with the other pipeline: their table is in :mod:`stellarnn.labels.pipeline`.
"""
from __future__ import annotations

import numpy as np

from ..emulator_ood import OOD_BAD_FLAGS, OOD_FLAG_BITS
from ..pipeline import POPULATION_FIELD, QUALITY_FIELDS, FieldInfo
from ..spectrum_information import INFORMATION_FLAG_BITS, INFORMATION_FLAGS
from .network import OUTPUT_LABELS

FLAG_UNCERTAIN_LOGG = 1 << 0
FLAG_UNCERTAIN_TEFF = 1 << 1
FLAG_UNCERTAIN_FE_H = 1 << 2
FLAG_NO_RESULT = 1 << 11
FLAG_BITS = {"flag_uncertain_logg": FLAG_UNCERTAIN_LOGG, "flag_uncertain_teff": FLAG_UNCERTAIN_TEFF,
             "flag_uncertain_fe_h": FLAG_UNCERTAIN_FE_H, "flag_no_result": FLAG_NO_RESULT,
             **INFORMATION_FLAG_BITS, **OOD_FLAG_BITS}
E_LOGG_LIMIT = 0.2  # dex
E_LOGG_RELATIVE_LIMIT = 0.075
E_TEFF_LIMIT = 300.0  # K
E_FE_H_RELATIVE_LIMIT = 0.12

LOGG_UNIT = "dex(cm / s2)"
_ELEMENT_NAMES = {"c_h": "[C/H]", "c_1_h": "[C I/H] (neutral carbon lines)", "n_h": "[N/H]", "o_h": "[O/H]",
                  "na_h": "[Na/H]", "mg_h": "[Mg/H]", "al_h": "[Al/H]", "si_h": "[Si/H]", "p_h": "[P/H]",
                  "s_h": "[S/H]", "k_h": "[K/H]", "ca_h": "[Ca/H]", "ti_h": "[Ti/H]",
                  "ti_2_h": "[Ti II/H] (ionised titanium lines)", "v_h": "[V/H]", "cr_h": "[Cr/H]",
                  "mn_h": "[Mn/H]", "fe_h": "[Fe/H]", "co_h": "[Co/H]", "ni_h": "[Ni/H]"}


def _label_doc(name: str) -> tuple[str, str]:
    if name == "teff":
        return "K", "effective temperature"
    if name == "logg":
        return LOGG_UNIT, "surface gravity log10(g / (cm s-2))"
    return "dex", f"abundance {_ELEMENT_NAMES[name]}"


def _build_fields() -> dict[str, FieldInfo]:
    fields: dict[str, FieldInfo] = {}
    for name in OUTPUT_LABELS:
        unit, what = _label_doc(name)
        fields[name] = FieldInfo(unit, f"AstroNN {what} (mean over MC-dropout passes)")
        fields[f"e_{name}"] = FieldInfo(unit, f"Uncertainty of {name} after the noise model")
        fields[f"raw_{name}"] = FieldInfo(unit, f"AstroNN {what} before the noise model")
        fields[f"raw_e_{name}"] = FieldInfo(unit, f"Formal uncertainty of {name} (MC dropout + predictive "
                                                  f"variance) before the noise model")
    fields["result_flags"] = FieldInfo("", "AstroNN bitmask: 1 uncertain log g (e_logg>0.2 and |e_logg/logg|>0.075), "
                                           "2 uncertain Teff (e_teff>300 K), 4 uncertain [Fe/H] "
                                           "(|e_fe_h/fe_h|>0.12), 16 missing chip, 32 S/N < 5, 64 featureless "
                                           "(no stellar lines), 128 ood_chi2 > 25, 256 ood_chi2 > 100, 512 labels "
                                           "outside the training box, 1024 far outside it, 2048 no result "
                                           "(spectrum could not be loaded or processed)", "int64")
    fields["flag_warn"] = FieldInfo("", "Warning: any result_flags bit set", "bool")
    fields["flag_bad"] = FieldInfo("", "Bad: uncertain log g, Teff and [Fe/H] bits all set, or any of bits 16, "
                                       "32, 64, 256, 1024, 2048", "bool")
    fields.update(POPULATION_FIELD)
    fields.update(QUALITY_FIELDS)
    return fields


FIELDS = _build_fields()


def result_flags(teff, logg, fe_h, e_teff, e_logg, e_fe_h, no_result) -> np.ndarray:
    """The ``result_flags`` bitmask from arrays of labels and their (noise-model) uncertainties."""
    teff, logg, fe_h, e_teff, e_logg, e_fe_h = (np.asarray(a, dtype=np.float64)
                                                for a in (teff, logg, fe_h, e_teff, e_logg, e_fe_h))
    nores = np.asarray(no_result, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        unc_logg = (e_logg > E_LOGG_LIMIT) & (np.abs(e_logg / logg) > E_LOGG_RELATIVE_LIMIT)
        unc_teff = e_teff > E_TEFF_LIMIT
        unc_fe_h = np.abs(e_fe_h / fe_h) > E_FE_H_RELATIVE_LIMIT
    flags = np.where(nores, FLAG_NO_RESULT, 0).astype(np.int64)
    ran = ~nores
    flags |= np.where(ran & unc_logg, FLAG_UNCERTAIN_LOGG, 0)
    flags |= np.where(ran & unc_teff, FLAG_UNCERTAIN_TEFF, 0)
    flags |= np.where(ran & unc_fe_h, FLAG_UNCERTAIN_FE_H, 0)
    return flags


def flag_warn(flags) -> np.ndarray:
    """True where any bit is set."""
    return np.asarray(flags, dtype=np.int64) > 0


def flag_bad(flags) -> np.ndarray:
    """True where the uncertain log g, Teff and [Fe/H] bits are all set, or an information bit (2^4-2^6),
    an OOD bad bit (2^8, 2^10) or no result (2^11) is set."""
    need = FLAG_UNCERTAIN_LOGG | FLAG_UNCERTAIN_TEFF | FLAG_UNCERTAIN_FE_H
    flags = np.asarray(flags, dtype=np.int64)
    return ((flags & need) == need) | ((flags & (INFORMATION_FLAGS | OOD_BAD_FLAGS | FLAG_NO_RESULT)) != 0)


def decode_flags(value: int) -> list[str]:
    """Names of the flags set in one ``result_flags`` value."""
    return [name for name, bit in FLAG_BITS.items() if int(value) & bit]
