"""Evaluation suite: our feature extraction + FID against one ``torch_fidelity.calculate_metrics`` call.

Both sides get the same uint8 images and the same Inception weights file and do the same work per
call: extract features of both sets in batches of the same size and compute FID. torch-fidelity
also builds its extractor inside every call, which it cannot avoid; ours is loaded once per
evaluation and reused for every setting (as ``evaluation.Scorer`` does), so that is outside the
timed call. Ours is ``evaluation.features`` (torch-fidelity's
own extractor, so the features are identical) plus ``evaluation.fid`` (float64, symmetric
eigen-decomposition); theirs computes the matrix square root with ``scipy.linalg.sqrtm``.
torch-fidelity runs with ``save_cpu_ram=True`` (no DataLoader worker processes), as ours has none.

No Inception weights are downloaded: the network is torch-fidelity's Inception with random
initialisation saved as a plain state dict (the trick of ``tests/unit/evaluation/conftest.py``),
which costs exactly as much to run as the real weights.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from benchmarks.harness import Comparison, interleaved, spread, throughput


def random_inception_weights(path: Path) -> Path:
    """torch-fidelity's Inception-v3 with random weights, saved as a state dict (no download)."""
    if path.is_file():
        return path
    from torch_fidelity import feature_extractor_inceptionv3 as inception

    torch.manual_seed(0)
    with mock.patch.object(inception, "load_state_dict_from_url", lambda *a, **k: {}), mock.patch.object(
        inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None
    ):
        network = inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    state = network.state_dict()
    for name, value in state.items():
        if name.endswith("running_var"):  # keep activations O(1) through the random layers
            value.fill_(0.05)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def smooth_images(n: int, resolution: int, seed: int) -> torch.Tensor:
    """uint8 (n, 3, H, W): low-frequency random colour fields, a stand-in for generated images."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 3, 4, 4, generator=g)
    fine = F.interpolate(coarse, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return ((fine.tanh() + 1) * 127.5).round().to(torch.uint8)


class Images(Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


@dataclass(frozen=True)
class FidCase:
    n: int  # images per set (two sets are scored)
    layer: str = "2048"
    resolution: int = 16
    batch_size: int = 64

    @property
    def label(self) -> str:
        return f"FID {self.n} vs {self.n} images, {self.resolution}px, inception layer {self.layer}"


def run_fid_case(case: FidCase, device: torch.device, weights: Path, repeats: int, warmup: int) -> list[Comparison]:
    import torch_fidelity

    from evaluation.features import extract_features, load_extractor, resolve_extractor
    from evaluation.fid import fid_from_features

    generated = smooth_images(case.n, case.resolution, seed=1)
    reference = smooth_images(case.n, case.resolution, seed=2)
    # Ours loads the extractor once per evaluation (evaluation.Scorer); torch-fidelity inside every call.
    network = load_extractor(resolve_extractor("inception", layer=case.layer, weights_path=str(weights)), device)
    values: dict[str, float] = {}

    def ours() -> None:
        features = [extract_features(network, images, case.batch_size) for images in (generated, reference)]
        values["ours"] = fid_from_features(*features)

    def theirs() -> None:
        metrics = torch_fidelity.calculate_metrics(
            input1=Images(generated), input2=Images(reference), fid=True, cuda=device.type == "cuda",
            batch_size=case.batch_size, feature_extractor="inception-v3-compat", feature_layer_fid=case.layer,
            feature_extractor_weights_path=str(weights), save_cpu_ram=True, cache=False, verbose=False,
        )
        values["theirs"] = metrics[torch_fidelity.KEY_METRIC_FID]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular covariances (n < d) are expected at these sizes
        times = interleaved({"ours": ours, "theirs": theirs}, repeats, warmup, device)
    images = 2 * case.n
    return [Comparison(
        "evaluation", case.label, "features + FID throughput", "images/s",
        throughput(images, times["ours"]), throughput(images, times["theirs"]),
        notes=f"FID ours {values['ours']:.6g}, torch-fidelity {values['theirs']:.6g}; ours loads the "
              "extractor once per evaluation, torch-fidelity in every call",
        spread={n: spread(images, t) for n, t in times.items()},
    )]
