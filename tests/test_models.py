import pytest
import torch

from wna import models


def test_mnist_cnn_logits_and_named_activations():
    torch.manual_seed(0)
    m = models.MnistCNN().eval()
    x = torch.rand(3, 1, 28, 28)
    with models.record(m, "conv1", "conv2", "fc1") as acts:
        logits = m(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (3, 10)
    assert acts["conv1"].shape == (3, 20, 24, 24)
    assert acts["conv2"].shape == (3, 50, 8, 8)
    assert acts["fc1"].shape == (3, 500)
    # the recorded conv1 output is the layer's real output
    assert torch.allclose(acts["conv1"], m.conv1(x))
    # hooks are gone after the block
    assert all(len(mod._forward_hooks) == 0 for mod in m.modules())
    # parameter count of the paper's architecture
    assert sum(p.numel() for p in m.parameters()) == 431_080


def test_logistic_regression_is_affine():
    m = models.LogisticRegression()
    x = torch.rand(4, 1, 28, 28)
    expected = x.flatten(1) @ m.linear.weight.T + m.linear.bias
    assert torch.allclose(m(x), expected)


def test_unknown_names():
    with pytest.raises(ValueError):
        models.build("resnet")
    with pytest.raises(ValueError, match="no layer"):
        with models.record(models.MnistCNN(), "conv9"):
            pass
