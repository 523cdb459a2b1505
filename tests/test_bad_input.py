"""Bad inputs, one table: each case must end in a clear error (type and a fragment of its
message) or a correct result, never a silently wrong answer, lost work or a raw error from
deep inside torch. Cases run against the Python API and, where they apply, the ``wna``
command in a subprocess; the checks after them assert that nothing was written or lost.

Each section's table is a list of ``(case id, callable, exception type, message fragment)``;
the callable takes pytest's ``tmp_path`` and runs the bad call.
"""

from __future__ import annotations

import pytest

# ---------------------------------------------------------------- engine, results, stimuli
ENGINE_CASES: list = []

# Merges that would double-count or mix models, outputs that are not logits, seeds, devices,
# unfitted stimuli, results without squares, saves into folders, unreadable files (issue 21).

import torch  # noqa: E402


def _lin(seed: int = 0, classes: int = 3, squeeze: bool = False):
    from conftest import Linear
    w = torch.randn(classes, 4, generator=torch.Generator().manual_seed(seed))
    return Linear(w, squeeze=squeeze)


def _ci(model=None, n: int = 2000, seed=0, **kw):
    from wna import probe, stimuli
    return probe.classification_images(_lin() if model is None else model, stimuli.WhiteNoise((4,)), n,
                                       batch_size=500, seed=seed, progress=False, **kw)


def _old_format(tmp_path):
    """Two shards saved by a wna before result format 3 (no model fingerprint), merged."""
    from wna import probe
    parts = []
    for k in range(2):
        r = _ci(shard=(k, 2))
        r.save(tmp_path / "r.pt")
        d = torch.load(tmp_path / "r.pt", weights_only=True)
        d["format"] = 2
        d["fields"]["meta"] = {m: v for m, v in d["fields"]["meta"].items() if m != "model"}
        torch.save(d, tmp_path / "r.pt")
        parts.append(probe.ClassificationImages.load(tmp_path / "r.pt"))
    return parts[0].merge(parts[1])


def _seeded(entry: str, seed):
    def call(tmp_path):
        from wna import Probe, probe, sta, stimulation, stimuli
        from wna.attack import bias_map_attack
        noise = stimuli.WhiteNoise((4,))
        if entry == "classification_images":
            return _ci(seed=seed)
        if entry == "Probe.run":
            from wna.probe import ClassImageEstimator
            return Probe(_lin(), progress=False).run(ClassImageEstimator(noise), 10, seed=seed)
        if entry == "stimulus_response_cells":
            return probe.stimulus_response_cells(_lin(classes=1, squeeze=True), torch.zeros(2, 4),
                                                 torch.tensor([0, 1]), noise, 0.5, 10, seed=seed, progress=False)
        if entry == "spike_triggered_average":
            net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
            return sta.spike_triggered_average(net, "1", noise, 10, seed=seed, progress=False)
        if entry == "psychometric_curves":
            return stimulation.psychometric_curves(_lin(), torch.rand(3, 4), 0, levels=[0.5], n_per_level=10,
                                                   seed=seed, progress=False)
        return bias_map_attack(_lin(), noise, torch.rand(3, 4), [0.5], n_samples=10, seed=seed, progress=False)
    return call


def _broken_file(kind: str, content: str):
    """``<kind>.load`` (a result class), a probe's ``checkpoint=`` or the zoo's cached checkpoint,
    reading a truncated torch file, a text file or a pickle of another object."""
    def call(tmp_path):
        import contextlib
        import os

        from wna import binary, probe, sta, stimulation, zoo
        f = tmp_path / "file.pt"
        torch.save({"a": torch.zeros(1000)}, f)
        if content == "truncated":
            f.write_bytes(f.read_bytes()[:300])
        elif content == "text":
            f.write_text("not a torch file")
        elif content == "object":
            torch.save({"state_dict": contextlib.nullcontext()}, f)
        elif content == "foreign dict":
            torch.save({"weights": torch.zeros(3)}, f)
        if kind == "checkpoint":
            return _ci(checkpoint=f)
        if kind == "zoo":
            before = os.environ.get("WNA_CACHE")
            os.environ["WNA_CACHE"] = str(tmp_path / "cache")
            try:
                path = zoo.checkpoint_path("mnist_logreg")
                path.parent.mkdir(parents=True)
                f.replace(path)
                return zoo.load("mnist_logreg", progress=False)
            finally:
                if before is None:
                    os.environ.pop("WNA_CACHE")
                else:
                    os.environ["WNA_CACHE"] = before
        cls = {"ClassificationImages": probe.ClassificationImages, "SpikeTriggered": sta.SpikeTriggered,
               "StimulusResponseCells": binary.StimulusResponseCells, "Decisions": stimulation.Decisions}[kind]
        return cls.load(f)
    return call


