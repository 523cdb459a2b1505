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


def test_logistic_regression_known_logits():
    """One weight and one bias set by hand: class 3's logit is 2 x[100] + 1, every other logit 0."""
    m = models.LogisticRegression()
    with torch.no_grad():
        m.linear.weight.zero_()
        m.linear.bias.zero_()
        m.linear.weight[3, 100] = 2.0
        m.linear.bias[3] = 1.0
    x = torch.zeros(2, 1, 28, 28)
    x[0, 0, 3, 16] = 0.25  # flattened index 3 * 28 + 16 = 100
    out = m(x)
    assert out[0].tolist() == [0, 0, 0, 1.5, 0, 0, 0, 0, 0, 0]
    assert out[1].tolist() == [0, 0, 0, 1.0, 0, 0, 0, 0, 0, 0]


def test_rnn_reads_rows_as_time_steps():
    """Only the last row reaches the read-out through one step when the recurrence is cut."""
    torch.manual_seed(0)
    m = models.RNN().eval()
    with torch.no_grad():
        for name, p in m.rnn.named_parameters():
            if name.startswith("weight_hh"):
                p.zero_()  # no memory: the output depends on the last time step only
    x = torch.rand(2, 1, 28, 28)
    y = x.clone()
    y[:, :, :27] = torch.rand(2, 1, 27, 28)  # change every row but the last
    assert torch.allclose(m(x), m(y), atol=1e-6)
    y[:, :, 27] += 0.5
    assert not torch.allclose(m(x), m(y), atol=1e-3)


def test_unknown_names():
    with pytest.raises(ValueError):
        models.build("resnet")
    with pytest.raises(ValueError, match="no layer"):
        with models.record(models.MnistCNN(), "conv9"):
            pass
