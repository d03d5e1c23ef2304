"""harness.optim: hand-computed steps for every optimizer and Rprop variant, clipping, validation, dtypes."""

import tracemalloc

import numpy as np
import pytest

from harness.optim import (
    SGD,
    Adam,
    Momentum,
    Rprop,
    StepInfo,
    clip_by_global_norm,
    clip_by_value,
    make_optimizer,
)


def run_on_square(opt, theta0: float, n_steps: int) -> tuple[list[float], list[float]]:
    """Minimise f(θ) = θ² from θ0; return the θ after each step and the optimizer's mean Δ after each step."""
    params = {"w": np.array([theta0])}
    thetas, deltas = [], []
    for _ in range(n_steps):
        w = params["w"]
        info = opt.step(params, {"w": 2 * w}, loss=float(w[0] ** 2))
        thetas.append(float(params["w"][0]))
        deltas.append(info.mean_delta)
    return thetas, deltas


# f = θ², θ0 = 0.0025, Δ0 = 0.001: grads + + + then a flip after overshooting zero at step 3.
# rprop-: Δ 0.001, 0.0012, 0.00144, flip -> 0.00072 (still moves), same -> 0.000864, flip -> 0.000432.
# rprop+: on a flip, revert the previous update (θ back to 0.0003) and forget the sign (next step keeps Δ).
# irprop-: on a flip, no move; the next step keeps Δ (sign forgotten).
RPROP_CASES = {
    "rprop-": ([0.0015, 0.0003, -0.00114, -0.00042, 0.000444, 0.000012],
               [0.001, 0.0012, 0.00144, 0.00072, 0.000864, 0.000432]),
    "rprop+": ([0.0015, 0.0003, -0.00114, 0.0003, -0.00042, 0.0003, -0.00006],
               [0.001, 0.0012, 0.00144, 0.00072, 0.00072, 0.00036, 0.00036]),
    "irprop-": ([0.0015, 0.0003, -0.00114, -0.00114, -0.00042, 0.000444, 0.000444],
                [0.001, 0.0012, 0.00144, 0.00072, 0.00072, 0.000864, 0.000432]),
}


