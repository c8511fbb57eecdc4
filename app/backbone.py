"""A backbone bundle: the frozen speech encoder (dense model + k-means) and the unit LM, from one folder.

Like a torchaudio pipeline bundle, one object knows its sample rate, how to build its parts and load their weights,
and a fingerprint of those weights that prompts record so they only load on the backbone they were trained for.

Folder layout: ``config.json`` (id, sample rate, dense model, quantizer, voice streams, LM config),
``encoder.safetensors`` (``dense.*`` weights, ``centroids`` and, with voice streams, ``voice.*``: the voice
quantizer's mean, scale, projection and bucket edges; ``voice_dense.*`` when config ``voice.dense`` names a second
encoder for the voice streams), ``lm.safetensors`` (unit LM weights), ``MODEL_CARD.md``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .encoder.dense import build_dense
from .encoder.units import VOICE_TENSORS, SpeechEncoder, VoiceQuantizer
from .lm import UnitLM, UnitLMConfig
from .settings import default_backbone_dir



class BackboneError(ValueError):
    """A backbone folder that cannot be loaded, with a message saying why."""


def weights_fingerprint(config: dict[str, Any], modules: dict[str, torch.nn.Module]) -> str:
    """First 16 hex digits of a SHA-256 over the config and every tensor of ``modules`` (float32 bytes)."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for prefix, module in modules.items():
        for name, t in sorted(module.state_dict().items()):
            h.update(f"{prefix}.{name}:{tuple(t.shape)}".encode())
            h.update(t.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def encoder_fingerprint(config: dict[str, Any], encoder: SpeechEncoder) -> str:
    part = {"dense": config["dense"], "quantizer": config.get("quantizer", {})}
    if "voice" in config:
        part["voice"] = config["voice"]
    return weights_fingerprint(part, {"encoder": encoder})



@dataclass
class Backbone:
    """Frozen encoder + unit LM; everything else asks this object for sample rate, vocabulary and fingerprint."""

    id: str
    encoder: SpeechEncoder
    lm: UnitLM
    config: dict[str, Any]
    folder: Path | None = None
    sample_rate: int = 16_000

    def __post_init__(self) -> None:
        for module in (self.encoder, self.lm):
            module.eval()
            module.requires_grad_(False)
        self.fingerprint = self._fingerprint()

    @property
    def n_units(self) -> int:
        return self.encoder.n_units

    def _fingerprint(self) -> str:
        return weights_fingerprint(self.config, {"encoder": self.encoder, "lm": self.lm})

    @property
    def encoder_fingerprint(self) -> str:
        """Fingerprint of the unit encoder alone: units cached under it stay valid when only the LM changes."""
        return encoder_fingerprint(self.config, self.encoder)

    @classmethod
    def build(cls, config: dict[str, Any], centroids: torch.Tensor, folder: Path | None = None,
              voice: VoiceQuantizer | None = None) -> "Backbone":
        """Assemble a backbone from its config (weights random until loaded; ``voice``: the fitted voice quantizer
        that ``config["voice"]`` describes)."""
        dense = build_dense(config["dense"])
        voice_cfg = {k: v for k, v in config.get("voice", {}).items() if k != "dense"}
        if ("voice" in config) != (voice is not None) or (voice is not None and voice.config() != voice_cfg):
            raise BackboneError("The voice quantizer does not match the backbone's config 'voice'.")
        try:
            voice_dense = build_dense(config["voice"]["dense"]) if "dense" in config.get("voice", {}) else None
            encoder = SpeechEncoder(dense, centroids, voice=voice, voice_dense=voice_dense,
                                    feature_norm=config.get("quantizer", {}).get("feature_norm", "none"))
        except ValueError as exc:
            raise BackboneError(str(exc)) from None
        lm = UnitLM(UnitLMConfig(**config["lm"]))
        if lm.config.vocab_size != encoder.n_units + 1:
            raise BackboneError(f"LM vocabulary {lm.config.vocab_size} != {encoder.n_units} units + end token.")
        if lm.config.n_voice != encoder.n_voice or (voice is not None and lm.config.voice_buckets != voice.n_buckets):
            raise BackboneError(f"LM voice streams {lm.config.n_voice} x {lm.config.voice_buckets} do not match the "
                                f"encoder's {encoder.n_voice}.")
        return cls(id=config["id"], encoder=encoder, lm=lm, config=config, folder=folder,
                   sample_rate=int(config.get("sample_rate", 16_000)))

    @classmethod
    def load(cls, folder: str | Path | None = None) -> "Backbone":
        """Load a backbone folder (default: $SPEECHPROMPT_BACKBONE or assets/backbone)."""
        folder = Path(folder) if folder is not None else default_backbone_dir()
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise BackboneError(f"No backbone at {folder} (config.json missing). "
                                "Rebuild it with python -m recipes.build.backbone.")
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
            enc = load_file(str(folder / "encoder.safetensors"))
            lm_state = load_file(str(folder / "lm.safetensors"))
        except (OSError, json.JSONDecodeError, SafetensorError) as exc:
            raise BackboneError(f"Could not load the backbone at {folder}: {exc}") from None
        return cls._assemble(config, enc, lm_state, folder)

    @classmethod
    def from_tensors(cls, config: dict[str, Any], encoder_state: dict[str, torch.Tensor],
                     lm_state: dict[str, torch.Tensor]) -> "Backbone":
        """A backbone from its config and weights in memory (``dense.*`` + ``centroids``, and the LM's), checked
        as :meth:`load` checks a folder; for importers."""
        return cls._assemble(config, dict(encoder_state), lm_state, None)

    @classmethod
    def _assemble(cls, config: dict, enc: dict[str, torch.Tensor], lm_state: dict[str, torch.Tensor],
                  folder: Path | None) -> "Backbone":
        if "centroids" not in enc:
            raise BackboneError("encoder.safetensors has no 'centroids' tensor.")
        centroids = enc.pop("centroids").float()
        dense_state = {k[len("dense."):]: v.float() for k, v in enc.items() if k.startswith("dense.")}
        voice_dense_state = {k[len("voice_dense."):]: v.float() for k, v in enc.items()
                             if k.startswith("voice_dense.")}
        voice = None
        if isinstance(config.get("voice"), dict):
            missing = [n for n in VOICE_TENSORS if f"voice.{n}" not in enc]
            if missing:
                raise BackboneError(f"encoder.safetensors lacks the voice quantizer's {missing}.")
            try:
                voice = VoiceQuantizer.from_state({n: enc[f"voice.{n}"] for n in VOICE_TENSORS}, config["voice"])
            except (KeyError, TypeError, ValueError) as exc:
                raise BackboneError(f"Bad voice quantizer: {exc}") from None
        bb = cls.build(config, centroids, folder, voice)
        try:
            bb.encoder.dense.load_state_dict(dense_state, strict=True)
            if bb.encoder.voice_dense is not None:
                bb.encoder.voice_dense.load_state_dict(voice_dense_state, strict=True)
            elif voice_dense_state:
                raise RuntimeError("voice_dense.* weights, but config 'voice' names no voice encoder")
            bb.lm.load_state_dict({k: v.float() for k, v in lm_state.items()}, strict=True)
        except RuntimeError as exc:
            raise BackboneError(f"Backbone weights do not match its config: {str(exc)[:300]}") from None
        bb.fingerprint = bb._fingerprint()
        return bb

    def save(self, folder: str | Path, dense_dtype: torch.dtype = torch.float32,
             lm_dtype: torch.dtype = torch.float32) -> Path:
        """Write config.json + encoder.safetensors + lm.safetensors (the dense model and the LM may be stored as
        fp16; loading makes them float32 again)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():  # keep in memory exactly what is stored, so the fingerprint survives a reload
            for module, dtype in ((self.encoder.dense, dense_dtype), (self.encoder.voice_dense, dense_dtype),
                                  (self.lm, lm_dtype)):
                if module is None:
                    continue
                for t in module.state_dict().values():
                    if t.is_floating_point() and dtype != torch.float32:
                        t.copy_(t.to(dtype).float())
        self.fingerprint = self._fingerprint()
        enc = {f"dense.{k}": v.to(dense_dtype).contiguous() for k, v in self.encoder.dense.state_dict().items()
               if v.is_floating_point()}
        enc["centroids"] = self.encoder.centroids.contiguous()
        if self.encoder.voice is not None:
            enc.update({f"voice.{n}": t for n, t in self.encoder.voice.state().items()})
        if self.encoder.voice_dense is not None:
            enc.update({f"voice_dense.{k}": v.to(dense_dtype).contiguous()
                        for k, v in self.encoder.voice_dense.state_dict().items() if v.is_floating_point()})
        save_file(enc, str(folder / "encoder.safetensors"))
        save_file({k: v.to(lm_dtype).contiguous() for k, v in self.lm.state_dict().items()},
                  str(folder / "lm.safetensors"))
        (folder / "config.json").write_text(json.dumps(self.config, indent=2) + "\n", encoding="utf-8")
        self.folder = folder
        return folder

    def bytes_on_disk(self) -> int:
        if self.folder is None:
            return 0
        return sum((self.folder / f).stat().st_size for f in ("config.json", "encoder.safetensors", "lm.safetensors")
                   if (self.folder / f).exists())

    def lm_bytes(self) -> int:
        """Size of one copy of the LM's weights: the real file if the backbone has a folder, else float32 size."""
        if self.folder is not None and (Path(self.folder) / "lm.safetensors").is_file():
            return (Path(self.folder) / "lm.safetensors").stat().st_size
        return self.lm.num_params() * 4

    def describe(self) -> dict[str, Any]:
        """A summary for `python -m app info` and the UI."""
        lm_cfg = self.lm.config
        enc_params = sum(p.numel() for p in self.encoder.parameters()) + self.encoder.centroids.numel()
        return {
            "id": self.id,
            "fingerprint": self.fingerprint,
            "sample_rate": self.sample_rate,
            "dense_model": self.config["dense"]["kind"],
            "n_units": self.n_units,
            "vocab_size": lm_cfg.vocab_size,
            "layers": lm_cfg.n_layer,
            "heads": lm_cfg.n_head,
            "width": lm_cfg.n_embd,
            "block_size": lm_cfg.block_size,
            "prosody_streams": {"duration_buckets": lm_cfg.n_duration, "pitch_buckets": lm_cfg.n_pitch},
            "voice_streams": {"streams": lm_cfg.n_voice, "buckets": lm_cfg.voice_buckets} if lm_cfg.n_voice else None,
            "lm_params": self.lm.num_params(),
            "encoder_params": enc_params,
            "parameter_count": self.lm.num_params() + enc_params,
            "bytes_on_disk": self.bytes_on_disk(),
            "folder": str(self.folder) if self.folder else None,
        }
