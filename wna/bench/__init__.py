"""Benchmarks (``wna bench ...``): they time the real engine and print figures; they never fail.

* :func:`bench_probe` (``wna bench probe``): the probe on the paper's MNIST CNN
  against the authors' reference loop and an fp32 matmul, per fast path;
* :func:`bench_precision` (``wna bench precision``): bfloat16 and int8 against fp32;
* :func:`bench_models` (``wna bench models``): torchvision architectures, plain
  model against the fast path;
* :func:`bench_gabor` (``wna bench gabor``): the full Gabor-PCA fits of the
  Appendix (variance kept, fit time, peak memory, sampling rate);
* :func:`probe_table`, :func:`models_table`: their figures as tables (the book's
  Performance chapter).
"""

from .gabor import bench_gabor
from .models import bench_models
from .precision import bench_precision
from .tables import models_table, probe_table
from .throughput import (bench_probe, forward_flops, matmul_gflops, peak_rss, probe_rate,
                         reference_probe)

__all__ = ["bench_probe", "bench_precision", "bench_models", "bench_gabor", "forward_flops", "matmul_gflops", "peak_rss",
           "probe_rate", "reference_probe", "probe_table", "models_table"]