@pytest.mark.parametrize("variant", sorted(RPROP_CASES))
def test_rprop_variants_follow_hand_derived_sequences(variant):
    expected_theta, expected_delta = RPROP_CASES[variant]
    thetas, deltas = run_on_square(Rprop(variant=variant), 0.0025, len(expected_theta))
    np.testing.assert_allclose(thetas, expected_theta, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(deltas, expected_delta, rtol=1e-12)


def test_irprop_plus_reverts_only_when_the_loss_increased():
    # θ0 = 0.0021: 0.0011, then -0.0001 (overshoot, but the loss fell from 1.21e-6 to 1e-8): the flip at
    # step 3 makes no move; step 4 moves by the halved Δ 0.0006 to 0.0005 (loss rose to 2.5e-7); the flip at
    # step 5 reverts to -0.0001 with Δ 0.0003; step 6 moves to 0.0002.
    thetas, deltas = run_on_square(Rprop(variant="irprop+"), 0.0021, 6)
    np.testing.assert_allclose(thetas, [0.0011, -0.0001, -0.0001, 0.0005, -0.0001, 0.0002], rtol=1e-9)
    np.testing.assert_allclose(deltas, [0.001, 0.0012, 0.0006, 0.0006, 0.0003, 0.0003], rtol=1e-12)
    # Rprop+ on the same problem reverts at step 3 regardless of the loss
    thetas_plus, _ = run_on_square(Rprop(variant="rprop+"), 0.0021, 3)
    np.testing.assert_allclose(thetas_plus, [0.0011, -0.0001, 0.0011], rtol=1e-9)


def test_irprop_plus_reports_backtracking_and_needs_the_loss():
    opt = Rprop(variant="irprop+")
    params = {"w": np.array([0.0021])}
    infos = []
    for _ in range(5):
        w = params["w"]
        infos.append(opt.step(params, {"w": 2 * w}, loss=float(w[0] ** 2)))
    assert [i.sign_flips for i in infos] == [0.0, 0.0, 1.0, 0.0, 1.0]
    assert [i.backtracked for i in infos] == [0.0, 0.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="loss must be a finite float for variant 'irprop\\+'"):
        opt.step(params, {"w": params["w"].copy()})


def test_rprop_step_size_is_capped_by_delta_max():
    # f = θ², θ0 = 100, Δ0 = 1, Δmax = 1.5: Δ = 1, 1.2, 1.44, then 1.728 -> 1.5, 1.5
    thetas, deltas = run_on_square(Rprop(lr=1.0, delta_max=1.5), 100.0, 5)
    np.testing.assert_allclose(deltas, [1.0, 1.2, 1.44, 1.5, 1.5], rtol=1e-12)
    np.testing.assert_allclose(thetas, [99.0, 97.8, 96.36, 94.86, 93.36], rtol=1e-12)


def test_rprop_step_size_is_floored_by_delta_min():
    # alternating gradient signs: Δ = 0.001, 0.0005, then 0.00025 -> 0.0004, 0.0004; θ = -(±Δ) summed
    opt = Rprop(lr=0.001, delta_min=0.0004)
    params = {"w": np.zeros(1)}
    deltas, thetas = [], []
    for g in [1.0, -1.0, 1.0, -1.0]:
        info = opt.step(params, {"w": np.array([g])})
        deltas.append(info.mean_delta)
        thetas.append(params["w"][0])
    np.testing.assert_allclose(deltas, [0.001, 0.0005, 0.0004, 0.0004], rtol=1e-12)
    np.testing.assert_allclose(thetas, [-0.001, -0.0005, -0.0009, -0.0005], rtol=1e-12)


def test_rprop_keeps_step_when_gradient_is_zero_and_adapts_each_weight_separately():
    opt = Rprop(lr=0.01)
    params = {"w": np.zeros(3)}
    opt.step(params, {"w": np.array([1.0, 1.0, 0.0])})
    info = opt.step(params, {"w": np.array([1.0, -1.0, 0.0])})
    np.testing.assert_allclose(opt.state["w"]["step"], [0.012, 0.005, 0.01])
    np.testing.assert_allclose(params["w"], [-0.022, -0.005, 0.0])
    assert info.sign_flips == pytest.approx(1 / 3)
    assert info.step_size == pytest.approx((0.012 + 0.005 + 0.0) / 3)


def test_adam_first_two_steps_by_hand():
    opt = Adam(lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
    params = {"w": np.array([1.0])}
    opt.step(params, {"w": np.array([0.5])})
    # m̂ = 0.5, v̂ = 0.25: the first step is lr · sign(g) up to eps
    np.testing.assert_allclose(params["w"], [1.0 - 0.1 * 0.5 / (0.5 + 1e-8)], rtol=1e-14)
    opt.step(params, {"w": np.array([-1.0])})
    m = 0.9 * 0.05 + 0.1 * -1.0  # -0.055
    v = 0.999 * 0.00025 + 0.001 * 1.0  # 0.00124975
    m_hat, v_hat = m / (1 - 0.9**2), v / (1 - 0.999**2)
    expected = 1.0 - 0.1 * 0.5 / (0.5 + 1e-8) - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-8)
    np.testing.assert_allclose(params["w"], [expected], rtol=1e-14)
    assert expected == pytest.approx(0.9 + 0.0366107, abs=1e-6)


def test_momentum_classical_and_nesterov_by_hand():
    # constant gradient 1, lr 0.1, μ 0.9. Classical: v = -0.1, -0.19 -> θ = -0.1, -0.29.
    # Nesterov: Δθ = μ v_new - lr g = -0.19, then v = -0.19, Δθ = -0.171 - 0.1 = -0.271 -> θ = -0.19, -0.461.
    for nesterov, expected in [(False, [-0.1, -0.29]), (True, [-0.19, -0.461])]:
        opt = Momentum(lr=0.1, momentum=0.9, nesterov=nesterov)
        params = {"w": np.zeros(1)}
        thetas = []
        for _ in range(2):
            opt.step(params, {"w": np.ones(1)})
            thetas.append(params["w"][0])
        np.testing.assert_allclose(thetas, expected, rtol=1e-12)


def test_nesterov_matches_sutskever_look_ahead_form():
    # Sutskever et al. 2013: v <- μ v - lr ∇f(θ + μ v), θ <- θ + v. Our iterate is φ = θ + μ v.
    A = np.array([[3.0, 0.5], [0.5, 1.0]])
    lr, mu = 0.05, 0.8
    theta, v = np.array([1.0, -2.0]), np.zeros(2)
    opt = Momentum(lr=lr, momentum=mu, nesterov=True)
    params = {"w": theta.copy()}
    for _ in range(10):
        v = mu * v - lr * A @ (theta + mu * v)
        theta = theta + v
        opt.step(params, {"w": A @ params["w"]})
        np.testing.assert_allclose(params["w"], theta + mu * v, rtol=1e-12)


def test_sgd_step_and_step_info():
    opt = SGD(lr=0.5)
    params = {"a": np.array([1.0, 2.0]), "b": np.array([[3.0]])}
    info = opt.step(params, {"a": np.array([3.0, 0.0]), "b": np.array([[-4.0]])})
    np.testing.assert_allclose(params["a"], [-0.5, 2.0])
    np.testing.assert_allclose(params["b"], [[5.0]])
    assert info == StepInfo(grad_norm=5.0, clipped=False, step_size=(1.5 + 0 + 2.0) / 3)
    assert info.as_metrics("optim/") == {"optim/grad_norm": 5.0, "optim/clipped": 0.0,
                                         "optim/step_size": pytest.approx(3.5 / 3)}


def test_clip_by_global_norm_sets_norm_to_eta_and_keeps_direction():
    rng = np.random.default_rng(0)
    grads = {"W": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}
    before = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
    clipped, norm, was_clipped = clip_by_global_norm(grads, 0.5)
    assert was_clipped
    assert norm == pytest.approx(before, rel=1e-14)
    after = np.sqrt(sum(np.sum(g**2) for g in clipped.values()))
    assert after == pytest.approx(0.5, rel=1e-14)
    for k in grads:
        np.testing.assert_allclose(clipped[k], grads[k] * 0.5 / before, rtol=1e-14)
    same, norm2, was_clipped2 = clip_by_global_norm(grads, before * 1.01)
    assert not was_clipped2 and norm2 == pytest.approx(before)
    for k in grads:
        np.testing.assert_array_equal(same[k], grads[k])


def test_global_norm_survives_overflowing_squares():
    grads = {"a": np.array([3e200, 4e200])}
    _, norm, clipped = clip_by_global_norm(grads, 1.0)
    assert norm == pytest.approx(5e200) and clipped


def test_clip_by_value():
    grads = {"a": np.array([-7.0, 2.0, 5.5]), "b": np.array([[0.1]])}
    clipped, was = clip_by_value(grads, 5.0)
    assert was
    np.testing.assert_array_equal(clipped["a"], [-5.0, 2.0, 5.0])
    np.testing.assert_array_equal(grads["a"], [-7.0, 2.0, 5.5])  # pure: the input is untouched
    _, was = clip_by_value(grads, 10.0)
    assert not was


def test_optimizer_applies_clipping_inside_step_without_touching_grads():
    grads = {"w": np.array([3.0, 4.0])}
    params = {"w": np.zeros(2)}
    info = SGD(lr=1.0, clip_norm=1.0).step(params, grads)
    assert info.clipped and info.grad_norm == 5.0
    np.testing.assert_allclose(params["w"], [-0.6, -0.8], rtol=1e-15)
    np.testing.assert_array_equal(grads["w"], [3.0, 4.0])
    # value clipping first (to [-2, 2] -> (2, 2), norm 2.83), then the norm clip to 1
    params = {"w": np.zeros(2)}
    info = SGD(lr=1.0, clip_value=2.0, clip_norm=1.0).step(params, grads)
    np.testing.assert_allclose(params["w"], [-np.sqrt(0.5), -np.sqrt(0.5)], rtol=1e-15)
    assert info.clipped and info.grad_norm == 5.0
    params = {"w": np.zeros(2)}
    info = SGD(lr=1.0, clip_norm=10.0, clip_value=10.0).step(params, grads)
    assert not info.clipped
    np.testing.assert_array_equal(params["w"], [-3.0, -4.0])


OPTIMIZERS = [("sgd", {"lr": 0.05}), ("momentum", {"lr": 0.02}), ("momentum", {"lr": 0.02, "nesterov": True}),
              ("adam", {"lr": 0.05})] + [("rprop", {"variant": v}) for v in ["rprop-", "rprop+", "irprop-",
                                                                               "irprop+"]]


@pytest.mark.parametrize(("name", "kw"), OPTIMIZERS)
def test_every_optimizer_decreases_a_convex_quadratic(name, kw):
    rng = np.random.default_rng(1)
    M = rng.normal(size=(5, 5))
    A = M @ M.T + np.eye(5)  # symmetric positive definite
    params = {"w": rng.normal(size=5), "b": np.array([2.0])}

    def loss_and_grads():
        w, b = params["w"], params["b"]
        return 0.5 * w @ A @ w + b[0] ** 2, {"w": A @ w, "b": 2 * b}

    opt = make_optimizer(name, **kw)
    first, _ = loss_and_grads()
    for _ in range(300):
        loss, grads = loss_and_grads()
        opt.step(params, grads, loss=loss)
    assert loss_and_grads()[0] < 1e-2 * first


@pytest.mark.parametrize(("name", "kw"), OPTIMIZERS)
def test_float32_params_and_state_stay_float32(name, kw):
    params = {"w": np.array([1.0, -2.0], dtype=np.float32)}
    opt = make_optimizer(name, clip_norm=1.0, **kw)
    w_before = params["w"]
    for _ in range(3):
        opt.step(params, {"w": 2 * params["w"]}, loss=float(np.sum(params["w"] ** 2)))
    assert params["w"] is w_before and params["w"].dtype == np.float32
    assert all(a.dtype == np.float32 for a in opt.state["w"].values() if a.dtype.kind == "f")


@pytest.mark.parametrize(("name", "kw"), OPTIMIZERS)
def test_state_dict_round_trip_continues_identically(name, kw):
    rng = np.random.default_rng(2)
    params = {"w": rng.normal(size=4)}
    opt = make_optimizer(name, **kw)
    for _ in range(3):
        opt.step(params, {"w": 2 * params["w"] + 1}, loss=float(np.sum(params["w"] ** 2 + params["w"])))
    saved, saved_params = opt.state_dict(), {"w": params["w"].copy()}
    twin = make_optimizer(name, **kw)
    twin.load_state_dict(saved)
    for p, o in [(params, opt), (saved_params, twin)]:
        for _ in range(3):
            o.step(p, {"w": 2 * p["w"] + 1}, loss=float(np.sum(p["w"] ** 2 + p["w"])))
    np.testing.assert_array_equal(params["w"], saved_params["w"])


@pytest.mark.parametrize(("name", "kw", "message"), [
    ("adagrad", {}, r"optimizer name must be one of \['adam', 'momentum', 'rprop', 'sgd'\], got 'adagrad'"),
    ("sgd", {"lr": -0.1}, "lr must be a finite number > 0, got -0.1"),
    ("sgd", {"lr": 0.1, "momentum": 0.9}, r"optimizer 'sgd' accepts arguments .*got unknown \['momentum'\]"),
    ("adam", {"beta1": 1.0}, r"beta1 must be in \[0, 1\), got 1.0"),
    ("adam", {"beta2": -0.1}, r"beta2 must be in \[0, 1\), got -0.1"),
    ("adam", {"eps": 0}, "eps must be a finite number > 0, got 0"),
    ("momentum", {"momentum": 1.5}, r"momentum must be in \[0, 1\), got 1.5"),
    ("momentum", {"nesterov": "yes"}, "nesterov must be True or False, got 'yes'"),
    ("rprop", {"variant": "rprop"}, r"variant must be one of \['irprop\+', 'irprop-', 'rprop\+', 'rprop-'\]"),
    ("rprop", {"eta_minus": 1.0}, r"eta_minus must be in \(0, 1\), got 1.0"),
    ("rprop", {"eta_plus": 1.0}, "eta_plus must be a finite number > 1, got 1.0"),
    ("rprop", {"delta_min": 1.0, "delta_max": 0.5}, "delta_max must be >= delta_min=1.0, got 0.5"),
    ("rprop", {"lr": 100.0}, r"lr \(the initial step Δ0\) must be in \[delta_min, delta_max\]"),
    ("sgd", {"clip_norm": 0.0}, "clip_norm must be a finite number > 0, got 0.0"),
    ("adam", {"clip_value": -5}, "clip_value must be a finite number > 0, got -5"),
])
def test_make_optimizer_validation_messages(name, kw, message):
    with pytest.raises(ValueError, match=message):
        make_optimizer(name, **kw)


def test_step_validates_grads_against_params():
    opt = SGD(lr=0.1)
    with pytest.raises(ValueError, match=r"grads must have the keys of params \['a'\], got \['b'\]"):
        opt.step({"a": np.zeros(2)}, {"b": np.zeros(2)})
    with pytest.raises(ValueError, match=r"grads\['a'\] must have shape \(2,\), got \(3,\)"):
        opt.step({"a": np.zeros(2)}, {"a": np.zeros(3)})
    with pytest.raises(ValueError, match="max_norm must be a finite number > 0"):
        clip_by_global_norm({"a": np.zeros(2)}, -1.0)


@pytest.mark.parametrize(("name", "kw"), OPTIMIZERS)
def test_steps_after_the_first_allocate_no_parameter_sized_arrays(name, kw):
    rng = np.random.default_rng(3)
    params = {"W": rng.normal(size=(100, 100)), "b": rng.normal(size=100)}
    grads = {k: rng.normal(size=v.shape) for k, v in params.items()}
    opt = make_optimizer(name, clip_norm=1.0, clip_value=0.5, **kw)
    opt.step(params, grads, loss=1.0)
    tracemalloc.start()
    try:
        opt.step(params, grads, loss=0.5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < params["b"].nbytes * 10  # one (100, 100) float64 temporary would be 80 kB
