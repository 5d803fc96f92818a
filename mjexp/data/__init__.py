"""Data: one LightningDataModule per dataset, all keeping the batch contract of ``module.py``.

- ``shapes.ShapesDataModule``: the default, procedural shapes with compositional captions and
  ground-truth attributes (optionally two objects, sizes, held-out combinations);
- ``digits.DigitsDataModule``: scikit-learn's bundled handwritten digits;
- ``imagefolder.ImageFolderDataModule``: a folder with ``metadata.jsonl`` / ``metadata.csv``;
- ``cifar.CIFAR10DataModule``: torchvision's CIFAR-10.

``python -m mjexp.data.prompt_set_files`` writes the versioned prompt sets in ``evaluation/prompts``.
"""
