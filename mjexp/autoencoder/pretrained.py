"""Load an ``AutoencoderKL`` saved with ``save_pretrained``: a folder here, or a hub id when
downloads are allowed. Only safetensors weights are read; nothing is downloaded otherwise."""

from __future__ import annotations

from pathlib import Path

from diffusers import AutoencoderKL

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"


def load_autoencoder_kl(path: str, subfolder: str | None = None, allow_download: bool = False) -> AutoencoderKL:
    """The autoencoder at ``path`` (``/subfolder``), with a message naming what is missing."""
    local = Path(path).expanduser()
    if local.exists():
        folder = local / subfolder if subfolder else local
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (folder / name).is_file():
                hint = " (a Stable Diffusion pipeline folder needs autoencoder.subfolder=vae)" if (local / "model_index.json").is_file() and not subfolder else ""
                raise FileNotFoundError(
                    f"autoencoder.path={path}{'/' + subfolder if subfolder else ''} has no {name}: expected a folder "
                    f"written by AutoencoderKL.save_pretrained{hint}"
                )
        return AutoencoderKL.from_pretrained(str(local), subfolder=subfolder, local_files_only=True, use_safetensors=True)
    if not allow_download:
        raise FileNotFoundError(
            f"autoencoder.path={path!r} is not a local folder and downloads are off: download it on a machine "
            f"with internet (huggingface-cli download {path}) and pass the folder, or set "
            "autoencoder.allow_download=true"
        )
    return AutoencoderKL.from_pretrained(path, subfolder=subfolder, use_safetensors=True)
