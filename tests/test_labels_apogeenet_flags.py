import numpy as np

from stellarnn.labels.apogeenet.flags import (FIELDS, FLAG_RUNTIME_EXCEPTION, FLAG_UNRELIABLE_FE_H,
                                              FLAG_UNRELIABLE_LOGG, FLAG_UNRELIABLE_TEFF, decode_flags, flag_bad,
                                              flag_warn, result_flags)


def test_bits_and_summary_flags():
    teff = np.array([5000, 1500, 5000, 3000, 5000, 5000, np.nan])
    logg = np.array([3.0, 3.0, 7.0, 3.0, 5.5, 3.0, 3.0])
    fe_h = np.array([0.0, 0.0, 0.0, 0.0, 0.0, -4.5, 0.0])
    exc = np.array([False] * 6 + [True])
    f = result_flags(teff, logg, fe_h, exc)
    assert f.tolist() == [0, FLAG_UNRELIABLE_TEFF | FLAG_UNRELIABLE_FE_H, FLAG_UNRELIABLE_LOGG | FLAG_UNRELIABLE_FE_H,
                          FLAG_UNRELIABLE_FE_H, FLAG_UNRELIABLE_FE_H, FLAG_UNRELIABLE_FE_H, FLAG_RUNTIME_EXCEPTION]
    assert flag_warn(f).tolist() == [False, True, True, True, True, True, False]
    assert flag_bad(f).tolist() == [False] + [True] * 6
    assert decode_flags(f[2]) == ["flag_unreliable_logg", "flag_unreliable_fe_h"]
    # log g range is the documented -1..6, not the public code's 10
    assert result_flags([5000], [6.5], [0.0], [False])[0] & FLAG_UNRELIABLE_LOGG


def test_fields_are_the_documented_ones():
    assert list(FIELDS) == ["teff", "e_teff", "logg", "e_logg", "fe_h", "e_fe_h", "raw_e_teff", "raw_e_logg",
                            "raw_e_fe_h", "result_flags", "flag_warn", "flag_bad", "population", "good_fraction_blue",
                            "good_fraction_green", "good_fraction_red", "snr_error", "snr_robust", "line_contrast",
                            "line_snr", "ood_chi2", "ood_label_distance"]
    assert FIELDS["teff"].unit == "K" and FIELDS["result_flags"].dtype == "int64"


def test_information_and_ood_bits_are_bad_or_warn():
    from stellarnn.labels.emulator_ood import (FLAG_FAR_OUTSIDE_TRAINING, FLAG_OOD_CHI2, FLAG_OOD_CHI2_BAD,
                                               FLAG_OUTSIDE_TRAINING)
    from stellarnn.labels.spectrum_information import FLAG_FEATURELESS, FLAG_LOW_SNR, FLAG_MISSING_CHIP

    bad = [FLAG_MISSING_CHIP, FLAG_LOW_SNR, FLAG_FEATURELESS, FLAG_OOD_CHI2_BAD, FLAG_FAR_OUTSIDE_TRAINING]
    warn = [FLAG_OOD_CHI2, FLAG_OUTSIDE_TRAINING]
    assert flag_bad(bad).all() and not flag_warn(bad).any()
    assert flag_warn(warn).all() and not flag_bad(warn).any()
    assert decode_flags(FLAG_MISSING_CHIP | FLAG_OOD_CHI2) == ["flag_missing_chip", "flag_ood_chi2"]
