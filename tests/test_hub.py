"""`python -m app pull` / `push` against a simulated Hugging Face Hub (local folders; no network): installs only a
valid prompt for the loaded backbone, and says clearly why otherwise (offline, no network, missing repository,
wrong backbone, not logged in), installing nothing."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import errors

from app.backbone import Backbone
from app.cli import main
from app.engine import Engine
from app.prompt_files import save_prompt
from app.prompting import PromptConfig, TaskInfo
from app.training import new_prompt

ROOT = Path(__file__).resolve().parent.parent


def http_error(cls: type, status: int, url: str = "https://huggingface.co/api/models/x/y"):
    try:
        import httpx2 as httpx
    except ImportError:  # older huggingface_hub releases use httpx
        import httpx
    return cls(f"{status} Client Error", response=httpx.Response(status, request=httpx.Request("GET", url)))


@pytest.fixture
def hub(tmp_path, monkeypatch, backbone_dir):
    """{repo_id: folder} served by a stand-in for huggingface_hub.snapshot_download (honouring allow_patterns)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    repos: dict[str, Path] = {}
    bb = Backbone.load(backbone_dir)

    def make(repo_id: str, fingerprint: str | None = None, task: str = "tones") -> Path:
        folder = tmp_path / "hub" / repo_id
        info = TaskInfo(id=task, labels=["low", "high", "chirp"], title="Tone shape",
                        metrics={"test_accuracy": 0.9, "val_accuracy": 0.95})
        prompt = new_prompt(bb.lm, info, PromptConfig(prompt_length=3), [], seed=0)
        save_prompt(prompt, folder, "other-backbone" if fingerprint else bb.id, fingerprint or bb.fingerprint)
        (folder / "README.md").write_text("# card\n")
        (folder / "payload.bin").write_bytes(b"not to be downloaded")
        repos[repo_id] = folder
        return folder

    def snapshot_download(repo_id, *, revision=None, allow_patterns=None, **kw):
        if repo_id not in repos:
            raise http_error(errors.RepositoryNotFoundError, 404)
        out = tmp_path / "cache" / repo_id.replace("/", "--")
        out.mkdir(parents=True, exist_ok=True)
        for f in repos[repo_id].iterdir():
            if allow_patterns is None or any(fnmatch(f.name, p) for p in allow_patterns):
                shutil.copyfile(f, out / f.name)
        return str(out)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return make


def cli(*args) -> int:
    return main([str(a) for a in args])


def installed(prompts: Path) -> list[str]:
    return sorted(p.name for p in prompts.iterdir()) if prompts.exists() else []


