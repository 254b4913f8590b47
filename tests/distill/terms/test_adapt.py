"""The shape adapters: resizing regressors reach the teacher's shape; pooling goes to the smaller map."""

import pytest
import torch

from mixkd.distill.terms.adapt import conv_bn, pool_to_smaller, resize_conv
from mixkd.errors import ConfigError


@pytest.mark.parametrize("hw_in,hw_out", [
    ((32, 32), (32, 32)), ((32, 32), (16, 16)), ((32, 32), (8, 8)), ((16, 16), (32, 32)), ((2, 2), (8, 8)),
    ((4, 4), (16, 16)), ((9, 9), (3, 3)), ((3, 3), (9, 9)), ((6, 6), (4, 4)), ((7, 5), (4, 2)),
])
def test_resize_conv_reaches_the_teacher_shape(hw_in, hw_out):
    conv = resize_conv(3, 5, hw_in, hw_out)
    assert conv(torch.zeros(2, 3, *hw_in)).shape == (2, 5, *hw_out)


def test_ratios_two_and_one_half_are_repdistillers_convreg():
    down, up, same = (
        resize_conv(3, 5, (8, 8), (4, 4)),
        resize_conv(3, 5, (4, 4), (8, 8)),
        resize_conv(3, 5, (4, 4), (4, 4)),
    )
    assert (down.kernel_size, down.stride, down.padding) == ((3, 3), (2, 2), (1, 1))
    assert isinstance(up, torch.nn.ConvTranspose2d)
    assert (up.kernel_size, up.stride, up.padding) == ((4, 4), (2, 2), (1, 1))
    assert same.kernel_size == (1, 1) and same.bias is not None
    assert [type(m).__name__ for m in conv_bn((3, 8, 8), (5, 4, 4), relu=True)] == ["Conv2d", "BatchNorm2d", "ReLU"]


def test_growth_by_a_non_integer_factor_is_refused():
    with pytest.raises(ConfigError, match="cannot regress a 3x3 student map to a 8x8 teacher map"):
        resize_conv(3, 5, (3, 3), (8, 8))


def test_pool_to_smaller_pools_only_the_larger_map():
    a, b = torch.rand(2, 3, 8, 8), torch.rand(2, 4, 4, 4)
    pa, pb = pool_to_smaller(a, b)
    assert pb is b and pa.shape == (2, 3, 4, 4)
    torch.testing.assert_close(pa[0, 0, 0, 0], a[0, 0, :2, :2].mean())
    pb2, pa2 = pool_to_smaller(b, a)
    assert pb2 is b and torch.equal(pa2, pa)
