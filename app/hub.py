"""Task prompts on the Hugging Face Hub, shared the way NLP adapters are: ``pull`` and ``push``.

A prompt repository holds ``prompt.safetensors`` + ``task.json`` at its top (and a README model card). ``pull``
downloads only those two files, validates them with :func:`app.prompt_files.load_prompt` against the loaded backbone's
fingerprint in a staging folder, and only then moves them into ``prompts/<task>/``: a prompt for another backbone,
a malformed one or a failed download installs nothing. ``push`` validates a prompt folder the same way and uploads
it with a generated model card. Failures raise :class:`HubError` with a message for people (offline, no network,
no such repository, not logged in...).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .backbone import Backbone
from .prompt_files import load_prompt, read_task_json
from .prompting import PromptError, TaskPrompt

PROMPT_FILES = ("prompt.safetensors", "task.json")
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
LOGIN_HINT = "run `hf auth login` (or set HF_TOKEN)"


class HubError(ValueError):
    """A Hub operation that could not be done, with a message saying why and what to do."""


def offline() -> bool:
    """Offline mode as huggingface_hub understands it (HF_HUB_OFFLINE=1), read at call time."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().upper() in {"1", "ON", "YES", "TRUE"}
    return bool(constants.HF_HUB_OFFLINE)


def check_repo_id(repo_id: str) -> str:
    if not isinstance(repo_id, str) or not REPO_ID.match(repo_id) or ".." in repo_id:
        raise HubError(f"{repo_id!r} is not a Hub repository id: use OWNER/REPO, e.g. alice/speechprompt-digits.")
    return repo_id


def _is_network_error(exc: BaseException) -> bool:
    root = type(exc).__module__.split(".")[0]
    return isinstance(exc, (ConnectionError, TimeoutError)) or root in ("httpx", "httpx2", "requests", "urllib3")


def _explain(exc: BaseException, repo_id: str, action: str, revision: str | None = None) -> HubError:
    """A HubError for what huggingface_hub (or the network under it) raised."""
    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError):
        return HubError(f"{repo_id} is gated: accept its terms on https://huggingface.co/{repo_id} and {LOGIN_HINT}.")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return HubError(f"No repository {repo_id} on the Hugging Face Hub (if it is private, {LOGIN_HINT} with an "
                        "account that can read it).")
    if isinstance(exc, errors.RevisionNotFoundError):
        return HubError(f"{repo_id} has no revision {revision!r} (a branch, tag or commit).")
    if isinstance(exc, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)) and offline():
        return HubError(f"Cannot {action} {repo_id}: offline mode is on (HF_HUB_OFFLINE=1)"
                        + (" and it is not in the local Hugging Face cache" if action == "download" else "")
                        + ". Unset HF_HUB_OFFLINE (or set it to 0) when online, and try again.")
    if isinstance(exc, errors.LocalEntryNotFoundError) or _is_network_error(exc):
        cause = exc.__cause__ or exc
        reason = str(cause).splitlines()[0][:200] if str(cause) else type(cause).__name__
        return HubError(f"Cannot reach the Hugging Face Hub to {action} {repo_id} ({reason}). Check the internet "
                        "connection (or HF_ENDPOINT / proxy settings) and try again.")
    if isinstance(exc, errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            return HubError(f"The Hub refused to let you {action} {repo_id} (HTTP {status}): {LOGIN_HINT} with a token "
                            "that has write access to that owner.")
        return HubError(f"The Hub refused to {action} {repo_id}: {str(exc).splitlines()[0][:200]}")
    raise exc


# ----------------------------------------------------------------------------- pull

def fetch(repo_id: str, revision: str | None = None) -> Path:
    """Download (or find in the local cache) a prompt repository's two files; returns the snapshot folder."""
    import huggingface_hub

    check_repo_id(repo_id)
    try:
        folder = huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=list(PROMPT_FILES))
    except Exception as exc:  # noqa: BLE001 -- every failure gets a message; unknown ones are re-raised
        raise _explain(exc, repo_id, "download", revision) from None
    folder = Path(folder)
    missing = [f for f in PROMPT_FILES if not (folder / f).is_file()]
    if missing:
        raise HubError(f"{repo_id} holds no SpeechPrompt prompt: {' and '.join(missing)} missing at its top "
                       "(a prompt repository has prompt.safetensors + task.json).")
    return folder


def check_backbone(meta: dict[str, Any], repo_id: str, backbone: Backbone) -> None:
    """Refuse a prompt trained on another backbone, saying which one it needs."""
    want = meta.get("backbone")
    if not isinstance(want, dict) or not isinstance(want.get("fingerprint"), str):
        return  # malformed: the loader's checks (run next, in the staging folder) say what is wrong
    if want["fingerprint"] != backbone.fingerprint:
        raise HubError(
            f"{repo_id} holds a prompt for backbone {want.get('id')!r} (fingerprint {want.get('fingerprint')}), but "
            f"the loaded backbone is {backbone.id!r} (fingerprint {backbone.fingerprint}). Load that backbone with "
            "--backbone DIR or SPEECHPROMPT_BACKBONE=DIR, then pull again; nothing was installed.")


