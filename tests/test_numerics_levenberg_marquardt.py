"""Tests of stellarnn.numerics.levenberg_marquardt: the shared batched, bounded LM step."""
import numpy as np
import pytest
import torch

from stellarnn.numerics.levenberg_marquardt import (DampingSchedule, clip_to_bounds, damped_normal_step,
                                                    formal_errors, levenberg_marquardt_step)


def _line_problem():
    """Two independent straight-line fits y = a + b x (rows), residual r = (model - data)."""
    x = torch.linspace(-1, 1, 21, dtype=torch.float64)
    design = torch.stack([torch.ones_like(x), x], dim=1)  # (K, 2)
    truth = torch.tensor([[1.0, 2.0], [-0.5, 0.25]], dtype=torch.float64)
    data = truth @ design.T
    return design, data, truth


def test_undamped_step_solves_a_linear_problem_exactly():
    design, data, truth = _line_problem()
    params = torch.zeros(2, 2, dtype=torch.float64)
    jac = design.expand(2, -1, -1)
    residual = params @ design.T - data
    step = damped_normal_step(jac, residual, torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(params + step, truth)
    # damping shortens the step along each parameter's own scale (Marquardt), same direction for a diagonal JᵀJ
    damped = damped_normal_step(jac, residual, torch.full((2,), 1.0, dtype=torch.float64))
    torch.testing.assert_close(damped, 0.5 * step)  # x is symmetric about 0: JᵀJ is diagonal


def test_step_projects_accepts_and_updates_damping_per_row():
    design, data, truth = _line_problem()
    low, high = torch.tensor([-10.0, -10.0], dtype=torch.float64), torch.tensor([10.0, 1.0], dtype=torch.float64)
    schedule = DampingSchedule(initial=1e-3, accepted=0.5, rejected=4.0, minimum=1e-6, maximum=1e3)

    def chi2_of(p):
        return ((p @ design.T - data) ** 2).sum(1)

    params = torch.tensor([[0.0, 0.0], [-0.5, 0.25]], dtype=torch.float64)  # row 1 starts at its optimum
    chi2 = chi2_of(params)
    lam = schedule.start(2, torch.float64)
    out = levenberg_marquardt_step(params, chi2, lam, design.expand(2, -1, -1), params @ design.T - data, chi2_of,
                                   lambda p: clip_to_bounds(p, low, high), schedule)
    assert out.accepted.tolist() == [True, False]
    assert float(out.params[0, 1]) == 1.0  # slope 2 is beyond the bound: clipped to it
    assert float(out.params[0, 0]) == pytest.approx(1.0, abs=2e-3)
    torch.testing.assert_close(out.params[1], params[1])  # rejected row unchanged
    torch.testing.assert_close(out.damping, torch.tensor([5e-4, 4e-3], dtype=torch.float64))
    assert float(out.gain[0]) == pytest.approx(float(chi2[0] - chi2_of(out.params)[0]))
    assert float(out.gain[1]) == 0.0 and float(out.chi2[1]) == float(chi2[1])


def test_damping_stays_in_range_and_bad_schedules_are_refused():
    schedule = DampingSchedule(initial=1.0, accepted=0.1, rejected=10.0, minimum=0.5, maximum=5.0)
    lam = schedule.update(torch.tensor([1.0, 1.0]), torch.tensor([True, False]))
    assert lam.tolist() == [0.5, 5.0]
    with pytest.raises(ValueError, match="damping schedule"):
        DampingSchedule(accepted=2.0)
    with pytest.raises(ValueError, match="damping schedule"):
        DampingSchedule(initial=1e-9, minimum=1e-7)


def test_formal_errors_are_the_least_squares_covariance():
    design, _, _ = _line_problem()
    sigma = 0.1
    errors = formal_errors((design / sigma).expand(3, -1, -1))
    expected = np.sqrt(np.diag(np.linalg.inv(design.numpy().T @ design.numpy()))) * sigma
    np.testing.assert_allclose(errors.numpy(), np.broadcast_to(expected, (3, 2)), rtol=1e-12)
    # a parameter the data do not touch: error 0 from the pseudo-inverse, no exception
    free = torch.cat([design, torch.zeros(21, 1, dtype=torch.float64)], dim=1)[None]
    assert float(formal_errors(free)[0, 2]) == 0.0
