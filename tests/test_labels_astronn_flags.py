import numpy as np

from stellarnn.labels.astronn.flags import (FIELDS, FLAG_NO_RESULT, FLAG_UNCERTAIN_FE_H, FLAG_UNCERTAIN_LOGG,
                                           FLAG_UNCERTAIN_TEFF, decode_flags, flag_bad, flag_warn, result_flags)
from stellarnn.labels.astronn.network import OUTPUT_LABELS


def test_bits_and_summary_flags():
    teff = np.array([5000, 5000, 5000, 5000, 5000, np.nan])
    logg = np.array([2.0, 2.0, 2.0, 4.0, 2.0, np.nan])
    fe_h = np.array([-0.5, -0.5, -0.5, -0.5, 0.01, np.nan])
    e_teff = np.array([50, 400, 50, 50, 400, np.nan])
    e_logg = np.array([0.05, 0.05, 0.25, 0.25, 0.3, np.nan])  # 0.25/4 = 0.0625 < 0.075
    e_fe_h = np.array([0.02, 0.02, 0.02, 0.02, 0.02, np.nan])
    nores = np.array([False] * 5 + [True])
    f = result_flags(teff, logg, fe_h, e_teff, e_logg, e_fe_h, nores)
    all3 = FLAG_UNCERTAIN_LOGG | FLAG_UNCERTAIN_TEFF | FLAG_UNCERTAIN_FE_H
    assert f.tolist() == [0, FLAG_UNCERTAIN_TEFF, FLAG_UNCERTAIN_LOGG, 0, all3, FLAG_NO_RESULT]
    assert flag_warn(f).tolist() == [False, True, True, False, True, True]
    assert flag_bad(f).tolist() == [False, False, False, False, True, True]  # no result: no labels, bad
    assert decode_flags(FLAG_NO_RESULT) == ["flag_no_result"]


def test_fields():
    assert len(FIELDS) == 22 * 4 + 3 + 1 + 9  # + population, the information / OOD columns
    assert FIELDS["population"].dtype == "str"
    for name in OUTPUT_LABELS:
        for key in (name, f"e_{name}", f"raw_{name}", f"raw_e_{name}"):
            assert key in FIELDS
    assert FIELDS["teff"].unit == "K" and FIELDS["mg_h"].unit == "dex"
    assert "c_1_h" in FIELDS and "ti_2_h" in FIELDS and FIELDS["flag_bad"].dtype == "bool"


def test_information_and_ood_bits_make_a_row_bad():
    from stellarnn.labels.emulator_ood import FLAG_OOD_CHI2, FLAG_OOD_CHI2_BAD
    from stellarnn.labels.spectrum_information import FLAG_FEATURELESS, FLAG_LOW_SNR, FLAG_MISSING_CHIP

    bad = [FLAG_MISSING_CHIP, FLAG_LOW_SNR, FLAG_FEATURELESS, FLAG_OOD_CHI2_BAD]
    assert flag_bad(bad).all() and flag_warn(bad).all()
    assert not flag_bad([FLAG_OOD_CHI2])[0] and flag_warn([FLAG_OOD_CHI2])[0]
    assert decode_flags(FLAG_FEATURELESS) == ["flag_featureless"]