def install(snapshot: Path, repo_id: str, backbone: Backbone, prompts_dir: str | Path,
            force: bool = False) -> TaskPrompt:
    """Validate a downloaded prompt against ``backbone`` in a staging folder, then move it to prompts/<task>/."""
    meta = read_task_json(snapshot)
    check_backbone(meta, repo_id, backbone)
    prompts_dir = Path(prompts_dir)
    prompts_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".pull-", dir=prompts_dir))
    try:
        for name in PROMPT_FILES:
            shutil.copyfile(snapshot / name, stage / name)  # copies the content, never a link into the cache
        try:
            prompt = load_prompt(stage, backbone.lm.config, backbone.fingerprint)
        except PromptError as exc:
            raise HubError(f"{repo_id}: {exc} Nothing was installed.") from None
        target = prompts_dir / prompt.task
        if target.exists() and not force:
            raise HubError(f"{target} already exists; pass --force to replace it with {repo_id}.")
        old = None
        if target.exists():
            old = target.rename(prompts_dir / f".replaced-{prompt.task}-{os.getpid()}")
        stage.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        prompt.folder = target
        return prompt
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def pull(repo_id: str, backbone_dir: str | Path | None, prompts_dir: str | Path, revision: str | None = None,
         force: bool = False) -> TaskPrompt:
    """Download, validate and install a prompt (the backbone is loaded only once the download succeeded)."""
    snapshot = fetch(repo_id, revision)
    return install(snapshot, repo_id, Backbone.load(backbone_dir), prompts_dir, force)


# ----------------------------------------------------------------------------- push

def model_card(prompt: TaskPrompt, meta: dict[str, Any], repo_id: str) -> str:
    """README.md for a prompt repository: the task, labels, metrics and the backbone it needs."""
    info, bb = prompt.info, meta.get("backbone") or {}
    metrics = "\n".join(f"| {k} | {v} |" for k, v in sorted(info.metrics.items())) or "| (none recorded) | |"
    labels = ", ".join(f"`{x}`" for x in info.labels)
    return f"""---
tags:
- speechprompt
- prompt-tuning
- audio-classification
---

# {info.title}: a SpeechPrompt v2 prompt

{info.description or 'A task prompt for a frozen speech unit language model (SpeechPrompt v2).'}

- Task id: `{info.id}`; {len(info.labels)} labels: {labels}
- Backbone: `{bb.get('id')}`, fingerprint `{bb.get('fingerprint')}`. The prompt only loads on that backbone.
- Trainable parameters: {prompt.num_trainable():,} (prompt length {prompt.config.prompt_length}, deep prompt:
  {'yes' if prompt.config.deep else 'no'}, verbalizer: {prompt.config.verbalizer})
- Training data: {info.training_data or 'not recorded'}
- Files: `prompt.safetensors` (tensors) + `task.json` (labels, verbalizer, backbone, metrics); no pickle.

## Metrics

| metric | value |
|---|---|
{metrics}

## Use

```bash
python -m app pull {repo_id} --backbone BACKBONE_DIR      # validates the fingerprint, installs prompts/{info.id}/
python -m app predict --task {info.id} clip.wav --backbone BACKBONE_DIR
```
"""


def push(folder: str | Path, repo_id: str, backbone: Backbone, private: bool = False) -> str:
    """Upload a prompt folder (validated against ``backbone``) + a model card; returns the repository URL."""
    import huggingface_hub

    check_repo_id(repo_id)
    folder = Path(folder)
    if not (folder / "task.json").is_file():
        raise HubError(f"No prompt at {folder} (task.json missing); see `python -m app tasks`.")
    prompt = load_prompt(folder, backbone.lm.config, backbone.fingerprint)
    if offline():
        raise HubError(f"Cannot push to {repo_id}: offline mode is on (HF_HUB_OFFLINE=1). Unset it and try again.")
    token = huggingface_hub.get_token()
    if not token:
        raise HubError(f"Not logged in to the Hugging Face Hub: {LOGIN_HINT} with a write token, then push again.")
    with tempfile.TemporaryDirectory() as tmp:
        for name in PROMPT_FILES:
            shutil.copyfile(folder / name, Path(tmp) / name)
        (Path(tmp) / "README.md").write_text(model_card(prompt, read_task_json(folder), repo_id), encoding="utf-8")
        try:
            api = huggingface_hub.HfApi(token=token)
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            api.upload_folder(repo_id=repo_id, folder_path=tmp, repo_type="model",
                              commit_message=f"SpeechPrompt v2 prompt {prompt.task} for backbone {backbone.id}")
        except Exception as exc:  # noqa: BLE001 -- every failure gets a message; unknown ones are re-raised
            raise _explain(exc, repo_id, "push to") from None
    return f"https://huggingface.co/{repo_id}"
