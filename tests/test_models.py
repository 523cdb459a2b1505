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


def test_cifar_cnn_logits_layers_and_parameter_count():
    torch.manual_seed(0)
    m = models.build("cifar_cnn").eval()
    x = torch.rand(2, 3, 32, 32)
    with models.record(m, "conv1", "conv2", "conv3", "fc_layer1", "conv1.0") as acts:
        logits = m(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 10)
    assert acts["conv1"].shape == (2, 64, 32, 32)
    assert acts["conv2"].shape == (2, 128, 16, 16)
    assert acts["conv3"].shape == (2, 256, 8, 8)
    assert acts["fc_layer1"].shape == (2, 512)
    # the block output is post-ReLU, and a non-inplace activation leaves the conv's own output signed
    assert float(acts["conv1"].min()) == 0.0 and float(acts["conv1.0"].min()) < 0
    assert torch.equal(acts["conv1"], m.conv1(x))
    # Fig. 11 at p = 32, by hand: conv 3x3 = 9 c_in c_out + c_out, batch norm 2 c, linear in out + out
    conv = lambda i, o: 9 * i * o + o  # noqa: E731
    lin = lambda i, o: i * o + o  # noqa: E731
    by_hand = (conv(3, 32) + 2 * 32 + conv(32, 64) + conv(64, 128) + 2 * 128 + conv(128, 128)
               + conv(128, 256) + 2 * 256 + conv(256, 256)
               + lin(4096, 1024) + lin(1024, 512) + lin(512, 10))
    assert by_hand == 5_852_170
    assert sum(p.numel() for p in m.parameters()) == 5_852_170


def test_cifar_cnn_tanh_and_width():
    torch.manual_seed(0)
    m = models.CifarCNN(activation="tanh").eval()
    assert isinstance(m.conv1[2], torch.nn.Tanh) and not any(
        isinstance(mod, torch.nn.ReLU) for mod in m.modules())
    with models.record(m, "conv2") as acts:
        m(torch.rand(2, 3, 32, 32))
    assert float(acts["conv2"].min()) < 0 and float(acts["conv2"].abs().max()) <= 1
    small = models.CifarCNN(width=0.25)
    # every channel and feature count a quarter: 8, 16, 32, 32, 64, 64 channels; fc 1024 -> 256 -> 128 -> 10
    channels = [small.conv1[0].out_channels, small.conv1[3].out_channels, small.conv3[3].out_channels]
    assert channels == [8, 16, 64]
    assert (small.fc_layer1[1].in_features, small.fc_layer1[1].out_features) == (64 * 16, 256)
    assert small.fc_layer2[1].out_features == 10
    assert sum(p.numel() for p in small.parameters()) == 367_498
    assert small.eval()(torch.rand(3, 3, 32, 32)).shape == (3, 10)
    assert models.CifarCNN(width=0.001).conv1[0].out_channels == 1  # at least one channel
    with pytest.raises(ValueError, match="activation"):
        models.CifarCNN(activation="sigmoid")


def test_unknown_names():
    with pytest.raises(ValueError):
        models.build("resnet")
    with pytest.raises(ValueError, match="no layer"):
        with models.record(models.MnistCNN(), "conv9"):
            pass
