"""A bad-input corpus, generated here, through every file-reading command (issue 20 items 5-9).

Every command is called in-process through ``stellarnn.cli.main``; for each input kind the
captured output must hold no traceback, an unreadable input must give a non-zero exit and a
one-line ``stellarnn: error:`` naming the file, and a multi-file ``run``/``fit`` must still
process the good file, keep a flagged row for every bad one and exit non-zero.

Kinds are "bad" (the reader must refuse them), "weak" (readable but without information:
zero, constant, noise... spectra, which the label pipelines flag; only "no traceback and a
row" is asserted for them) and "good".  To stay fast, ``spectra info`` and ``stokes invert``
see every kind (each call fails at the reader), ``spectra plot`` the readable kinds plus a
few bad ones, ``run astronn``/``run apogeenet`` and ``runner run`` all of them in one
multi-file call each (one model load), ``fit`` the bad kinds and four weak ones in one call.
"""
from __future__ import annotations

import gzip
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from stellarnn.cli import error_message, main
from stellarnn.cli_arguments import check_output_file, check_output_folder, OutputPathError
from stellarnn.spectra import SpectrumFileError, read_apstar, write_apstar

N = 8575
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _write(path: Path, flux, error, bitmask=None, header=None) -> Path:
    return write_apstar(path, np.atleast_2d(flux), np.atleast_2d(error), bitmask=bitmask,
                        header={"OBJID": path.stem[:60], **(header or {})})


def _edit_fits(src: Path, dst: Path, edit) -> Path:
    with fits.open(src) as hdul:
        hdus = fits.HDUList([h.copy() for h in hdul])
    edit(hdus)
    hdus.writeto(dst, overwrite=True, output_verify="silentfix")
    return dst


