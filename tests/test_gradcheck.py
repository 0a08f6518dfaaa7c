"""The checkers are library code, so they are tested too: they pass on correct rules and
fail, with a useful report, on a deliberately wrong VJP or JVP rule, at first and second order."""
import numpy as np
import pytest

import microgradrnn as mg
from microgradrnn.gradcheck import GradcheckError, check_primitive

x0 = np.array([0.3, -0.8, 1.1])


def _cube(vjp_factor=3.0, jvp_factor=3.0):
    """x^3 with the derivative 3 x^2 scaled by the given factors (3 is right)."""
    return mg.defprimitive(
        lambda x: x**3,
        vjp=lambda g, out, x: g * vjp_factor * x * x,
        jvp=lambda x_dot, out, x: x_dot * jvp_factor * x * x,
        name="cube")


def test_the_checkers_pass_on_correct_rules():
    assert check_primitive(_cube(), (x0,))


def test_gradcheck_fails_on_a_wrong_vjp_and_names_the_input():
    cube = _cube(vjp_factor=2.0)
    with pytest.raises(GradcheckError) as info:
        mg.gradcheck(lambda a, b: cube(a) * b, (x0, np.ones(3)))
    message = str(info.value)
    assert "input 0" in message and "analytic" in message and "numeric" in message
    assert "relative error" in message
    with pytest.raises(GradcheckError, match="adjoint identity"):
        mg.jvpcheck(cube, (x0,))  # forward mode is right, reverse mode disagrees


def test_jvpcheck_fails_on_a_wrong_jvp():
    cube = _cube(jvp_factor=3.5)
    assert mg.gradcheck(cube, (x0,))  # reverse mode alone is right
    with pytest.raises(GradcheckError, match="forward mode"):
        mg.jvpcheck(cube, (x0,))


def _cube_with_wrong_second_derivative(wrong_vjp_of_square=False, wrong_jvp_of_square=False):
    """x^3 whose rule calls a helper primitive square(x) = x^2 with a wrong rule of its own:
    the first derivative is right; only differentiating the rule again exposes the error."""
    square = mg.defprimitive(
        lambda x: x * x,
        vjp=lambda g, out, x: g * (3.0 if wrong_vjp_of_square else 2.0) * x,
        jvp=lambda x_dot, out, x: x_dot * (3.0 if wrong_jvp_of_square else 2.0) * x,
        name="square")
    return mg.defprimitive(
        lambda x: x**3,
        vjp=lambda g, out, x: g * 3.0 * square(x),
        jvp=lambda x_dot, out, x: x_dot * 3.0 * square(x),
        name="cube")


def test_gradgradcheck_fails_on_a_wrong_second_order_vjp():
    cube = _cube_with_wrong_second_derivative(wrong_vjp_of_square=True)
    assert mg.gradcheck(cube, (x0,)) and mg.jvpcheck(cube, (x0,))
    with pytest.raises(GradcheckError, match="reverse over reverse"):
        mg.gradgradcheck(cube, (x0,))


def test_gradgradcheck_fails_on_a_wrong_second_order_jvp():
    cube = _cube_with_wrong_second_derivative(wrong_jvp_of_square=True)
    assert mg.gradcheck(cube, (x0,)) and mg.jvpcheck(cube, (x0,))
    with pytest.raises(GradcheckError, match="forward over reverse"):
        mg.gradgradcheck(cube, (x0,))


def test_the_documented_user_primitive_passes_every_check():
    # The example in defprimitive's docstring.
    softplus = mg.defprimitive(
        lambda x: np.logaddexp(0.0, x),
        vjp=lambda g, out, x: g * mg.sigmoid(x),
        jvp=lambda x_dot, out, x: x_dot * mg.sigmoid(x),
        name="softplus")
    assert check_primitive(softplus, (np.array([-3.0, 0.2, 4.0]),))
    y = softplus(mg.tensor([0.0], requires_grad=True))
    assert y.node.primitive is softplus and np.isclose(y.item(), np.log(2.0))


def test_a_two_input_user_primitive_and_its_tensor_use():
    hypot = mg.defprimitive(
        np.hypot,
        vjp=(lambda g, out, x, y: g * x / out, lambda g, out, x, y: g * y / out),
        jvp=(lambda x_dot, out, x, y: x_dot * x / out, lambda y_dot, out, x, y: y_dot * y / out),
        name="hypot", broadcasts=True)
    assert check_primitive(hypot, (np.array([3.0, 1.0]), np.array([[4.0, 2.0], [1.0, 1.5]])))


def test_checkers_refuse_float32_inputs():
    with pytest.raises(TypeError, match="float64"):
        mg.gradcheck(lambda x: x * 2.0, (np.ones(2, dtype=np.float32),))


def test_defprimitive_refuses_mismatched_rule_counts():
    with pytest.raises(ValueError, match="2 VJP rules but 1 JVP"):
        mg.defprimitive(np.add, vjp=(lambda *a: 0, lambda *a: 0), jvp=lambda *a: 0)