def _save_into_folder(tmp_path):
    """``Result.save`` of a folder: refused, and neither the folder nor a temporary file is written."""
    folder = tmp_path / "results"
    folder.mkdir()
    try:
        _ci(n=10).save(folder)
    finally:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["results"] and not any(folder.iterdir())


def _merge(a, b):
    return lambda tmp_path: a().merge(b())


def _no_graph(model):
    def call(x):
        with torch.no_grad():
            return model(x)
    return call


def _squareless(what: str):
    def call(tmp_path):
        r = _ci(n=10)
        r.sq = None
        return getattr(r, what)
    return call


def _unfitted_gabor(tmp_path):
    from wna import Probe, stimuli
    return Probe(_lin(), progress=False).classification_images(stimuli.GaborPCANoise(10), 10)


def _probe_of(device):
    def call(tmp_path):
        from wna import Probe
        return Probe(_lin(), device=device)
    return call


SEED_MESSAGE = "seed must be an integer >= 0, got"
ENGINE_CASES += [
    ("merge: runs of one stream with other n_samples share batches", _merge(lambda: _ci(n=2000),
                                                                             lambda: _ci(n=3000)),
     ValueError, "both results hold batches [0, 1, 2, 3] of seed 0 (batch size 500, stimulus WhiteNoise((4,), "
     "'uniform', low=0.0, high=1.0); n_samples 2000 and 3000): merging would count the same stimuli twice"),
    ("merge: a shard with the full run", _merge(lambda: _ci(), lambda: _ci(shard=(1, 2))), ValueError,
     "both results hold batches [1, 3] of seed 0"),
    ("merge: results of two models", _merge(lambda: _ci(seed=0), lambda: _ci(_lin(seed=1), seed=1)), ValueError,
     "cannot merge results of different models (fingerprint "),
    ("merge: results saved before model fingerprints", _old_format, ValueError,
     "they record no model fingerprint (saved by a wna older than result format 3)"),
    ("probe: softmax outputs", lambda t: _ci(torch.nn.Sequential(_lin(), torch.nn.Softmax(1))), ValueError,
     "the model's outputs look like probabilities (all 3 columns in [0, 1], every row of the first batch "
     "summing to 1; its last operation is softmax), but the probe expects logits: drop the final softmax, or "
     "pass outputs='probabilities' to read them as probabilities; if these are logits, pass outputs='logits'"),
    ("probe: sigmoid outputs of a binary head", lambda t: _ci(torch.nn.Sequential(_lin(classes=1),
                                                                                   torch.nn.Sigmoid())),
     ValueError, "single output column looks like a probability (every value of the first batch in [0, 1], "
     "some in (0, 0.5]; its last operation is sigmoid), but the probe expects a logit (class 1 when > 0) and "
     "would put those stimuli in class 1: drop the final sigmoid, return p - 0.5 (a threshold at 0.5), or pass "
     "outputs='probabilities'"),
    ("probe: functional sigmoid of a binary observer", lambda t: _ci(lambda x: torch.sigmoid(x.sum(1) - 2)),
     ValueError, "its last operation is sigmoid"),
    ("probe: probabilities without an autograd graph", lambda t: _ci(_no_graph(torch.nn.Sequential(
        _lin(), torch.nn.Softmax(1)))), ValueError, "it leaves no autograd graph to show a final linear layer"),
    ("probe: integer outputs", lambda t: _ci(lambda x: (x.sum(1) > 2).long()), ValueError,
     "the model returned torch.int64 outputs, but the probe expects float logits"),
    ("probe: outputs='probabilities' outside [0, 1]", lambda t: _ci(outputs="probabilities"), ValueError,
     "outputs='probabilities', but the model returned values outside [0, 1]"),
    ("probe: unknown outputs option", lambda t: _ci(outputs="softmax"), ValueError, "outputs must be one of"),
    ("seed 2.7", _seeded("classification_images", 2.7), ValueError, SEED_MESSAGE + " 2.7 (float)"),
    ("seed None", _seeded("classification_images", None), ValueError, SEED_MESSAGE + " None"),
    ("seed -1", _seeded("classification_images", -1), ValueError, SEED_MESSAGE + " -1"),
    ("seed '3'", _seeded("classification_images", "3"), ValueError, SEED_MESSAGE + " '3' (str)"),
    ("seed True", _seeded("classification_images", True), ValueError, SEED_MESSAGE + " True (bool)"),
    ("seed 1.0, Probe.run", _seeded("Probe.run", 1.0), ValueError, SEED_MESSAGE + " 1.0"),
    ("seed -2, stimulus_response_cells", _seeded("stimulus_response_cells", -2), ValueError, SEED_MESSAGE),
    ("seed 0.5, spike_triggered_average", _seeded("spike_triggered_average", 0.5), ValueError, SEED_MESSAGE),
    ("seed -1, psychometric_curves", _seeded("psychometric_curves", -1), ValueError, SEED_MESSAGE + " -1"),
    ("seed None, bias_map_attack", _seeded("bias_map_attack", None), ValueError, SEED_MESSAGE + " None"),
    ("device 'gpu'", _probe_of("gpu"), ValueError, "device 'gpu' is not available; this machine has: cpu"),
    ("device 'cuda:99'", _probe_of("cuda:99"), ValueError, "device 'cuda:99' is not available; this machine has: cpu"),
    ("stimulus: unfitted GaborPCANoise", _unfitted_gabor, ValueError,
     "GaborPCANoise has no stimulus shape yet: it is not fitted; call .fit(images) first"),
    ("result: rms without sums of squares", _squareless("rms"), ValueError,
     "rms needs the sums of squares, and this result holds none"),
    ("result: sem without sums of squares", _squareless("sem"), ValueError, "run the probe again"),
    ("result: save into a folder", _save_into_folder, IsADirectoryError,
     "results: it is a directory; pass a file path"),
    ("checkpoint: a folder", lambda t: _ci(checkpoint=t), IsADirectoryError,
     "is a folder; give a file path (e.g. "),
    ("checkpoint: truncated", _broken_file("checkpoint", "truncated"), ValueError,
     "file.pt is not a readable probe checkpoint (truncated, or not written by torch.save); delete it to start "
     "the run over, or choose another checkpoint path"),
    ("checkpoint: a pickle of other objects", _broken_file("checkpoint", "object"), ValueError,
     "is not a readable probe checkpoint (it holds objects other than tensors and plain data)"),
    ("zoo: truncated cached checkpoint", _broken_file("zoo", "truncated"), ValueError,
     "is not a readable zoo model checkpoint (truncated, or not written by torch.save); delete it, or call "
     "zoo.load('mnist_logreg', retrain=True), to train the model again"),
    ("zoo: cached checkpoint of something else", _broken_file("zoo", "foreign dict"), ValueError,
     "is not a mnist_logreg zoo model checkpoint (KeyError"),
    *[(f"{cls}.load: {content}", _broken_file(cls, content), ValueError, f"file.pt is not a {fragment}")
      for cls in ("ClassificationImages", "StimulusResponseCells", "SpikeTriggered", "Decisions")
      for content, fragment in (("truncated", "readable wna result file (truncated, or not written by torch.save); "
                                              "re-save the result with Result.save, or re-run it"),
                                ("text", "readable wna result file (truncated, or not written by torch.save)"),
                                ("object", "readable wna result file (it holds objects other than tensors"),
                                ("foreign dict", "wna result file (it has no result format"))],
]