def build_corpus(folder: Path, real_apstar: Path) -> dict[str, tuple[Path, str]]:
    """{kind: (path, "good" | "weak" | "bad")} for 46 kinds of input, written under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    real = read_apstar(real_apstar, on_bad_pixels="mask").combined
    flux = np.where(real.ivar > 0, real.flux, np.nan)
    error = np.where(real.ivar > 0, real.error, np.nan)
    rng = np.random.default_rng(20)
    good = folder / "good.fits"
    shutil.copyfile(real_apstar, good)
    base = _write(folder / "base.fits", flux, error)
    raw = base.read_bytes()
    c: dict[str, tuple[Path, str]] = {"good": (good, "good")}

    def put(kind, path, expect):
        c[kind] = (Path(path), expect)

    def data(kind, f, e, bitmask=None, header=None, expect="bad"):
        put(kind, _write(folder / f"{kind}.fits", f, e, bitmask, header), expect)

    def raw_file(kind, content: bytes, name=None, expect="bad"):
        p = folder / (name or f"{kind}.fits")
        p.write_bytes(content)
        put(kind, p, expect)

    # files that are not FITS at all, or not whole
    raw_file("empty", b"")
    raw_file("text", b"TEFF,LOGG\n4700,4.5\n")
    raw_file("random_bytes", rng.bytes(5000))
    raw_file("truncated_half", raw[: len(raw) // 2])
    raw_file("truncated_block", raw[: len(raw) - 2880])
    raw_file("truncated_padding", raw[: len(raw) - 100])
    raw_file("header_without_end", raw[:2880].replace(b"END" + b" " * 77, b" " * 80))
    raw_file("truncated_gzip", gzip.compress(raw)[:20000], name="truncated_gzip.fits.gz")
    raw_file("zeros_block", b"\0" * 2880)
    # structure: HDUs, shapes, pixel counts
    put("primary_only", _edit_fits(base, folder / "primary_only.fits", lambda h: h.__delitem__(slice(1, None))), "bad")
    put("missing_bitmask_hdu", _edit_fits(base, folder / "missing_bitmask_hdu.fits",
                                          lambda h: h.__delitem__(slice(3, None))), "bad")
    put("table_in_hdu1", _edit_fits(base, folder / "table_in_hdu1.fits", lambda h: h.__setitem__(
        1, fits.BinTableHDU(Table({"flux": np.ones(10)})))), "bad")
    put("empty_flux_hdu", _edit_fits(base, folder / "empty_flux_hdu.fits",
                                     lambda h: h.__setitem__(1, fits.ImageHDU())), "bad")
    put("cube_flux", _edit_fits(base, folder / "cube_flux.fits",
                                lambda h: h.__setitem__(1, fits.ImageHDU(np.ones((2, 2, N))))), "bad")
    put("error_rows_differ", _edit_fits(base, folder / "error_rows_differ.fits",
                                        lambda h: h.__setitem__(2, fits.ImageHDU(np.ones((3, N))))), "bad")

    def short(h):
        for i in range(1, len(h)):
            h[i] = fits.ImageHDU(np.ones((1, 8000)))
    put("wrong_pixel_count", _edit_fits(base, folder / "wrong_pixel_count.fits", short), "bad")
    put("apvisit_layout", _edit_fits(base, folder / "apvisit_layout.fits", lambda h: [
        h.__setitem__(i, fits.ImageHDU(np.ones((3, 4096)))) for i in range(1, len(h))]), "bad")
    # values
    data("nan_flux", np.full(N, np.nan), error)
    data("inf_flux", np.full(N, np.inf), error)
    data("nan_error", flux, np.full(N, np.nan))
    data("zero_error", flux, np.zeros(N))
    data("negative_error", flux, -np.abs(np.nan_to_num(error, nan=0.1)) - 1e-3)
    data("all_zero_flux", np.zeros(N), np.full(N, 0.01), expect="weak")
    data("constant_flux", np.full(N, 100.0), np.full(N, 1.0), expect="weak")
    data("negative_flux", -np.abs(np.nan_to_num(flux, nan=1.0)), np.nan_to_num(error, nan=1.0), expect="weak")
    data("pure_noise", rng.normal(100, 10, N), np.full(N, 10.0), expect="weak")
    missing_chip = flux.copy()
    missing_chip[: N // 3] = np.nan
    data("missing_chip", missing_chip, error, expect="weak")
    data("all_masked", flux, error, bitmask=np.full((1, N), 0xFFFF, dtype=np.int64), expect="weak")
    data("huge_flux", np.full(N, 1e300), np.full(N, 1e299), expect="weak")
    data("one_good_pixel", np.where(np.arange(N) == 5000, 1.0, np.nan), np.full(N, 0.01), expect="weak")
    # header keywords of the wrong type or value
    data("nvisits_text", flux, error, header={"NVISITS": "three"})
    data("nvisits_negative", flux, error, header={"NVISITS": -2})
    data("nvisits_too_many", flux, error, header={"NVISITS": 5})
    data("snr_text", flux, error, header={"SNR": "high"})
    data("ra_boolean", flux, error, header={"RA": True})
    put("crval1_text", _edit_fits(base, folder / "crval1_text.fits",
                                  lambda h: h[1].header.__setitem__("CRVAL1", "4.179")), "bad")
    put("wrong_wavelength_grid", _edit_fits(base, folder / "wrong_wavelength_grid.fits",
                                            lambda h: h[1].header.__setitem__("CRVAL1", 3.0)), "bad")
    # paths
    (folder / "folder.fits").mkdir(exist_ok=True)
    put("folder_named_fits", folder / "folder.fits", "bad")
    put("missing_file", folder / "does_not_exist.fits", "bad")
    put("name_too_long", folder / ("x" * 300 + ".fits"), "bad")
    loop = folder / "symlink_loop.fits"
    if not loop.is_symlink():
        loop.symlink_to(loop.name)
    put("symlink_loop", loop, "bad")
    put("dangling_symlink", folder / "dangling.fits", "bad")
    if not (folder / "dangling.fits").is_symlink():
        (folder / "dangling.fits").symlink_to("nowhere.fits")
    unreadable = folder / "unreadable.fits"
    shutil.copyfile(good, unreadable)
    unreadable.chmod(0)
    put("no_read_permission", unreadable, "weak" if IS_ROOT else "bad")  # root reads it anyway
    odd_name = Path(os.fsdecode(bytes(folder / "odd") + b"_\xff\xfe.fits"))
    shutil.copyfile(good, odd_name)
    put("non_utf8_name", odd_name, "good")
    shutil.copyfile(good, folder / "spaces and ;quotes' $(echo x).fits")
    put("shell_characters_name", folder / "spaces and ;quotes' $(echo x).fits", "good")
    base.unlink()
    return c


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, real_file):
    folder = tmp_path_factory.mktemp("bad_inputs")
    c = build_corpus(folder, real_file("apstar-2M19485057"))
    yield c
    for path, _ in c.values():  # let pytest clean up the unreadable file
        if path.name == "unreadable.fits":
            path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def run_cli(capsys, argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "Traceback" not in out.out, out.err[-2000:]
    return rc, out.out, out.err


def _named(path: Path, err: str) -> bool:
    name = path.name if len(path.name) < 200 else path.name[:50]
    return name.encode("utf-8", "backslashreplace").decode() in err or name in err


KINDS = ["good", "empty", "text", "random_bytes", "truncated_half", "truncated_block", "truncated_padding",
         "header_without_end", "truncated_gzip", "zeros_block", "primary_only", "missing_bitmask_hdu",
         "table_in_hdu1", "empty_flux_hdu", "cube_flux", "error_rows_differ", "wrong_pixel_count",
         "apvisit_layout", "nan_flux", "inf_flux", "nan_error", "zero_error", "negative_error", "all_zero_flux",
         "constant_flux", "negative_flux", "pure_noise", "missing_chip", "all_masked", "huge_flux",
         "one_good_pixel", "nvisits_text", "nvisits_negative", "nvisits_too_many", "snr_text", "ra_boolean",
         "crval1_text", "wrong_wavelength_grid", "folder_named_fits", "missing_file", "name_too_long",
         "symlink_loop", "dangling_symlink", "no_read_permission", "non_utf8_name", "shell_characters_name"]


def test_the_corpus_has_at_least_40_kinds(corpus):
    assert sorted(corpus) == sorted(KINDS) and len(KINDS) >= 40
    assert sum(expect == "bad" for _, expect in corpus.values()) >= 30


@pytest.mark.parametrize("kind", KINDS)
def test_spectra_info(corpus, capsys, kind):
    path, expect = corpus[kind]
    rc, out, err = run_cli(capsys, ["spectra", "info", path])
    if expect == "good":
        assert rc == 0 and "apStar" in out
    elif expect == "bad":
        assert rc == 1
        lines = [line for line in err.splitlines() if line.startswith("stellarnn: error:")]
        assert len(lines) == 1 and _named(path, lines[0]), err


PLOTTED = ["good", "truncated_half", "nvisits_text", "folder_named_fits", "all_zero_flux", "missing_chip",
           "all_masked", "huge_flux", "one_good_pixel"]


@pytest.mark.parametrize("kind", PLOTTED)
def test_spectra_plot(corpus, capsys, tmp_path, kind):
    path, expect = corpus[kind]
    rc, out, err = run_cli(capsys, ["spectra", "plot", path, "-o", tmp_path / "p"])
    if expect == "good":  # -o without extension: the path reported is the one written
        assert rc == 0 and out.strip() == f"wrote {tmp_path / 'p.png'}" and (tmp_path / "p.png").is_file()
    elif expect == "bad":
        assert rc == 1 and _named(path, err) and not (tmp_path / "p.png").exists()


def _batch(corpus, expects=("good", "weak", "bad")):
    return [corpus[k][0] for k in KINDS if corpus[k][1] in expects]


@pytest.mark.parametrize("pipeline,option", [("astronn", ["--mc-passes", "2"]), ("apogeenet", ["--draws", "2"])])
def test_run_keeps_every_input_and_exits_non_zero(corpus, capsys, tmp_path, pipeline, option):
    files = _batch(corpus)
    table = tmp_path / "rows.fits"
    rc, out, err = run_cli(capsys, ["run", pipeline, *files, *option, "--threads", "1", "-o", table])
    assert rc == 1
    bad = [corpus[k][0] for k in KINDS if corpus[k][1] == "bad"]
    assert f"{len(bad)} of {len(files)} input file(s) could not be read" in err
    for path in bad:
        assert _named(path, err), path
    rows = Table.read(table, mask_invalid=False)
    assert len(rows) == len(files)  # one row per file (combined spectra), the bad ones flagged
    sources = [str(s) for s in rows["source"]]
    good_row = rows[[s.startswith(str(corpus["good"][0])) for s in sources].index(True)]
    assert np.isfinite(good_row["teff"]) and 3000 < good_row["teff"] < 9000
    unread = np.array([r != "" for r in rows["reason"]])
    assert unread.sum() >= len(bad) and np.all(np.isnan(rows["teff"][unread]))


def test_fit_flags_bad_spectra_and_fits_the_rest(corpus, capsys, tmp_path):
    weak = [corpus[k][0] for k in ("all_zero_flux", "missing_chip", "one_good_pixel", "all_masked")]
    files = [corpus["good"][0], *weak, *_batch(corpus, ("bad",))]
    table = tmp_path / "fit.fits"
    rc, out, err = run_cli(capsys, ["fit", *files, "--threads", "1", "-o", table])
    assert rc == 1 and "file(s) unreadable" in err
    rows = Table.read(table, mask_invalid=False)
    assert len(rows) == len(files)
    assert not rows["flag_bad"][0] and np.isfinite(rows["teff"][0])
    bad = rows[len(weak) + 1:]
    assert np.all(bad["flag_bad"]) and np.all(np.isnan(bad["teff"]))
    assert all(str(r) for r in bad["reason"])


@pytest.fixture(scope="module")
def stokes_raster(tmp_path_factory):
    """A tiny level-1 Hinode SP raster (2 slit files) and its true-map FITS."""
    folder = tmp_path_factory.mktemp("stokes")
    assert main(["stokes", "synth", "--out", str(folder / "raster"), "--nx", "2", "--ny", "3"]) == 0
    return folder / "raster", folder / "raster_truth.fits"


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in ("good", "non_utf8_name", "shell_characters_name")])
def test_stokes_invert_on_bad_files(corpus, capsys, tmp_path, kind):
    path, _ = corpus[kind]
    rc, out, err = run_cli(capsys, ["stokes", "invert", path, "--out", tmp_path / "maps.fits"])
    assert rc != 0 and "stellarnn: error:" in err and not (tmp_path / "maps.fits").exists()


def test_stokes_invert_folder_mixing_good_and_bad_files(corpus, stokes_raster, capsys, tmp_path):
    raster, _ = stokes_raster
    mixed = tmp_path / "mixed"
    shutil.copytree(raster, mixed)
    shutil.copyfile(corpus["truncated_half"][0], mixed / "SP4D_bad_truncated.fits")
    (mixed / "SP4D_empty.fits").write_bytes(b"")
    rc, out, err = run_cli(capsys, ["stokes", "invert", mixed, "--out", tmp_path / "maps.fits"])
    assert rc != 0 or "skipped" in (out + err)  # refused in one line, or the bad files named as skipped


@pytest.mark.parametrize("kind", ["good", "empty", "truncated_half", "folder_named_fits", "name_too_long"])
def test_stokes_plot_on_spectrum_files(corpus, capsys, tmp_path, kind):
    rc, out, err = run_cli(capsys, ["stokes", "plot", corpus[kind][0], "--out", tmp_path / "m.png"])
    assert rc == 1 and "stellarnn: error:" in err  # an apStar file is not a parameter-map file


def test_stokes_plot_reports_the_written_png(stokes_raster, capsys, tmp_path):
    _, truth = stokes_raster
    rc, out, err = run_cli(capsys, ["stokes", "plot", truth, "--out", tmp_path / "maps"])
    assert rc == 0 and out.strip() == f"wrote {tmp_path / 'maps.png'}" and (tmp_path / "maps.png").is_file()


BLASE_SOURCES = {"empty.csv": b"", "one_column.csv": b"1\n2\n3\n", "text.csv": b"wave,flux\na,b\nc,d\n",
                 "nan.csv": b"wave,flux\nnan,nan\nnan,nan\nnan,nan\n", "binary.npz": b"\x00\x01garbage",
                 "two_pixels.csv": b"5000,1\n5001,1\n"}


@pytest.mark.parametrize("name", sorted(BLASE_SOURCES))
def test_blase_clone_reader(capsys, tmp_path, name):
    source = tmp_path / name
    source.write_bytes(BLASE_SOURCES[name])
    rc, out, err = run_cli(capsys, ["blase", "clone", source, "--out", tmp_path / "c.pt", "--epochs", "1", "-q"])
    assert rc == 1 and "stellarnn: error:" in err and not (tmp_path / "c.pt").exists()


@pytest.mark.parametrize("kind", ["empty", "truncated_half", "text", "folder_named_fits"])
def test_blase_transfer_reader(corpus, capsys, tmp_path, kind):
    clone = tmp_path / "clone.pt"
    clone.write_bytes(b"not a checkpoint")
    rc, out, err = run_cli(capsys, ["blase", "transfer", clone, corpus[kind][0], "--out", tmp_path / "t.pt"])
    assert rc == 1 and "stellarnn: error:" in err and not (tmp_path / "t.pt").exists()


def _runner_run(corpus, capsys, tmp_path):
    files = [corpus[k][0] for k in ("good", "empty", "truncated_half", "nvisits_text", "all_zero_flux",
                                    "wrong_pixel_count")]
    return run_cli(capsys, ["runner", "run", "astronn", *files, "--workers", "0", "-q", "--out", tmp_path,
                            "--option", "mc_passes=2"])


def test_runner_run_on_the_corpus(corpus, capsys, tmp_path):
    rc, out, err = _runner_run(corpus, capsys, tmp_path)
    assert "6 rows (4 unreadable" in out
    for kind in ("empty", "truncated_half", "nvisits_text", "wrong_pixel_count"):
        assert f"SpectrumFileError: {corpus[kind][0]}" in out


def test_runner_run_exits_non_zero_when_an_input_failed(corpus, capsys, tmp_path):
    rc, out, err = _runner_run(corpus, capsys, tmp_path)
    assert rc == 1 and "4 input spectra failed (4 unreadable" in err and "Traceback" not in err


CSV_KINDS = {"text_values.csv": b"wavelength,flux\na,b\nc,d\n", "header_only.csv": b"wavelength,flux\n",
             "empty.csv": b"", "text_bitmask.csv": b"wavelength,flux,bitmask\n1,2,x\n2,3,y\n",
             "binary.csv": b"\xff\xfe\x00bin", "negative_errors.csv": b"wavelength,flux,error\n1,1,-1\n2,1,-1\n",
             "loglam_overflow.csv": b"loglam,flux\n1e5,1\n2e5,1\n", "no_flux_column.csv": b"wavelength,x\n1,2\n"}


@pytest.mark.parametrize("name", sorted(CSV_KINDS))
def test_spectra_info_on_bad_csv(capsys, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(CSV_KINDS[name])
    rc, out, err = run_cli(capsys, ["spectra", "info", path])
    assert rc == 1 and err.startswith(f"stellarnn: error: {path}") and err.count("\n") == 1, err


def test_generic_fits_with_text_wavelength_keyword(tmp_path):
    from stellarnn.spectra import read_spectrum

    hdu = fits.PrimaryHDU(np.ones(50))
    hdu.header["CRVAL1"], hdu.header["CDELT1"] = "5000", 0.1
    hdu.writeto(tmp_path / "s.fits")
    with pytest.raises(SpectrumFileError, match=r"s.fits \[HDU 0\]: keyword CRVAL1 = '5000' is not a number"):
        read_spectrum(tmp_path / "s.fits")


# --- the top-level handler (item 5) -------------------------------------------------------------

def test_any_exception_is_one_line_and_debug_shows_the_traceback(capsys, monkeypatch):
    for exc in (IndexError("list index out of range"), PermissionError(13, "Permission denied", "/x/y.fits"),
                ImportError("No module named 'missing'", name="missing"), AssertionError("Torch not compiled")):
        def raiser(args, exc=exc):
            raise exc
        monkeypatch.setattr("stellarnn.spectra.cli.cmd_info", raiser)
        rc, out, err = run_cli(capsys, ["spectra", "info", "x.fits"])
        assert rc == 1 and err.count("\n") == 1 and err.startswith("stellarnn: error: ")
    assert "/x/y.fits: Permission denied" in error_message(PermissionError(13, "Permission denied", "/x/y.fits"))
    assert error_message(ImportError("No module named 'missing'", name="missing")).startswith("cannot import 'missing'")
    assert error_message(IndexError("list index out of range")) == "IndexError: list index out of range"
    assert error_message(RuntimeError("(sqlite3.DatabaseError) not a database\n[SQL: x]")) == \
        "(sqlite3.DatabaseError) not a database"
    with pytest.raises(AssertionError, match="Torch not compiled"):  # --debug: the exception itself
        main(["--debug", "spectra", "info", "x.fits"])
    with pytest.raises(AssertionError):  # accepted after the command too
        main(["spectra", "info", "x.fits", "--debug"])


def test_keyboard_interrupt_and_broken_pipe_keep_their_handling(capsys, monkeypatch):
    def interrupt(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("stellarnn.spectra.cli.cmd_info", interrupt)
    assert main(["spectra", "info", "x.fits"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_read_only_output_folder_fails_before_computing(corpus, capsys, tmp_path):
    if IS_ROOT:
        pytest.skip("root writes into read-only folders")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(SystemExit) as exc:
            main(["spectra", "plot", str(corpus["good"][0]), "-o", str(ro / "p.png")])
        assert exc.value.code == 2 and "is not writable" in capsys.readouterr().err
    finally:
        ro.chmod(stat.S_IRWXU)


# --- outputs checked before computing (item 6) --------------------------------------------------

@pytest.mark.parametrize("argv,message", [
    (["run", "astronn", "{good}", "-o", "{tmp}/x.txt"], "unknown output extension '.txt'"),
    (["run", "apogeenet", "{good}", "-o", "{tmp}"], "is a folder"),
    (["run", "astronn", "{good}", "-o", "{tmp}/" + "n" * 300 + ".fits"], "file name longer than"),
    (["run", "astronn", "{good}", "-o", "{good}/x.fits"], "is not a folder"),
    (["fit", "{good}", "-o", "{tmp}/x.txt"], "unknown output extension"),
    (["spectra", "plot", "{good}", "-o", "{tmp}/x.jpeg"], "unknown output extension"),
    (["atmosphere", "get", "5000", "4.5", "0", "-o", "{tmp}/x.txt"], "unknown output extension"),
    (["stokes", "invert", "{good}", "--out", "{tmp}"], "is a folder"),
    (["blase", "clone", "x.csv", "--out", "{tmp}/x.txt"], "unknown output extension"),
    (["train", "astronn", "--grid", "g", "-o", "{tmp}/x.fits"], "unknown output extension"),
    (["grid", "build", "apogee", "--n", "2", "--out", "{good}"], "is not a folder"),
])
def test_outputs_are_checked_at_parse_time(corpus, capsys, tmp_path, argv, message):
    argv = [a.format(good=corpus["good"][0], tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err


def test_synth_checks_its_output_before_synthesising(capsys, tmp_path):
    rc, out, err = run_cli(capsys, ["synth", "5000", "4.5", "0", "-o", tmp_path / "x.txt"])
    assert rc == 1 and "unknown output extension '.txt'" in err
    rc, out, err = run_cli(capsys, ["synth", "5000", "4.5", "0", "--range", "8100", "8200", "-o", tmp_path / "x.fits"])
    assert rc == 1 and "expected .npz, .csv" in err


def test_output_checks(tmp_path):
    assert check_output_file(tmp_path / "a" / "b" / "x.fits", (".fits",)) == tmp_path / "a" / "b" / "x.fits"
    assert check_output_file(tmp_path / "plot", (".png",), default_suffix=".png") == tmp_path / "plot.png"
    assert check_output_file(tmp_path / "t.fits.gz", (".fits.gz",)).name == "t.fits.gz"
    with pytest.raises(OutputPathError, match="is a folder"):
        check_output_file(tmp_path, (".fits",))
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match="not a folder"):
        check_output_folder(tmp_path / "file")
    with pytest.raises(OutputPathError, match="not a folder"):
        check_output_file(tmp_path / "file" / "x.fits")
    assert check_output_folder(tmp_path / "new" / "sub") == tmp_path / "new" / "sub"


# --- nonsense parameters (item 7) ---------------------------------------------------------------

@pytest.mark.parametrize("argv,message", [
    (["synth", "5000", "4.5", "0", "--v-micro", "-3", "-o", "x.fits"], "--v-micro: must be within 0 to 20 km/s"),
    (["synth", "5000", "4.5", "0", "--v-micro", "1e6", "-o", "x.fits"], "--v-micro: must be within 0 to 20 km/s"),
    (["synth", "5000", "4.5", "0", "--v-micro", "nan", "-o", "x.fits"], "--v-micro: must be within"),
    (["atmosphere", "get", "-5000", "4.5", "0"], "TEFF: must be within 1000 to 100000 K, got -5000"),
    (["atmosphere", "-5000", "4.5", "0"], "TEFF: must be within"),
    (["atmosphere", "get", "5000", "45", "0"], "LOGG: must be within"),
    (["run", "astronn", "x.fits", "--mc-passes", "0"], "--mc-passes: must be at least 1, got 0"),
    (["run", "apogeenet", "x.fits", "--draws", "-1"], "--draws: must be at least 1"),
    (["run", "astronn", "x.fits", "--threads", "0"], "--threads: must be at least 1, got 0"),
    (["run", "astronn", "x.fits", "--device", "bogus"], "is not a torch device"),
    (["fit", "x.fits", "--threads", "0"], "--threads: must be at least 1"),
    (["spectra", "plot", "x.fits", "-o", "p.png", "--row-index", "-1"], "--row-index: must be 0 or more, got -1"),
    (["spectra", "plot", "x.fits", "-o", "p.png", "--row-index", "one"], "an integer expected, got 'one'"),
    (["stokes", "invert", "x", "--out", "m.fits", "--starts", "0"], "--starts: must be at least 1"),
    (["stokes", "synth", "--out", "r", "--nx", "0"], "--nx: must be at least 1"),
    (["grid", "build", "apogee", "--n", "0", "--out", "g"], "--n: must be at least 1"),
    (["train", "apogeenet", "--grid", "g", "-o", "x.pt", "--batch-size", "0"], "--batch-size: must be at least 1"),
])
def test_nonsense_parameters_are_refused_at_parse_time(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err, err


def test_device_without_hardware_is_refused():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as exc:
        main(["run", "apogeenet", "x.fits", "--device", "cuda"])
    assert exc.value.code == 2


def test_row_index_beyond_the_file_is_one_line(corpus, capsys, tmp_path):
    rc, out, err = run_cli(capsys, ["spectra", "plot", corpus["good"][0], "-o", tmp_path / "p.png",
                                    "--row-index", "99"])
    assert rc == 1 and "--row-index 99 does not exist (rows 0-1" in err and not (tmp_path / "p.png").exists()


# --- readers name the file, HDU and keyword (items 8, 9) ----------------------------------------

@pytest.mark.parametrize("kind,match", [
    ("nvisits_text", r"nvisits_text.fits \[HDU 0\]: keyword NVISITS = 'three' is not a number"),
    ("nvisits_negative", r"\[HDU 0\]: keyword NVISITS = -2 is not a whole number >= 1"),
    ("snr_text", r"\[HDU 0\]: keyword SNR = 'high' is not a number"),
    ("ra_boolean", r"\[HDU 0\]: keyword RA = True is not a number"),
    ("crval1_text", r"\[HDU 1\]: keyword CRVAL1 = '4.179' is not a number"),
    ("truncated_block", r"truncated_block.fits: truncated FITS file: \d+ bytes, its 8 readable HDU header\(s\) "
                        r"declare \d+"),
    ("truncated_padding", r"truncated FITS file"),
    ("truncated_half", r"truncated FITS file"),
    ("folder_named_fits", r"folder.fits: is a folder"),
])
def test_reader_errors_name_file_hdu_and_keyword(corpus, kind, match):
    with pytest.raises(SpectrumFileError, match=match):
        read_apstar(corpus[kind][0])


def test_real_files_are_not_taken_for_truncated(real_file):
    for name in ("apstar-2M17335483", "apstar-2M19485057"):
        assert read_apstar(real_file(name)).combined.flux.size == N


def test_fitter_flags_a_spectrum_without_usable_pixels():
    import torch

    from stellarnn.synthesis.emulator import PayneEmulator
    from stellarnn.synthesis.fitter import fit_spectra

    torch.manual_seed(0)
    emulator = PayneEmulator(n_labels=3, n_pixels=200, hidden=(8,), n_continuum=0).eval()
    flux = np.ones((3, 200))
    ivar = np.full((3, 200), 1e4)
    ivar[1] = 0.0  # no usable pixel
    res = fit_spectra(emulator, flux, ivar, n_iter=2)
    assert list(res.fitted) == [True, False, True]
    assert np.all(np.isfinite(res.labels[[0, 2]])) and np.all(np.isnan(res.labels[1])) and np.isnan(res.rv[1])
    with pytest.raises(ValueError, match="no usable pixel"):
        fit_spectra(emulator, flux, np.zeros_like(ivar))
