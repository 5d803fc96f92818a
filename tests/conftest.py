"""Shared test setup: quiet third-party logs, one thread per worker, no network."""

from __future__ import annotations

import os

# Two pytest-xdist workers share two cores; more threads per worker only thrash.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# Nothing in the tests may reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

import torch  # noqa: E402

torch.set_num_threads(1)
