"""Load an ``AutoencoderKL`` saved with ``save_pretrained``: a folder here, or a hub id when
downloads are allowed. Only safetensors weights are read; nothing is downloaded otherwise."""

from __future__ import annotations

from pathlib import Path

from diffusers import AutoencoderKL

from mjexp.autoencoder.codec import LatentCodec

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
        return AutoencoderKL.from_pretrained(
            str(local), subfolder=subfolder, local_files_only=True, use_safetensors=True, low_cpu_mem_usage=False
        )
    if not allow_download:
        raise FileNotFoundError(
            f"autoencoder.path={path!r} is not a local folder and downloads are off: download it on a machine "
            f"with internet (huggingface-cli download {path}) and pass the folder, or set "
            "autoencoder.allow_download=true"
        )
    return AutoencoderKL.from_pretrained(path, subfolder=subfolder, use_safetensors=True, low_cpu_mem_usage=False)


def load_codec(
    path: str | Path,
    subfolder: str | None = None,
    scaling_factor: float | None = None,
    shift_factor: float | None = None,
    allow_download: bool = False,
    bf16: bool = False,
) -> LatentCodec:
    """The autoencoder at ``path`` with its latent scaling: the given factors, else its config's
    (``scaling_factor``, ``shift_factor``; diffusers' defaults 0.18215 and none)."""
    vae = load_autoencoder_kl(str(path), subfolder, allow_download)
    scale = scaling_factor if scaling_factor is not None else vae.config.scaling_factor
    shift = shift_factor if shift_factor is not None else (vae.config.get("shift_factor") or 0.0)
    return LatentCodec(vae, float(scale), float(shift), bf16)


def save_codec(codec: LatentCodec, folder: str | Path) -> Path:
    """``save_pretrained`` with the scaling the diffusion model was trained with in its config."""
    codec.vae.register_to_config(scaling_factor=codec.scaling_factor, shift_factor=codec.shift_factor or None)
    codec.vae.save_pretrained(str(folder), safe_serialization=True)
    return Path(folder)
