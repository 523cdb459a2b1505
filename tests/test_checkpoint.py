"""Interrupted probes lose nothing: checkpoints, resuming, and refusing another run's file."""

import threading

import pytest
import torch

from wna import probe, stimuli


class Linear(torch.nn.Module):
    def __init__(self, k=3, d=16, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.lin = torch.nn.Linear(d, k)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(k, d, generator=g))

    def forward(self, x):
        return self.lin(x.flatten(1))


class Interrupted(RuntimeError):
    pass


class FailsAfter:
    """The same stimulus as ``noise`` (same repr), but the sample call number ``after`` raises."""

    def __init__(self, noise, after):
        self.noise, self.after, self.calls = noise, after, 0
        self.shape = noise.shape
        self._lock = threading.Lock()

    def sample(self, n, generator):
        with self._lock:
            self.calls += 1
            if self.calls > self.after:
                raise Interrupted("interrupted")
        return self.noise.sample(n, generator)

    def __repr__(self):
        return repr(self.noise)


N, B = 20_000, 1000  # 20 batches


@pytest.mark.parametrize("every", [1e9, 0.0])  # saved only on the interruption; after every batch
def test_resumed_run_is_bitwise_the_uninterrupted_one(tmp_path, every):
    model = Linear()
    noise = stimuli.WhiteNoise((16,), "gaussian")
    full = probe.classification_images(model, noise, N, batch_size=B, seed=3, progress=False)
    ck = tmp_path / "run.pt"
    with pytest.raises(Interrupted):
        probe.classification_images(model, FailsAfter(noise, 8), N, batch_size=B, seed=3, progress=False,
                                    checkpoint=ck, checkpoint_every=every)
    done = torch.load(ck, weights_only=True)["state"][1]  # a plain file: no pickled code
    assert 0 < done <= 8  # batches finished before the failure are kept
    resumed = probe.classification_images(model, noise, N, batch_size=B, seed=3, progress=False,
                                          checkpoint=ck)
    assert resumed.meta["resumed_batches"] == done
    assert resumed.n == full.n == N
    assert torch.equal(resumed.count, full.count)
    assert torch.equal(resumed.sums, full.sums)  # bitwise: the same additions in the same order
    again = probe.classification_images(model, noise, N, batch_size=B, seed=3, progress=False, checkpoint=ck)
    assert again.meta["resumed_batches"] == N // B  # complete: nothing left to compute
    assert torch.equal(again.sums, full.sums)
    # timings: of this call only; stimuli taken from the checkpoint are not counted
    assert full.meta["seconds"] > 0 and full.meta["stimuli_per_second"] > 0
    assert again.meta["stimuli_per_second"] == 0
    rate = resumed.meta["stimuli_per_second"] * resumed.meta["seconds"]
    assert rate == pytest.approx(N - done * B)
    assert resumed.meta["resumed_stimuli"] == done * B and again.meta["resumed_stimuli"] == N
    assert full.meta["resumed_stimuli"] == 0


def test_the_rate_of_a_resumed_run_counts_only_this_process_work(tmp_path):
    """A short last batch taken from the checkpoint: the stimuli resumed are those it holds, and
    the rate counts only the stimuli computed by this call (issue 21)."""
    model = Linear()
    noise = stimuli.WhiteNoise((16,), "gaussian")
    n = 5 * B + 300  # six batches, the last of 300
    ck = tmp_path / "run.pt"
    with pytest.raises(Interrupted):
        probe.classification_images(model, FailsAfter(noise, 3), n, batch_size=B, seed=1, progress=False,
                                    checkpoint=ck, checkpoint_every=0.0)
    part = probe.classification_images(model, noise, n, batch_size=B, seed=1, progress=False, checkpoint=ck)
    done = part.meta["resumed_batches"]
    assert 0 < done <= 3 and part.meta["resumed_stimuli"] == done * B
    assert part.meta["stimuli_per_second"] * part.meta["seconds"] == pytest.approx(n - done * B)
    whole = probe.classification_images(model, noise, n, batch_size=B, seed=1, progress=False, checkpoint=ck)
    assert whole.meta["resumed_batches"] == 6 and whole.meta["resumed_stimuli"] == n
    assert whole.meta["stimuli_per_second"] == 0 and torch.equal(whole.sums, part.sums)
    merged = whole.merge(probe.classification_images(model, noise, B, batch_size=B, seed=2, progress=False))
    assert merged.meta["resumed_stimuli"] == n and "stimuli_per_second" not in merged.meta


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    model = Linear()
    noise = stimuli.WhiteNoise((16,), "gaussian")
    ck = tmp_path / "run.pt"
    probe.classification_images(model, noise, 5000, batch_size=B, seed=3, progress=False, checkpoint=ck)
    for kwargs in ({"seed": 4}, {"n_samples": 6000}, {"weighting": "confidence"}, {"model": Linear(seed=1)},
                   {"stimulus": stimuli.WhiteNoise((16,), "gaussian", std=2.0)}):
        args = {"model": model, "stimulus": noise, "n_samples": 5000, "seed": 3, **kwargs}
        with pytest.raises(ValueError, match="another run"):
            probe.classification_images(batch_size=B, progress=False, checkpoint=ck, **args)