def test_pull_installs_a_valid_prompt(hub, tmp_path, backbone_dir, capsys):
    hub("alice/tones")
    prompts = tmp_path / "prompts"
    assert cli("pull", "alice/tones", "--backbone", backbone_dir, "--prompts", prompts, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "tones" and out["labels"] == ["low", "high", "chirp"]
    assert installed(prompts) == ["tones"]
    assert sorted(p.name for p in (prompts / "tones").iterdir()) == ["prompt.safetensors", "task.json"]
    assert Engine.load(backbone_dir, prompts).tasks == ["tones"]
    assert cli("pull", "alice/tones", "--backbone", backbone_dir, "--prompts", prompts) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert cli("pull", "alice/tones", "--backbone", backbone_dir, "--prompts", prompts, "--force") == 0
    assert installed(prompts) == ["tones"]


def test_pull_refuses_a_prompt_for_another_backbone(hub, tmp_path, backbone_dir, capsys):
    hub("bob/tones-gslm", fingerprint="0123456789abcdef")
    prompts = tmp_path / "prompts"
    assert cli("pull", "bob/tones-gslm", "--backbone", backbone_dir, "--prompts", prompts) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bob/tones-gslm holds a prompt for backbone 'other-backbone' (fingerprint "
                          "0123456789abcdef)") and "nothing was installed" in err and "Traceback" not in err
    assert installed(prompts) == []


def test_pull_refuses_a_malformed_prompt(hub, tmp_path, backbone_dir, capsys):
    from safetensors.torch import load_file, save_file

    folder = hub("carol/broken")
    tensors = load_file(str(folder / "prompt.safetensors"))
    save_file({**tensors, "separator": tensors["separator"][:3].contiguous()}, str(folder / "prompt.safetensors"))
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    assert cli("pull", "carol/broken", "--backbone", backbone_dir, "--prompts", prompts) == 2
    err = capsys.readouterr().err
    assert "shape" in err and "Nothing was installed" in err
    assert installed(prompts) == []  # no task folder, no staging leftovers


def test_pull_missing_repo_and_network_errors(hub, tmp_path, backbone_dir, capsys, monkeypatch):
    prompts = tmp_path / "prompts"
    assert cli("pull", "nobody/nothing", "--backbone", backbone_dir, "--prompts", prompts) == 2
    assert "No repository nobody/nothing on the Hugging Face Hub" in capsys.readouterr().err
    assert cli("pull", "not-a-repo-id", "--prompts", prompts) == 2
    assert "OWNER/REPO" in capsys.readouterr().err

    def unreachable(repo_id, **kw):
        try:
            raise ConnectionError("[Errno -2] Name or service not known")
        except ConnectionError as cause:
            raise errors.LocalEntryNotFoundError("cannot find the requested files in the local cache") from cause

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    assert cli("pull", "alice/tones", "--backbone", backbone_dir, "--prompts", prompts) == 2
    err = capsys.readouterr().err
    assert "Cannot reach the Hugging Face Hub to download alice/tones (" in err and "Name or service" in err
    assert installed(prompts) == []


def test_pull_offline_says_so(tmp_path, backbone_dir):
    """The real huggingface_hub with HF_HUB_OFFLINE=1 and an empty cache: one clear line, exit status 2."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "GRADIO_ANALYTICS_ENABLED": "False",
           "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "app", "pull", "alice/tones", "--backbone", str(backbone_dir),
                        "--prompts", str(tmp_path / "prompts")], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [
        "error: Cannot download alice/tones: offline mode is on (HF_HUB_OFFLINE=1) and it is not in the local Hugging "
        "Face cache. Unset HF_HUB_OFFLINE (or set it to 0) when online, and try again."]
    assert not (tmp_path / "prompts").exists()


@pytest.fixture
def local_prompt(tmp_path, backbone_dir) -> Path:
    bb = Backbone.load(backbone_dir)
    info = TaskInfo(id="tones", labels=["low", "high", "chirp"], title="Tone shape", description="Hum or chirp.",
                    metrics={"test_accuracy": 0.9})
    save_prompt(new_prompt(bb.lm, info, PromptConfig(prompt_length=3), [], seed=0), tmp_path / "mine" / "tones",
                bb.id, bb.fingerprint)
    return tmp_path / "mine"


def test_push_uploads_prompt_and_card_then_pulls_back(hub, local_prompt, tmp_path, backbone_dir, capsys,
                                                      monkeypatch):
    uploads: dict[str, dict] = {}

    class FakeApi:
        def __init__(self, token=None):
            assert token == "hf_test"

        def create_repo(self, repo_id, private=None, exist_ok=False, repo_type=None, **kw):
            uploads.setdefault(repo_id, {"private": private})

        def upload_folder(self, repo_id, folder_path, **kw):
            dest = tmp_path / "hub" / repo_id
            shutil.copytree(folder_path, dest)
            uploads[repo_id]["files"] = sorted(p.name for p in dest.iterdir())

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test")
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert cli("push", "tones", "dana/tones", "--private", "--backbone", backbone_dir, "--prompts", local_prompt,
               "--json") == 0
    assert json.loads(capsys.readouterr().out)["url"] == "https://huggingface.co/dana/tones"
    assert uploads["dana/tones"] == {"private": True, "files": ["README.md", "prompt.safetensors", "task.json"]}
    card = (tmp_path / "hub" / "dana" / "tones" / "README.md").read_text()
    bb = Backbone.load(backbone_dir)
    for text in ("Tone shape", "`low`, `high`, `chirp`", "| test_accuracy | 0.9 |", bb.id, bb.fingerprint,
                 "python -m app pull dana/tones"):
        assert text in card

    # what was pushed can be pulled into another prompts folder
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, **kw: str(tmp_path / "hub" / repo_id))
    assert cli("pull", "dana/tones", "--backbone", backbone_dir, "--prompts", tmp_path / "elsewhere") == 0
    assert installed(tmp_path / "elsewhere") == ["tones"]


def test_push_errors_are_clear(local_prompt, backbone_dir, capsys, monkeypatch):
    args = ("push", "tones", "dana/tones", "--backbone", backbone_dir, "--prompts", local_prompt)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert cli(*args) == 2
    assert "Not logged in to the Hugging Face Hub: run `hf auth login`" in capsys.readouterr().err

    class Forbidden:
        def __init__(self, token=None):
            pass

        def create_repo(self, *a, **kw):
            raise http_error(errors.HfHubHTTPError, 403)

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_read_only")
    monkeypatch.setattr(huggingface_hub, "HfApi", Forbidden)
    assert cli(*args) == 2
    assert "refused to let you push to dana/tones (HTTP 403)" in capsys.readouterr().err

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli(*args) == 2
    assert "Cannot push to dana/tones: offline mode is on (HF_HUB_OFFLINE=1)" in capsys.readouterr().err
    assert cli("push", "missing", "dana/tones", "--backbone", backbone_dir, "--prompts", local_prompt) == 2
    assert "No prompt at" in capsys.readouterr().err