# ---------------------------------------------------------------- data, templates
DATA_CASES: list = []


def _imagenet_not_a_zip(tmp_path):
    from wna import data
    (tmp_path / "imagenet").mkdir()
    (tmp_path / data.IMAGENET_MIRROR).write_bytes(b"PK not a zip")
    return data.imagenet_val(32, root=tmp_path, download=False)


def _imagenet_val(**kw):
    def call(tmp_path):
        from wna import data
        return data.imagenet_val(root=tmp_path, download=False, **kw)
    return call


DATA_CASES += [
    ("imagenet: limit 0", _imagenet_val(size=32, limit=0), ValueError, "limit must be at least 1"),
    ("imagenet: size 0", _imagenet_val(size=0), ValueError, "positive number of pixels"),
    ("imagenet: missing, download=False", _imagenet_val(size=32), FileNotFoundError,
     "download=False: not downloaded"),
    ("imagenet: not a zip", _imagenet_not_a_zip, ValueError, "not the ImageNet subset zip"),
]

# MNIST IDX files (synthetic: 10 blank images) and template matching (issue 21)

import contextlib  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402

import torch  # noqa: E402

from wna.data import DataCorruptError  # noqa: E402


@contextlib.contextmanager
def _env(**values):
    """Set environment variables for the block (the callables take only ``tmp_path``)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _idx(ndim: int, dims, data_bytes: int | None = None, fill: int = 0) -> bytes:
    """An IDX file of unsigned bytes: magic, big-endian dims, then ``data_bytes`` bytes (default: all)."""
    n = math.prod(dims) if data_bytes is None else data_bytes
    return bytes([0, 0, 8, ndim]) + b"".join(d.to_bytes(4, "big") for d in dims) + bytes([fill]) * n


def _mnist_with(images: bytes, labels: bytes = _idx(1, (10,)), gz: bool = False, cut_gz: bool = False):
    """``data.mnist(train=False)`` on a data root holding these test files, uncompressed or as .gz
    (``cut_gz``: the images' .gz cut in half); the training files are empty placeholders, never
    read for the test split."""
    def call(tmp_path):
        import gzip

        from wna import data
        raw = tmp_path / "data" / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for name in data.MNIST_FILES:
            content = {"t10k-images-idx3-ubyte": images, "t10k-labels-idx1-ubyte": labels}.get(name, b"")
            if gz:
                packed = gzip.compress(content) if content else b""
                if cut_gz and name.startswith("t10k-images"):
                    packed = packed[: len(packed) // 2]
                (raw / f"{name}.gz").write_bytes(packed)
            else:
                (raw / name).write_bytes(content)
        with _env(WNA_DATA=str(tmp_path / "data"), WNA_CACHE=str(tmp_path / "cache")):
            return data.mnist(train=False, download=False)
    return call


def _templates(fn: str, hwc: bool = False, n: int = 6, labels=None):
    """``templates.<fn>`` on 3 random (3, 4, 4) templates (``hwc``: given channels-last) and
    ``n`` images that are copies of them."""
    def call(tmp_path):
        from wna import templates
        t = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(0))
        y = torch.arange(n) % 3
        x = t[y]
        maps = t.permute(0, 2, 3, 1) if hwc else t
        y = y if labels is None else labels
        if fn == "class_means":
            return templates.class_means(x, y, 3)
        if fn == "variants":
            return templates.variants({"maps": maps}, x, y)
        if fn == "match":
            return templates.match(maps, x)
        return templates.template_accuracy(maps, x, y)
    return call


DATA_CASES += [
    ("mnist: truncated image file", _mnist_with(_idx(3, (10, 28, 28), 4000)), DataCorruptError,
     "t10k-images-idx3-ubyte is truncated: 4,016 bytes, but its IDX header (10 x 28 x 28 bytes of data) "
     "needs 7,856 bytes; delete it to download it again (where online) or replace it"),
    ("mnist: labels where the images belong", _mnist_with(_idx(1, (10,))), DataCorruptError,
     "t10k-images-idx3-ubyte is not an IDX image file of unsigned bytes: its header starts 0x00000801, "
     "expected 0x00000803"),
    ("mnist: shorter than a header", _mnist_with(b"\0\0\x08"), DataCorruptError,
     "t10k-images-idx3-ubyte is truncated: 3 bytes, shorter than an IDX image file's 16-byte header"),
    ("mnist: fewer labels than images", _mnist_with(_idx(3, (10, 28, 28)), _idx(1, (9,))), DataCorruptError,
     "t10k-images-idx3-ubyte holds 10 images but"),
    ("mnist: a label above 9", _mnist_with(_idx(3, (10, 28, 28)), _idx(1, (10,), fill=12)), DataCorruptError,
     "t10k-labels-idx1-ubyte holds a label 12 (labels are 0-9)"),
    ("mnist: .gz of a file that is not the official one", _mnist_with(_idx(3, (10, 28, 28)), gz=True),
     DataCorruptError, "t10k-images-idx3-ubyte.gz decompresses to a file with MD5"),
    ("mnist: truncated .gz", _mnist_with(_idx(3, (10, 28, 28), fill=7), gz=True, cut_gz=True),
     DataCorruptError, "t10k-images-idx3-ubyte.gz cannot be decompressed"),
    ("templates: channels-last maps", _templates("template_accuracy", hwc=True), ValueError,
     "templates are (4, 4, 3) each but images (3, 4, 4)"),
    ("templates: match, channels-last maps", _templates("match", hwc=True), ValueError,
     "the shapes must match exactly"),
    ("templates: variants, channels-last maps", _templates("variants", hwc=True), ValueError,
     "templates are (4, 4, 3) each but images (3, 4, 4)"),
    ("templates: no images", _templates("template_accuracy", n=0), ValueError,
     "no images to match (an empty image tensor)"),
    ("templates: fractional labels", _templates("template_accuracy", labels=torch.arange(6) / 2), ValueError,
     "labels must be whole class numbers"),
    ("templates: label out of range", _templates("template_accuracy", labels=torch.arange(6)), ValueError,
     "labels must lie in [0, 3), got 0..5"),
    ("class_means: fewer labels than images", _templates("class_means", labels=torch.arange(3)), ValueError,
     "labels must be (6,) (one per image), got (3,)"),
    ("class_means: no images", _templates("class_means", n=0), ValueError, "no images to average"),
]


# ---------------------------------------------------------------- the wna command, the runner
CLI_CASES: list = []

# The `wna` command in a subprocess, with empty WNA_CACHE and WNA_DATA: a bad argument must end
# in exit code 2 and its message within seconds, before any training or data access (both
# folders stay absent) and before anything is written (issue 21).

import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from wna import run as runner  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REFUSED_WITHIN_S = 30  # a refusal takes about 2 s (the interpreter and torch starting); training minutes


class Refused(Exception):
    """The command ended as a refusal should (exit 2, in seconds, nothing trained or written);
    its message is the command's stderr."""


def _wna(*args: str, blocker: bool = False):
    """Run ``wna ARGS`` (``{tmp}`` in an argument: the test's folder); ``blocker``: first make a
    plain file ``{tmp}/blocker``."""
    def call(tmp_path):
        if blocker:
            (tmp_path / "blocker").write_text("a file, not a folder")
        cache, data_root, out = tmp_path / "cache", tmp_path / "data", tmp_path / "out"
        env = {**os.environ, "WNA_CACHE": str(cache), "WNA_DATA": str(data_root)}
        argv = [a.format(tmp=tmp_path) for a in args]
        if argv[0] == "run":
            argv += ["--out", str(out), "--no-progress"]
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "wna", *argv], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=10 * REFUSED_WITHIN_S)
        wall = time.perf_counter() - t0
        assert res.returncode == 2, f"wna {' '.join(argv)}: exit {res.returncode}, not 2:\n{res.stderr[-3000:]}"
        assert wall < REFUSED_WITHIN_S, f"wna {' '.join(argv)}: refused only after {wall:.0f} s"
        assert not cache.exists() and not data_root.exists() and not out.exists(), \
            f"wna {' '.join(argv)} trained, read data or wrote before refusing"
        assert "Traceback" not in res.stderr, res.stderr
        raise Refused(res.stderr)
    return call


