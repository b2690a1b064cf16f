import numpy as np
import pytest

from stellarnn.stokes.zeeman import FE_I_6301, FE_I_6302, Term, effective_lande, wigner_3j, zeeman_pattern


def test_term_parsing_and_lande_factors():
    t = Term.parse("5P2")
    assert (t.spin, t.orbital, t.total) == (2.0, 1, 2.0)
    assert Term.parse("5P2").lande == pytest.approx(11 / 6)
    assert Term.parse("5D2").lande == pytest.approx(1.5)
    assert Term.parse("5P1").lande == pytest.approx(2.5)
    assert Term.parse("5D0").lande == 0.0
    assert Term.parse("2P3/2").lande == pytest.approx(4 / 3)
    with pytest.raises(ValueError):
        Term.parse("5Z2")
    with pytest.raises(ValueError):
        Term(spin=2, orbital=1, total=4)  # J > L + S


def test_effective_lande_of_the_hinode_lines():
    assert FE_I_6301.effective_lande == pytest.approx(5 / 3)
    assert FE_I_6302.effective_lande == pytest.approx(2.5)


def test_wigner_3j_known_values_and_orthogonality():
    assert wigner_3j(1, 1, 0, 1, -1, 0) == pytest.approx(1 / np.sqrt(3))
    assert wigner_3j(1, 1, 1, 0, 0, 0) == 0.0
    # (j j 1; m −m 0) = (−1)^(j−m) m / √(j(j+1)(2j+1))
    assert wigner_3j(2, 2, 1, 1, -1, 0) == pytest.approx(-1 / np.sqrt(30))
    # (−1)^(j1−j2−m3)/√(2j3+1) · ⟨½ ½ ½ ½|1 1⟩ = −1/√3
    assert wigner_3j(0.5, 0.5, 1, 0.5, 0.5, -1) == pytest.approx(-1 / np.sqrt(3))
    assert wigner_3j(1, 1, 1, 1, 1, 1) == 0.0  # m's do not sum to zero
    # Σ_{m1,m2} (j1 j2 j3; m1 m2 m3)² = 1/(2 j3 + 1)
    total = sum(wigner_3j(2, 2, 1, m1, -m1 - 1, 1) ** 2 for m1 in range(-2, 3))
    assert total == pytest.approx(1 / 3)


def test_pattern_strength_normalisation_and_centroids():
    for line in (FE_I_6301, FE_I_6302):
        p = line.pattern
        for dm in (-1, 0, 1):
            sel = p.delta_m == dm
            assert p.strength[sel].sum() == pytest.approx(1.0)
            # the strength-weighted σ shift is ±ḡ; π is centred
            assert (p.strength[sel] * p.shift[sel]).sum() == pytest.approx(dm * line.effective_lande)
    assert FE_I_6302.pattern.shift.tolist() == pytest.approx([-2.5, 0.0, 2.5])
    assert len(FE_I_6301.pattern.shift) == 12  # the 0→0 π component of J=2→2 vanishes


def test_non_dipole_transition_rejected():
    with pytest.raises(ValueError):
        zeeman_pattern(Term.parse("5P1"), Term.parse("5F3"))
    assert effective_lande(Term.parse("1S0"), Term.parse("1P1")) == pytest.approx(1.0)