def test_binary_cells_resume(tmp_path):
    w = torch.zeros(16)
    w[:4] = 0.5
    model = torch.nn.Linear(16, 1)
    with torch.no_grad():
        model.weight.copy_(w[None])
        model.bias.zero_()
    noise = stimuli.WhiteNoise((16,), "gaussian")
    signals, classes = torch.stack([-0.3 * w, 0.3 * w]), torch.tensor([0, 1])
    args = dict(gamma=0.2, n_samples=N, batch_size=B, seed=2, progress=False)
    full = probe.stimulus_response_cells(model, signals, classes, noise, **args)
    ck = tmp_path / "cells.pt"
    with pytest.raises(Interrupted):
        probe.stimulus_response_cells(model, signals, classes, FailsAfter(noise, 5), checkpoint=ck, **args)
    resumed = probe.stimulus_response_cells(model, signals, classes, noise, checkpoint=ck, **args)
    assert 0 < resumed.meta["resumed_batches"] <= 5
    for k in ("noise_sums", "stimulus_sums", "count", "noise_sq"):
        assert torch.equal(getattr(resumed, k), getattr(full, k)), k
    with pytest.raises(ValueError, match="another run"):  # other signals
        probe.stimulus_response_cells(model, -signals, classes, noise, checkpoint=ck, **args)


SCRIPT = """
import signal, sys, torch
from wna import models, probe, stimuli
# a shell that starts jobs in the background (as CI may) makes them ignore SIGINT; restore Ctrl-C
signal.signal(signal.SIGINT, signal.default_int_handler)
from wna import cli
cli._interrupt_on_sigterm()  # what `wna probe --checkpoint` does
torch.manual_seed(0)
model = models.MnistCNN().eval()
probe.classification_images(model, stimuli.WhiteNoise((1, 28, 28)), 24_000, batch_size=500, seed=1,
                            progress=False, checkpoint=sys.argv[1], checkpoint_every=0.2)
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])  # Ctrl-C; a job scheduler's stop (wna probe)
def test_ctrl_c_keeps_the_batches_done(tmp_path, sig):
    """A real signal while the worker threads run: the file holds what was done, and resuming completes it."""
    import signal
    import subprocess
    import sys
    import time

    from wna import models

    ck = tmp_path / "run.pt"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(ck)], stderr=subprocess.PIPE, text=True)
    t = time.monotonic()
    while not ck.exists() and proc.poll() is None and time.monotonic() - t < 120:
        time.sleep(0.05)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    done = torch.load(ck, weights_only=True)["state"][1]  # a plain file: no pickled code
    assert 0 < done < 48
    torch.manual_seed(0)
    model = models.MnistCNN().eval()
    noise = stimuli.WhiteNoise((1, 28, 28))
    resumed = probe.classification_images(model, noise, 24_000, batch_size=500, seed=1, progress=False,
                                          checkpoint=ck)
    assert resumed.meta["resumed_batches"] == done and resumed.n == 24_000
    full = probe.classification_images(model, noise, 24_000, batch_size=500, seed=1, progress=False)
    assert torch.equal(resumed.count, full.count) and torch.equal(resumed.sums, full.sums)


def test_snapshots_survive_an_interruption(tmp_path):
    """The running sums kept at N (Fig. 4's one-pass maps) are in the checkpoint: resuming keeps them."""
    model = Linear()
    noise = stimuli.WhiteNoise((16,), "gaussian")
    snaps = [3 * B, 12 * B]
    full = probe.Probe(model, batch_size=B, progress=False).classification_images(
        noise, N, seed=3, snapshots=snaps)
    ck = tmp_path / "run.pt"
    p = probe.Probe(model, batch_size=B, progress=False)
    with pytest.raises(Interrupted):
        p.classification_images(FailsAfter(noise, 8), N, seed=3, snapshots=snaps, checkpoint=ck,
                                checkpoint_every=0.0)
    resumed = p.classification_images(noise, N, seed=3, snapshots=snaps, checkpoint=ck)
    assert resumed[N].meta["resumed_batches"] > 3
    for n in (*snaps, N):
        assert resumed[n].n == n and torch.equal(resumed[n].sums, full[n].sums)
    with pytest.raises(ValueError, match="another run"):  # other snapshots: another run's file
        p.classification_images(noise, N, seed=3, snapshots=[B], checkpoint=ck)


def _failing_save_to(path, real):
    """``save_atomic`` that fails with 'no space left' for ``path`` and works elsewhere."""
    import errno

    def save(obj, p):
        if str(p) == str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, p)
    return save