def _runner(call):
    """A runner API call given ``out`` (the output folder), which must stay absent."""
    def wrapped(tmp_path):
        out = tmp_path / "out"
        try:
            call(out)
        finally:
            assert not out.exists(), "the runner wrote before refusing"
    return wrapped


def _notebook(name: str) -> Path:
    return ROOT / "notebooks" / f"{name}.py"


def _bad_profile_value(out):
    """A project whose smoke profile gives the integer parameter x a string."""
    root = out.parent / "project"
    (root / "notebooks" / "profiles").mkdir(parents=True)
    for p in runner.PROFILES:
        (root / "notebooks" / "profiles" / f"{p}.yml").write_text("boom: {x: two}\n" if p == "smoke" else "")
    (root / "notebooks" / "boom.py").write_text(
        "# %% [markdown]\n# # Figure 0\n\n# %% tags=[\"parameters\"]\nx = 1\nprofile = 'paper'\n\n# %%\nx + 1\n")
    return runner.run_notebook(root / "notebooks" / "boom.py", "smoke", out_dir=out, root=root, progress=False)


FIG02 = "fig02_mnist_bias_maps"
CLI_CASES += [
    ("wna probe --n-samples -1", _wna("probe", "--n-samples", "-1"), Refused,
     "argument --n-samples: must be an integer >= 1, got -1"),
    ("wna probe --batch-size 0", _wna("probe", "--batch-size", "0"), Refused,
     "argument --batch-size: must be an integer >= 1, got 0"),
    ("wna probe --seed -1", _wna("probe", "--seed", "-1"), Refused, "argument --seed: must be an integer >= 0"),
    ("wna probe --epochs 0", _wna("probe", "--epochs", "0"), Refused, "argument --epochs: must be an integer >= 1"),
    ("wna probe --n-train 0", _wna("probe", "--n-train", "0"), Refused,
     "argument --n-train: must be an integer >= 1"),
    ("wna probe --n-samples 1.5", _wna("probe", "--n-samples", "1.5"), Refused,
     "argument --n-samples: must be an integer >= 1, got '1.5'"),
    ("wna probe --model unknown", _wna("probe", "--model", "mnist_cnnn"), Refused,
     "wna: error: unknown model 'mnist_cnnn'; known: cifar_cnn"),
    ("wna probe --model generative", _wna("probe", "--model", "mnist_vae"), Refused,
     "wna: error: mnist_vae is a generative model"),
    ("wna probe --device absent GPU", _wna("probe", "--device", "cuda:99"), Refused,
     "wna: error: --device: device 'cuda:99' is not available; this machine has: cpu"),
    ("wna probe --device nonsense", _wna("probe", "--device", "gpu0"), Refused,
     "wna: error: --device: device 'gpu0' is not available; this machine has: cpu"),
    ("wna probe --out a folder", _wna("probe", "--n-samples", "10", "--out", "{tmp}"), Refused,
     "is a folder; give a file path"),
    ("wna probe --out under a file", _wna("probe", "--out", "{tmp}/blocker/maps.pt", blocker=True), Refused,
     "/blocker/maps.pt cannot be written: "),
    ("wna probe --checkpoint under a file", _wna("probe", "--checkpoint", "{tmp}/blocker/sub/c.pt", blocker=True),
     Refused, "/blocker is a file, not a folder"),
    ("wna run: -p n_samples not a number", _wna("run", FIG02, "-p", "n_samples", "notanumber"), Refused,
     f"wna: error: override: notebook {FIG02}'s parameter n_samples takes an integer (its default is "
     f"1000000), but n_samples is 'notanumber' (str, expected an integer)"),
    ("wna run fig13: -p n_samples not a number", _wna("run", "fig13_mlp_rnn_maps", "-p", "n_samples", "x"),
     Refused, "parameter n_samples takes an integer"),
    ("wna run: unknown parameter", _wna("run", FIG02, "-p", "n_sample", "5"), Refused,
     f"notebook {FIG02} has no parameter 'n_sample' (did you mean 'n_samples', 'seed_n_samples'?); "
     "its parameters are: n_samples, batch_size, seed"),
    ("wna run: -p profile", _wna("run", FIG02, "-p", "profile", "paper"), Refused,
     "'profile' is set by the runner (choose it with --profile)"),
    ("wna run: -p not YAML", _wna("run", FIG02, "-p", "seeds", "[1,"), Refused, "-p seeds '[1,': not a YAML value"),
    ("wna run: negative count", _wna("run", FIG02, "-p", "n_samples", "-5"), Refused,
     "parameter n_samples must be at least 1, got -5"),
    ("run_notebook: unknown parameter",
     _runner(lambda out: runner.run_notebook(_notebook(FIG02), "smoke", {"n_sample": 5}, out, ROOT, False)),
     runner.ParameterError, f"notebook {FIG02} has no parameter 'n_sample'"),
    ("run_notebook: wrong type in a list",
     _runner(lambda out: runner.run_notebook(_notebook(FIG02), "smoke", {"seeds": [1, "two"]}, out, ROOT, False)),
     runner.ParameterError, "but seeds[1] is 'two' (str, expected an integer)"),
    ("run_notebook: unknown key of a mapping",
     _runner(lambda out: runner.run_notebook(_notebook("fig05_gabor_noise"), "smoke", {"n_fit": {"svhn": 1}},
                                             out, ROOT, False)),
     runner.ParameterError, "parameter n_fit: key 'svhn' is not one of ['cifar10', 'fashion_mnist', 'mnist']"),
    ("run_notebook: None default set by the profiles to an integer",
     _runner(lambda out: runner.run_notebook(_notebook(FIG02), "smoke", {"n_train": 0.5}, out, ROOT, False)),
     runner.ParameterError, "n_train is 0.5 (float, expected an integer or null)"),
    ("run_notebooks: a parameter none of them has",
     _runner(lambda out: runner.run_notebooks([FIG02, "fig13_mlp_rnn_maps"], "smoke", {"n_smples": 1}, out,
                                              progress=False)),
     runner.ParameterError, "none of the 2 notebooks has a parameter 'n_smples'; did you mean 'n_samples'"),
    ("run_notebook: a bad value in the profile", _runner(_bad_profile_value), runner.ParameterError,
     "profile 'smoke' (notebooks/profiles/smoke.yml): notebook boom's parameter x takes an integer"),
]

