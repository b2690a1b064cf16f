"""Tests of stellarnn.cli_arguments: the argparse types every command parses its numbers and outputs with."""
from __future__ import annotations

import argparse
import os

import pytest

from stellarnn.cli_arguments import (V_MICRO_RANGE_KMS, encodable_text, float_in_range, non_negative_int,
                                     output_file, output_folder, plot_file, positive_float, positive_int,
                                     torch_device)

Refused = argparse.ArgumentTypeError


@pytest.mark.parametrize("parse, good, bad", [
    (positive_int, [("1", 1), ("12", 12)], ["0", "-3", "2.5", "x", ""]),
    (non_negative_int, [("0", 0), ("7", 7)], ["-1", "1e3", "one"]),
    (positive_float, [("1e-3", 1e-3), ("2", 2.0)], ["0", "-1", "inf", "nan", "x"]),
])
def test_counts_and_positive_numbers(parse, good, bad):
    for text, value in good:
        assert parse(text) == value
    for text in bad:
        with pytest.raises(Refused):
            parse(text)


def test_ranges_are_inclusive_refuse_nan_and_name_the_unit():
    v_micro = float_in_range(*V_MICRO_RANGE_KMS, "km/s")
    assert v_micro("0") == 0.0 and v_micro("20") == 20.0
    with pytest.raises(Refused, match=r"must be within 0 to 20 km/s, got -3"):
        v_micro("-3")
    with pytest.raises(Refused, match="got nan"):
        v_micro("nan")
    with pytest.raises(Refused, match="a number expected, got 'fast'"):
        v_micro("fast")
    assert v_micro.__name__ == "number in [0, 20]"  # what argparse shows in its own messages


def test_output_files_get_their_suffix_and_refuse_what_cannot_be_written(tmp_path):
    assert plot_file(str(tmp_path / "kiel")) == tmp_path / "kiel.png"  # matplotlib's default, named up front
    assert plot_file(str(tmp_path / "new" / "k.pdf")) == tmp_path / "new" / "k.pdf"  # folders are created later
    with pytest.raises(Refused, match=r"unknown output extension '.jpg' \(expected .png, .pdf, .svg\)"):
        plot_file(str(tmp_path / "k.jpg"))
    with pytest.raises(Refused, match="is a folder, expected a file name"):
        plot_file(str(tmp_path))
    fits_or_csv = output_file(".fits", ".csv", ".fits.gz")
    assert fits_or_csv(str(tmp_path / "t.fits.gz")) == tmp_path / "t.fits.gz"
    with pytest.raises(Refused, match="file name longer than"):
        fits_or_csv(str(tmp_path / ("x" * 300 + ".fits")))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused_at_parse_time(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(Refused, match="is not writable"):
            output_folder(str(locked / "out"))
    finally:
        locked.chmod(0o700)


def test_output_folders(tmp_path):
    assert output_folder(str(tmp_path / "a" / "b")) == tmp_path / "a" / "b"
    (tmp_path / "f").write_text("")
    with pytest.raises(Refused, match="exists and is not a folder"):
        output_folder(str(tmp_path / "f"))


def test_devices_are_checked_against_the_hardware():
    import torch

    assert torch_device("auto") == "auto" and torch_device("cpu") == "cpu"
    with pytest.raises(Refused, match="is not a torch device"):
        torch_device("gpu0")
    with pytest.raises(Refused, match="unsupported device type"):
        torch_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(Refused, match="no CUDA device on this machine"):
            torch_device("cuda:0")


def test_text_any_codec_can_write():
    assert encodable_text("apStar-r12.fits") == "apStar-r12.fits"
    assert encodable_text("Å.fits") == "\\xc5.fits"
    assert encodable_text("bad\udcff.fits") == "bad\\udcff.fits"  # a non-UTF-8 file name, as Python sees it