def test_a_checkpoint_that_cannot_be_written_never_loses_the_run(tmp_path, monkeypatch):
    from wna import _stream

    model = Linear()
    noise = stimuli.WhiteNoise((16,), "gaussian")
    full = probe.classification_images(model, noise, N, batch_size=B, seed=3, progress=False)
    ck = tmp_path / "run.pt"
    monkeypatch.setattr(_stream, "save_atomic", _failing_save_to(ck, _stream.save_atomic))
    monkeypatch.setattr(_stream.tempfile, "gettempdir", lambda: str(tmp_path / "fallback"))
    (tmp_path / "fallback").mkdir()
    # periodic saves fail (warned, the run goes on); the final one goes to the fallback file
    with pytest.warns(RuntimeWarning, match="could not be written") as caught:
        ci = probe.classification_images(model, noise, N, batch_size=B, seed=3, progress=False,
                                         checkpoint=ck, checkpoint_every=0.0)
    assert torch.equal(ci.count, full.count) and torch.equal(ci.sums, full.sums)
    fallback = next((tmp_path / "fallback").glob("wna-checkpoint-*-run.pt"))
    assert any(str(fallback) in str(w.message) for w in caught)
    assert not ck.exists()

    # an interrupted run whose checkpoint cannot be written: the batches done go to the fallback,
    # and the same run continues from it bitwise
    fallback.unlink()
    with pytest.warns(RuntimeWarning, match="saved in"), pytest.raises(Interrupted):
        probe.classification_images(model, FailsAfter(noise, 8), N, batch_size=B, seed=3, progress=False,
                                    checkpoint=ck, checkpoint_every=1e9)
    fallback = next((tmp_path / "fallback").glob("wna-checkpoint-*-run.pt"))
    resumed = probe.classification_images(model, noise, N, batch_size=B, seed=3, progress=False,
                                          checkpoint=fallback)
    assert resumed.meta["resumed_batches"] > 0
    assert torch.equal(resumed.count, full.count) and torch.equal(resumed.sums, full.sums)
    assert torch.equal(resumed.sq, full.sq)


def test_a_checkpoint_path_that_cannot_be_written_is_refused_before_any_batch(tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    seen = []

    class Counting(torch.nn.Module):
        def forward(self, x):
            seen.append(len(x))
            return x.flatten(1)[:, :3]

    with pytest.raises(ValueError, match="blocker is a file, not a folder"):
        probe.classification_images(Counting(), stimuli.WhiteNoise((16,)), N, batch_size=B,
                                    progress=False, checkpoint=tmp_path / "blocker" / "run.pt")
    assert seen == []
    with pytest.raises(IsADirectoryError, match="is a folder"):
        probe.classification_images(Counting(), stimuli.WhiteNoise((16,)), N, batch_size=B,
                                    progress=False, checkpoint=tmp_path)
    assert seen == []