CASES = ENGINE_CASES + DATA_CASES + CLI_CASES


@pytest.mark.parametrize("case, call, exc, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_a_message(case, call, exc, fragment, tmp_path):
    with pytest.raises(exc) as info:
        call(tmp_path)
    assert fragment.lower() in str(info.value).lower(), f"{case}: {info.value}"


# ---------------------------------------------------------------- data, templates, command: known answers

def test_channels_first_maps_match_and_channels_last_are_refused():
    """The issue's case: the same maps scored 100% as (C, H, W) and 8.5% as (H, W, C) (flattened
    against (C, H, W) images); now the second is refused, naming both shapes."""
    from wna import templates
    t = torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(200) % 10
    x = t[y] * torch.linspace(0.5, 2.0, 200)[:, None, None, None]
    assert templates.template_accuracy(t, x, y, rule="cosine")[0] == 1.0
    # flat templates (a linear model's weights) are taken in the images' row-major order
    assert templates.template_accuracy(t.flatten(1), x, y, rule="cosine")[0] == 1.0
    with pytest.raises(ValueError, match=r"templates are \(8, 8, 3\) each but images \(3, 8, 8\)"):
        templates.template_accuracy(t.permute(0, 2, 3, 1), x, y, rule="cosine")


def test_every_profile_value_passes_the_parameter_check():
    """Every value of smoke.yml, ci.yml and paper.yml fits its notebook's parameters cell, and
    every notebook a profile names exists."""
    import yaml
    notebooks = {nb.stem: nb for nb in runner.find_notebooks(root=ROOT)}
    for profile in runner.PROFILES:
        entries = yaml.safe_load((ROOT / "notebooks" / "profiles" / f"{profile}.yml").read_text())
        assert set(entries) <= set(notebooks), f"{profile}.yml names {sorted(set(entries) - set(notebooks))}"
        for name, nb in notebooks.items():
            params = runner.check_parameters(nb, profile, root=ROOT)
            assert params["profile"] == profile and set(entries.get(name) or {}) <= set(params)


@pytest.mark.parametrize("default, value, want", [
    (1000, 5, 5), (1000, 1e6, 1_000_000), (1000, "1e6", 1_000_000), (1000, 2.5, None), (1000, True, None),
    (1000, "x", None), (1000, None, None), (0.5, 1, 1.0), (0.5, "1e-3", 0.001), (0.5, float("nan"), None),
    (True, False, False), (True, 1, None), ("none", "confidence", "confidence"), ("none", 1, None),
    ([1, 2], [3.0], [3]), ([1, 2], [1, "x"], None), ([1, 2], 3, None), ([[1, 7]], [[2, 3]], [[2, 3]]),
    ([[1, 7]], [2, 3], None), ([0.0, 0.1], [1, 0.5], [1.0, 0.5]), ([], ["any", 1], ["any", 1]),
    ({"a": 1}, {"a": 2}, {"a": 2}), ({"a": 1}, {"b": 2}, None), ({"a": 1}, {"a": "x"}, None),
    (None, "anything", "anything"),
])
def test_parameter_rules_known_answers(default, value, want, tmp_path):
    """What each default's type accepts (``want`` None: refused), as ``wna run --help`` says."""
    nb = tmp_path / "notebooks" / "nb.py"
    (tmp_path / "notebooks" / "profiles").mkdir(parents=True)
    (tmp_path / "notebooks" / "profiles" / "smoke.yml").write_text("")
    nb.write_text(f"# %% tags=[\"parameters\"]\np = {default!r}\nprofile = 'paper'\n")
    if want is None:
        with pytest.raises(runner.ParameterError, match="notebook nb's parameter p"):
            runner.check_parameters(nb, "smoke", {"p": value}, root=tmp_path)
    else:
        got = runner.check_parameters(nb, "smoke", {"p": value}, root=tmp_path)["p"]
        assert got == want and type(got) is type(want)


def test_probe_keeps_the_result_when_the_final_write_fails(tmp_path, monkeypatch, capsys):
    """A disk that fills up (or a folder removed) during the run: the result goes to a fallback
    file in the current folder, named on stderr, equal to the result; exit code 1."""
    from conftest import Linear

    from wna import cli, zoo
    from wna.probe import ClassificationImages
    w = torch.randn(10, 784, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(zoo, "load", lambda *a, **k: Linear(w))
    target = tmp_path / "results" / "maps.pt"
    real_save = ClassificationImages.save

    def full_disk(self, path):
        if Path(path) == target:
            raise OSError(28, "No space left on device")
        real_save(self, path)

    monkeypatch.setattr(ClassificationImages, "save", full_disk)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["probe", "--n-samples", "512", "--batch-size", "128", "--fast", "off", "--no-progress",
                     "--out", str(target)])
    err = capsys.readouterr().err
    assert code == 1 and f"could not write {target}" in err and "No space left on device" in err
    (fallback,) = tmp_path.glob("wna-probe-*.pt")
    assert f"the result is saved in {fallback} instead" in err
    kept = ClassificationImages.load(fallback)
    assert kept.n == 512 and int(kept.count.sum()) == 512
