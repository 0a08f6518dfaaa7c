"""Bad input gets a clear error naming the operation, the shapes or types, and what to do;
nothing is silently wrong."""
import numpy as np
import pytest

import microgradrnn as mg


def test_shape_mismatch_in_a_binary_op():
    a, b = mg.tensor(np.ones((2, 3)), requires_grad=True), mg.tensor(np.ones((4,)))
    with pytest.raises(ValueError, match=r"add: .*\(2, 3\).*\(4,\)"):
        a + b


def test_shape_mismatch_in_matmul():
    a, b = mg.tensor(np.ones((2, 3))), mg.tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) do not align"):
        a @ b
    with pytest.raises(ValueError, match="matmul: operands must have at least one axis"):
        a @ mg.tensor(2.0)


def test_backward_on_a_non_scalar_needs_a_gradient():
    y = mg.tensor(np.ones((2, 2)), requires_grad=True) * 2.0
    with pytest.raises(RuntimeError, match=r"shape \(2, 2\), not a scalar; pass the cotangent"):
        y.backward()


def test_gradient_of_the_wrong_shape():
    y = mg.tensor(np.ones((2, 2)), requires_grad=True) * 2.0
    with pytest.raises(ValueError, match=r"has shape \(3,\) but the output has shape \(2, 2\)"):
        y.backward(np.ones(3))
    with pytest.raises(ValueError, match="grad: the gradient given has shape"):
        mg.grad(y, [y], grad_outputs=np.ones(3))


def test_grad_with_respect_to_an_unused_input():
    x = mg.tensor([1.0], requires_grad=True)
    unused = mg.Parameter([2.0], name="bias")
    y = (x * 3.0).sum()
    with pytest.raises(RuntimeError, match=r"input 1 \('bias'\).*allow_unused=True"):
        mg.grad(y, [x, unused])
    gx, none = mg.grad(y, [x, unused], allow_unused=True)
    assert gx.item() == 3.0 and none is None


def test_grad_with_respect_to_a_constant():
    x = mg.tensor([1.0])
    y = mg.tensor([1.0], requires_grad=True) * x
    with pytest.raises(RuntimeError, match="input 0 .* does not require grad"):
        mg.grad(y.sum(), [x])


@pytest.mark.parametrize("data, word", [
    (np.array([1 + 2j]), "complex"),
    (np.array(["a"]), "string"),
    (np.array([object()], dtype=object), "object"),
])
def test_data_that_cannot_be_a_float_tensor(data, word):
    with pytest.raises(TypeError, match=word):
        mg.tensor(data)


def test_integer_and_bool_data_become_float64_unless_asked():
    assert mg.tensor([1, 2]).dtype == np.float64
    assert mg.tensor([True, False]).dtype == np.float64
    assert mg.tensor([1, 2], dtype=np.int64).dtype == np.int64
    with pytest.raises(TypeError, match="requires_grad=True needs a float dtype"):
        mg.tensor([1, 2], dtype=np.int64, requires_grad=True)
    with pytest.raises(TypeError, match="complex"):
        mg.tensor([1.0], dtype=np.complex128)


def test_a_tensor_nested_inside_data():
    t = mg.tensor([1.0], requires_grad=True)
    with pytest.raises(TypeError, match=r"holds a Tensor at \[1\]\[0\].*mg.stack"):
        mg.tensor([[0.0], [t]])
    with pytest.raises(TypeError, match="already a Tensor"):
        mg.tensor(t)


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min", "logsumexp"])
def test_axis_out_of_range(op):
    x = mg.tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=rf"{op}: axis 2 is out of range .* \[-2, 1\]"):
        getattr(x, op)(axis=2)


def test_differentiating_something_built_under_no_grad():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    with mg.no_grad():
        y = (x * x).sum()
    with pytest.raises(RuntimeError, match="does not require grad.*no_grad"):
        y.backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        mg.grad(y, [x])


def test_arrays_a_graph_saved_cannot_be_changed_in_place():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x.tanh()
    with pytest.raises(ValueError, match="read-only"):
        y.value[0] = 5.0
    with pytest.raises(ValueError, match="read-only"):
        np.asarray(x)[0] = 5.0
    with pytest.raises(ValueError, match="read-only"):
        x.numpy()[0] = 5.0
    with pytest.raises(TypeError, match="item assignment"):
        y[0] = 1.0


def test_a_constant_array_changed_after_the_forward_pass_does_not_change_the_gradient():
    data = np.array([[1.0, 2.0]])
    W = mg.Parameter(np.ones((2, 1)))
    loss = (data @ W).sum()
    data[0, 0] = 100.0  # the caller reuses its buffer before backward
    loss.backward()
    np.testing.assert_array_equal(W.grad, [[1.0], [2.0]])  # from the values used forward


def test_rebinding_a_parameter_keeps_the_graph_already_recorded():
    W = mg.Parameter([2.0])
    loss = (W * W).sum()
    W.value = W.value - 1.0  # what an optimizer does
    loss.backward()
    assert W.grad[0] == 4.0 and W.value[0] == 1.0
    with pytest.raises(AttributeError, match="only a leaf"):
        (W * 2.0).value = [1.0]


def test_numpy_functions_without_a_rule_raise_instead_of_cutting_the_graph():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match="np.sin cannot be applied.*mg.defprimitive"):
        np.sin(x)
    with pytest.raises(TypeError, match="np.cumsum cannot be applied"):
        np.cumsum(x)
    buffer = np.zeros(2)
    with pytest.raises(TypeError, match="np.add with out="):
        buffer += x


def test_where_needs_a_boolean_condition():
    with pytest.raises(TypeError, match="where: the condition must be boolean"):
        mg.where(np.array([1.0, 0.0]), mg.tensor([1.0, 2.0]), 0.0)


def test_reshape_to_a_different_size():
    with pytest.raises(ValueError, match=r"reshape: cannot reshape .* \(2, 3\) .* into shape \(4, 2\)"):
        mg.tensor(np.ones((2, 3))).reshape(4, 2)


def test_item_of_a_tensor_with_many_entries():
    with pytest.raises(ValueError, match=r"item: .* shape \(2,\)"):
        mg.tensor([1.0, 2.0]).item()
    with pytest.raises(ValueError, match="ambiguous"):
        bool(mg.tensor([1.0, 2.0]))
