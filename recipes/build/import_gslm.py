"""Import GSLM's HuBERT-100 backbone (HuBERT base layer 6 -> k-means 100 -> unit LM) into our backbone format.

    python -m recipes.build.import_gslm --hubert hubert_fairseq_base_ls960.pth --km km.bin --ulm hubert100_lm.tgz \
        --out backbones/gslm-hubert100 [--dtype float16]
    python -m recipes.build.import_gslm --bench-random      # CPU latency of a GSLM-sized backbone, random weights

Pickles (km.bin, fairseq checkpoints) are read with restricted unpicklers that call nothing; the backbone written
is safetensors + JSON only. Inputs, vocabulary mapping and parameter names: docs/RECIPES.md#import_gslm.
"""
from __future__ import annotations

import argparse
import enum
import hashlib
import json
import math
import pickle
import re
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from app.backbone import Backbone
from app.encoder.dense import NO_DROPOUT, Hubert
from app.lm import ARCH_FIELDS, UnitLMConfig

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # fairseq Dictionary: bos=0, pad=1, eos=2, unk=3
BOS, PAD, EOS, UNK = range(4)


class GSLMImportError(ValueError):
    """An input that cannot be imported, with a message saying why."""


# ----------------------------------------------------------------------------- pickled inputs, read restricted

class Stub:
    """An inert stand-in for a class a pickle names (fairseq's omegaconf configs, enums, scikit-learn's KMeans...):
    it records its arguments and state and runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)
        elif isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            self.__dict__.update(state[1] or {})
            if isinstance(state[0], dict):
                self.__dict__.update(state[0])
        else:
            self.state = state


def stub_class(qualified: str) -> type:
    module, _, name = qualified.rpartition(".")
    return type(name, (Stub,), {"__module__": f"stub.{module}"})


def load_checkpoint(path: Path) -> Any:
    """A pickled torch checkpoint through torch's restricted unpickler (``weights_only=True``: tensors, containers,
    numbers; it calls nothing else). ``argparse.Namespace`` is rebuilt as itself; every other class the file names
    (omegaconf, enums, typing, fairseq...) becomes an inert :class:`Stub`, so neither fairseq nor omegaconf is needed
    and nothing the file names is imported or run."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise GSLMImportError(f"{path} is not a torch checkpoint in the zip format ({exc}).") from None
    allowed = [(argparse.Namespace, n) if n == "argparse.Namespace" else (stub_class(n), n) for n in names]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch refuses some modules outright (os, posix, subprocess...)
        reason = next((ln for ln in str(exc).splitlines() if "GLOBAL" in ln), str(exc).splitlines()[0])
        raise GSLMImportError(f"{path} cannot be read safely: {reason.strip()}") from None


# What a joblib-pickled scikit-learn KMeans may call: numpy's array / dtype / scalar rebuilders and joblib's wrapper.
KMEANS_REAL = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "ndarray"),
               ("numpy", "dtype"), ("joblib.numpy_pickle", "NumpyArrayWrapper"), ("_codecs", "encode")}


def load_kmeans_centers(path: Path) -> Any:
    """``cluster_centers_`` of GSLM's km.bin (a joblib pickle), read by joblib's array reader restricted to
    KMEANS_REAL: anything else the file names (scikit-learn's KMeans...) is an inert Stub, nothing is imported."""
    from joblib import numpy_pickle

    class Restricted(numpy_pickle.NumpyUnpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in KMEANS_REAL:
                return super().find_class(module, name)
            return stub_class(f"{module}.{name}")

    with open(path, "rb") as fh:
        try:
            km = Restricted(str(path), fh, ensure_native_byte_order=True).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as exc:
            raise GSLMImportError(f"{path} is not a joblib-pickled k-means model ({exc}).") from None
    centers = getattr(km, "cluster_centers_", None)
    if centers is None:
        raise GSLMImportError(f"{path} holds a {type(km).__name__}, not a fitted k-means model.")
    return centers


def plain(obj: Any) -> Any:
    """Namespaces, omegaconf containers and value nodes (real or stubs) -> dicts, lists and scalars."""
    if isinstance(obj, argparse.Namespace):
        return {k: plain(v) for k, v in vars(obj).items()}
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, Stub):
        d = obj.__dict__
        if "_content" in d:  # omegaconf DictConfig / ListConfig
            return plain(d["_content"])
        if "_val" in d:  # omegaconf value node
            return plain(d["_val"])
        if len(obj.args) == 1:  # an enum member pickled as Enum(value)
            return plain(obj.args[0])
        return {k: plain(v) for k, v in d.items() if not k.startswith("_") and k not in ("args", "kwargs")}
    if isinstance(obj, enum.Enum):
        return obj.value
    return obj


def checkpoint_options(ckpt: dict) -> dict[str, Any]:
    """The model options of a fairseq checkpoint: ``cfg["model"]`` (hydra era) or ``args`` (argparse era)."""
    cfg = plain(ckpt.get("cfg")) if ckpt.get("cfg") is not None else None
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        return cfg["model"]
    if ckpt.get("args") is not None:
        return plain(ckpt["args"])
    return {}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- k-means

def load_centroids(path: Path) -> torch.Tensor:
    """Centroids ``(K, dim)`` from GSLM's km.bin (joblib pickle), a .npy or a .safetensors (``centroids``)."""
    if path.suffix == ".npy":
        c = np.load(path, allow_pickle=False)
    elif path.suffix == ".safetensors":
        c = load_file(str(path))["centroids"].numpy()
    else:
        c = load_kmeans_centers(path)
    c = torch.as_tensor(np.asarray(c, dtype=np.float32))
    if c.ndim != 2 or not torch.isfinite(c).all():
        raise GSLMImportError(f"{path}: centroids must be a finite (K, dim) matrix, got shape {tuple(c.shape)}.")
    return c


# ----------------------------------------------------------------------------- HuBERT

STRIDES = {10: 5, 3: 2, 2: 2}  # the wav2vec 2.0 / HuBERT feature extractor: kernel -> stride
LAYER0 = "encoder.transformer.layers.0."


def infer_hubert_arch(state: dict[str, torch.Tensor], hints: dict[str, Any]) -> dict[str, Any]:
    """torchaudio ``wav2vec2_model`` options from a torchaudio-format state dict (+ what shapes cannot tell)."""
    conv_key = re.compile(r"feature_extractor\.conv_layers\.(\d+)\.conv\.weight$")
    convs = sorted(int(m.group(1)) for k in state if (m := conv_key.match(k)))
    if not convs:
        raise GSLMImportError("not a HuBERT / wav2vec 2.0 state dict (no feature_extractor.conv_layers.*).")
    layers = []
    for i in convs:
        out_ch, _, kernel = state[f"feature_extractor.conv_layers.{i}.conv.weight"].shape
        if kernel not in STRIDES:
            raise GSLMImportError(f"unexpected feature-extractor kernel {kernel} in layer {i}.")
        layers.append([int(out_ch), int(kernel), STRIDES[kernel]])
    if math.prod(s for _, _, s in layers) != 320:
        raise GSLMImportError("the feature extractor's total stride is not 320 samples (50 Hz at 16 kHz).")
    embed = int(state["encoder.feature_projection.projection.weight"].shape[0])
    pos = next(v for k, v in state.items() if k.startswith("encoder.transformer.pos_conv_embed.conv.")
               and k.split(".")[-1] in ("weight", "weight_v", "original1"))
    n_layers = len({k.split(".")[3] for k in state if k.startswith("encoder.transformer.layers.")})
    mode = "layer_norm" if "feature_extractor.conv_layers.1.layer_norm.weight" in state else "group_norm"
    return {
        "extractor_mode": mode,
        "extractor_conv_layer_config": layers,
        "extractor_conv_bias": "feature_extractor.conv_layers.0.conv.bias" in state,
        "encoder_embed_dim": embed,
        "encoder_pos_conv_kernel": int(pos.shape[-1]),
        "encoder_pos_conv_groups": embed // int(pos.shape[1]),
        "encoder_num_layers": n_layers,
        "encoder_num_heads": int(hints.get("encoder_attention_heads") or embed // 64),
        "encoder_ff_interm_features": int(state[f"{LAYER0}feed_forward.intermediate_dense.weight"].shape[0]),
        # HuBERT base is post-LN with a group-norm extractor; large and x-large are pre-LN with layer norms
        "encoder_layer_norm_first": bool(hints.get("layer_norm_first", mode == "layer_norm")),
    }


def read_hubert(source: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """A torchaudio-format HuBERT state dict, hints for the options shapes cannot tell, and a description."""
    if source == "torchaudio":
        import torchaudio

        model = torchaudio.pipelines.HUBERT_BASE.get_model()  # downloads hubert_fairseq_base_ls960.pth
        return model.state_dict(), {"encoder_attention_heads": 12, "layer_norm_first": False}, "torchaudio HUBERT_BASE"
    path = Path(source)
    if path.is_dir():
        try:
            from transformers import HubertModel
        except ImportError:
            raise GSLMImportError("a Hugging Face HuBERT folder needs `pip install transformers`.") from None
        from torchaudio.models.wav2vec2.utils import import_huggingface_model

        return import_huggingface_model(HubertModel.from_pretrained(path)).state_dict(), {}, f"Hugging Face {path.name}"
    if not path.is_file():
        raise GSLMImportError(f"--hubert {source}: no such file or folder.")
    if path.suffix == ".safetensors":
        return load_file(str(path)), {}, path.name
    obj = load_checkpoint(path)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):  # a fairseq checkpoint
        from torchaudio.models.wav2vec2.utils.import_fairseq import _convert_state_dict

        opts = checkpoint_options(obj)
        task = plain(obj.get("cfg") or {}).get("task") or {}
        hints = {k: opts[k] for k in ("encoder_attention_heads", "layer_norm_first") if opts.get(k) is not None}
        hints["normalize"] = bool(task.get("normalize", opts.get("normalize", False)))
        return _convert_state_dict(obj["model"]), hints, f"fairseq {path.name}"
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise GSLMImportError(f"{path} is neither a state dict nor a fairseq checkpoint.")
    return obj, {}, path.name


def hubert_dense(source: str, layer: int) -> tuple[dict[str, Any], dict[str, torch.Tensor], str]:
    """The dense section of the config (kind "hubert") and its ``dense.*`` weights, cut after ``layer``."""
    import torchaudio

    state, hints, described = read_hubert(source)
    arch = infer_hubert_arch(state, hints)
    full = torchaudio.models.wav2vec2_model(**arch, **NO_DROPOUT)
    missing, _ = full.load_state_dict(state, strict=False)  # ignores HuBERT's label embeddings / projections
    if missing:
        raise GSLMImportError(f"HuBERT weights are missing {len(missing)} tensors, e.g. {missing[:3]}.")
    dense = Hubert(layer=layer, normalize=bool(hints.get("normalize", False)), arch=arch)
    conv = full.encoder.transformer.pos_conv_embed.conv
    if torch.nn.utils.parametrize.is_parametrized(conv, "weight"):
        torch.nn.utils.parametrize.remove_parametrizations(conv, "weight")  # fold the weight norm in
    elif hasattr(conv, "weight_g"):
        torch.nn.utils.remove_weight_norm(conv)
    want = dense.model.state_dict()
    dense.model.load_state_dict({k: v for k, v in full.state_dict().items() if k in want}, strict=True)
    config = {"kind": "hubert", "layer": layer, "normalize": dense.normalize, "arch": arch}
    return config, {f"dense.{k}": v for k, v in dense.state_dict().items()}, described


# ----------------------------------------------------------------------------- unit dictionary

def read_fairseq_dict(path: Path) -> list[str]:
    """All symbols of a fairseq ``Dictionary`` by index: the 4 specials, then ``dict.txt`` ("<symbol> <count>")."""
    symbols = list(SPECIALS)
    seen = set(symbols)
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.rstrip()
        if not line:
            continue
        try:
            word, count = line.rsplit(" ", 1)
            overwrite = count == "#fairseq:overwrite"
            if overwrite:
                word, count = word.rsplit(" ", 1)
            int(count)
        except ValueError:
            raise GSLMImportError(f"{path}:{n}: expected '<symbol> <count>', got {line!r}.") from None
        if word in seen and not overwrite:
            raise GSLMImportError(f"{path}:{n}: duplicate symbol {word!r}.")
        seen.add(word)
        symbols.append(word)
    return symbols


def unit_rows(symbols: list[str], n_units: int) -> list[int]:
    """fairseq row for each of our ids: units ``0..K-1`` (str(u), else <unk>), then the end token (</s>)."""
    index = {s: i for i, s in enumerate(symbols)}
    units = [s for s in symbols[len(SPECIALS):] if s.isdigit()]
    extra = [s for s in units if int(s) >= n_units]
    if extra:
        raise GSLMImportError(f"dict.txt has units {extra[:5]} but the k-means model has only {n_units} clusters: "
                           "the LM and the k-means model do not belong together.")
    missing = [u for u in range(n_units) if str(u) not in index]
    if missing:
        print(f"warning: dict.txt lacks units {missing}; they use <unk>'s row, as fairseq would.", file=sys.stderr)
    return [index.get(str(u), UNK) for u in range(n_units)] + [EOS]


# ----------------------------------------------------------------------------- transformer_lm

ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "gelu_fast": "gelu_tanh", "gelu_accurate": "gelu_tanh"}
LAYER_KEY = re.compile(r"decoder\.layers\.(\d+)\.(.+)$")
LAYER_MAP = {"self_attn.out_proj": "attn.proj", "self_attn_layer_norm": "ln1", "fc1": "mlp.0", "fc2": "mlp.2",
             "final_layer_norm": "ln2"}


def opt(opts: dict[str, Any], name: str, default: Any) -> Any:
    """A fairseq option, with fairseq's base_lm_architecture default when it is missing or None."""
    value = opts.get(name)
    return default if value is None else value


def refuse_unsupported(opts: dict[str, Any]) -> None:
    flags = ("adaptive_input", "character_embeddings", "layernorm_embedding", "cross_self_attention",
             "scale_attn", "scale_fc", "scale_heads", "scale_resids", "adaptive_softmax_cutoff")
    bad = [k for k in flags if opts.get(k)]
    d = opts.get("decoder_embed_dim")
    bad += [k for k in ("decoder_input_dim", "decoder_output_dim") if opts.get(k) not in (None, d)]
    if str(opt(opts, "activation_fn", "relu")) not in ACTIVATIONS:
        bad.append(f"activation_fn={opts['activation_fn']}")
    if bad:
        raise GSLMImportError(f"this fairseq LM uses options the importer does not support: {bad}.")


def convert_lm(state: dict[str, torch.Tensor], opts: dict[str, Any], rows: list[int]
               ) -> tuple[UnitLMConfig, dict[str, torch.Tensor]]:
    """A fairseq transformer_lm state dict + options -> our UnitLMConfig and state dict (see the module doc)."""
    refuse_unsupported(opts)
    emb = state["decoder.embed_tokens.weight"].float()
    if max(rows) >= emb.shape[0]:
        raise GSLMImportError(f"dict.txt has more symbols than the LM's {emb.shape[0]} embedding rows.")
    idx = torch.tensor(rows)
    d = int(emb.shape[1])
    n_layer = len({int(m.group(1)) for k in state if (m := LAYER_KEY.match(k))})
    heads = int(opts.get("decoder_attention_heads") or 0)
    if not heads or d % heads:
        raise GSLMImportError(f"decoder_attention_heads {heads!r} does not divide the width {d}.")
    block = int(opts.get("max_target_positions") or opts.get("tokens_per_sample") or 1024)
    learned = bool(opt(opts, "decoder_learned_pos", False))
    pos = "none" if opt(opts, "no_token_positional_embeddings", False) else "learned" if learned else "sinusoidal"
    out_w = state.get("decoder.output_projection.weight")
    shared = bool(opt(opts, "share_decoder_input_output_embed", False)) or out_w is None
    if out_w is not None and shared and not torch.equal(out_w.float(), emb):
        raise GSLMImportError("share_decoder_input_output_embed is set, but output_projection differs from "
                              "embed_tokens.")
    cfg = UnitLMConfig(
        vocab_size=len(rows), n_layer=n_layer, n_head=heads, n_embd=d, block_size=block, n_duration=0, n_pitch=0,
        pos=pos, pos_offset=PAD + 1 if pos == "sinusoidal" else 0,
        norm="pre" if opt(opts, "decoder_normalize_before", True) else "post",
        final_norm="decoder.layer_norm.weight" in state,
        embed_scale=1.0 if opt(opts, "no_scale_embedding", False) else math.sqrt(d),
        activation=ACTIVATIONS[str(opt(opts, "activation_fn", "relu"))],
        ffn_dim=int(state["decoder.layers.0.fc1.weight"].shape[0]), tied_output=shared,
    )
    if cfg.ffn_dim == 4 * d:
        cfg.ffn_dim = 0
    out: dict[str, torch.Tensor] = {"wte.weight": emb[idx]}
    if pos == "learned":
        table = state["decoder.embed_positions.weight"].float()
        out["wpe.weight"] = table[PAD + 1: PAD + 1 + block]
        if out["wpe.weight"].shape[0] < block:
            raise GSLMImportError(f"learned positions cover {out['wpe.weight'].shape[0]} < {block} positions.")
    if cfg.final_norm:
        out["ln_f.weight"], out["ln_f.bias"] = state["decoder.layer_norm.weight"], state["decoder.layer_norm.bias"]
    if not shared:
        out["lm_head.weight"] = out_w.float()[idx]
    used = {"decoder.embed_tokens.weight", "decoder.embed_positions.weight", "decoder.embed_positions._float_tensor",
            "decoder.layer_norm.weight", "decoder.layer_norm.bias", "decoder.output_projection.weight",
            "decoder.version"}
    for i in range(n_layer):
        src, dst = f"decoder.layers.{i}.", f"blocks.{i}."
        for part in ("weight", "bias"):
            out[f"{dst}attn.qkv.{part}"] = torch.cat([state[f"{src}self_attn.{p}_proj.{part}"] for p in "qkv"])
            used |= {f"{src}self_attn.{p}_proj.{part}" for p in "qkv"}
            for a, b in LAYER_MAP.items():
                out[f"{dst}{b}.{part}"] = state[f"{src}{a}.{part}"]
                used.add(f"{src}{a}.{part}")
    unknown = sorted(set(state) - used)
    if unknown:
        raise GSLMImportError(f"unsupported parameters in the LM checkpoint: {unknown[:6]}.")
    return cfg, {k: v.float().contiguous() for k, v in out.items()}


def extract_data(tar: tarfile.TarFile, dest: Path) -> None:
    """Extract an archive's folders and regular files under ``dest`` only: tarfile's "data" filter where this Python
    has it (3.11.4+, 3.12), else the same check by hand (links, devices and paths leaving ``dest`` are refused)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    root = Path(dest).resolve()
    for m in tar.getmembers():
        if not (m.isfile() or m.isdir()) or not (root / m.name).resolve().is_relative_to(root):
            raise GSLMImportError(f"the archive holds {m.name!r}, which is not a file or folder inside it.")
    tar.extractall(dest)


def find_ulm(ulm: Path, dict_path: Path | None, tmp: Path) -> tuple[Path, Path]:
    """The checkpoint and dict.txt from a .tgz, a folder or a .pt (dict.txt beside it unless given)."""
    if ulm.is_file() and (ulm.suffix in (".tgz", ".gz") or tarfile.is_tarfile(ulm)):
        with tarfile.open(ulm) as tar:
            extract_data(tar, tmp)
        ulm = tmp
    if ulm.is_dir():
        ckpts = sorted(ulm.rglob("*.pt"), key=lambda p: ("best" not in p.name, p.name))
        if not ckpts:
            raise GSLMImportError(f"no .pt checkpoint in {ulm}.")
        ckpt = ckpts[0]
    elif ulm.is_file():
        ckpt = ulm
    else:
        raise GSLMImportError(f"--ulm {ulm}: no such file or folder.")
    if dict_path is None:
        found = sorted(ckpt.parent.rglob("dict.txt")) or sorted(ulm.rglob("dict.txt") if ulm.is_dir() else [])
        if not found:
            raise GSLMImportError(f"no dict.txt beside {ckpt}; pass --dict.")
        dict_path = found[0]
    return ckpt, dict_path


def read_ulm(ckpt_path: Path, dict_path: Path, n_units: int) -> tuple[UnitLMConfig, dict[str, torch.Tensor], dict]:
    ckpt = load_checkpoint(ckpt_path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise GSLMImportError(f"{ckpt_path} is not a fairseq checkpoint (no 'model' state dict).")
    opts = checkpoint_options(ckpt)
    arch = opts.get("arch") or opts.get("_name")
    if arch and not str(arch).startswith("transformer_lm"):
        raise GSLMImportError(f"{ckpt_path} is a {arch!r} model, not a fairseq transformer_lm.")
    rows = unit_rows(read_fairseq_dict(dict_path), n_units)
    cfg, state = convert_lm(ckpt["model"], opts, rows)
    return cfg, state, {"arch": arch, "rows": rows}


# ----------------------------------------------------------------------------- the backbone

def import_gslm(hubert: str, km: Path, ulm: Path, out: Path, dict_path: Path | None = None, layer: int = 6,
                backbone_id: str = "gslm-hubert-base-L6-km100-ulm", dtype: torch.dtype = torch.float32) -> Backbone:
    """Read the GSLM files, check they fit together, and write a backbone folder."""
    centroids = load_centroids(km)
    dense_cfg, dense_state, hubert_desc = hubert_dense(hubert, layer)
    dim = dense_state["dense.model.encoder.feature_projection.projection.weight"].shape[0]
    if centroids.shape[1] != dim:
        raise GSLMImportError(f"the k-means centroids have {centroids.shape[1]} dimensions, HuBERT gives {dim}.")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, dict_file = find_ulm(ulm, dict_path, Path(tmp))
        lm_cfg, lm_state, lm_info = read_ulm(ckpt, dict_file, centroids.shape[0])
        sources = {"hubert": hubert_desc, **{k: f"{f.name} sha256:{sha256(f)[:16]}"
                                              for k, f in (("km", km), ("ulm", ckpt), ("dict", dict_file))}}
    config = {
        "id": backbone_id,
        "sample_rate": 16_000,
        "dense": dense_cfg,
        "quantizer": {"n_units": int(centroids.shape[0]), "feature_norm": "none"},
        "lm": lm_cfg.to_dict(),
        # only what the weights determine: the same files give the same fingerprint, whatever they are packed in
        "import": {"from": "GSLM (fairseq transformer_lm + HuBERT k-means)", "fairseq_rows": lm_info["rows"]},
    }
    bb = Backbone.from_tensors(config, {**dense_state, "centroids": centroids}, lm_state)
    bb.save(out, dense_dtype=dtype, lm_dtype=dtype)
    (Path(out) / "MODEL_CARD.md").write_text(model_card(bb, lm_info, sources, dtype), encoding="utf-8")
    return bb


def model_card(bb: Backbone, lm_info: dict, sources: dict[str, str], dtype: torch.dtype) -> str:
    d = bb.describe()
    cfg = bb.config
    options = {k: v for k, v in cfg["lm"].items() if k in ARCH_FIELDS or k == "block_size"}
    src = "\n".join(f"- {k}: `{v}`" for k, v in sources.items())
    return f"""# {bb.id}

GSLM's HuBERT-100 speech LM (Lakhotia et al., 2021, *On Generative Spoken Language Modeling from Raw Audio*),
converted by `recipes/build/import_gslm.py` into this project's backbone format. Weights are the published ones,
unchanged except for the conversions listed below; stored as {str(dtype).replace('torch.', '')}.

- Dense model: HuBERT, output of transformer layer {cfg['dense']['layer']} (later layers dropped), 50 Hz.
- Quantizer: k-means, {d['n_units']} units, nearest centroid (squared Euclidean), repeats collapsed.
- Unit LM: fairseq `{lm_info['arch'] or 'transformer_lm'}`, {d['layers']} layers x {d['width']} wide,
  {d['heads']} heads, {d['lm_params']:,} parameters, no prosody streams. Options: `{json.dumps(options)}`.
- Vocabulary: our unit u uses fairseq's row for the symbol "u", our end token (id {d['n_units']}) the `</s>` row
  (`config.json` -> `import.fairseq_rows`). Logits over units + end equal fairseq's; the softmax leaves out
  `<s>`, `<pad>`, `<unk>` and padding symbols.
- The convolutional positional embedding's weight norm is folded into a plain weight.
- Fingerprint: `{bb.fingerprint}`; encoder + LM: {d['parameter_count']:,} parameters.

Sources:
{src}

Licence and terms: those of the upstream files (fairseq / GSLM, torchaudio); this folder adds none.
"""


# ----------------------------------------------------------------------------- latency of a GSLM-sized backbone

def bench_random(repeats: int = 5, seconds: float = 1.0) -> dict[str, float]:
    """CPU latency (1 torch thread) of a randomly initialised backbone of GSLM's sizes: HuBERT base cut after
    layer 6, 100 centroids, and a fairseq transformer_lm_big-shaped unit LM (12 x 1024, FFN 4096, 16 heads,
    sinusoidal positions, ReLU, pre-LN, shared embeddings), with a 5-vector deep prompt: median encode and LM
    times for one clip, and one prompt-tuning step (forward + backward) for a batch of 8 such clips."""
    from app.prompting import PromptConfig, TaskInfo, TaskPrompt, prompted_forward

    torch.set_num_threads(1)
    torch.manual_seed(0)
    lm_cfg = UnitLMConfig(vocab_size=101, n_layer=12, n_head=16, n_embd=1024, block_size=3072, n_duration=0,
                          n_pitch=0, pos="sinusoidal", pos_offset=2, embed_scale=32.0, activation="relu")
    config = {"id": "gslm-sized-random", "sample_rate": 16_000, "dense": {"kind": "hubert", "layer": 6},
              "quantizer": {"n_units": 100, "feature_norm": "none"}, "lm": lm_cfg.to_dict()}
    t0 = time.perf_counter()
    bb = Backbone.build(config, torch.randn(100, 768))
    build_s = time.perf_counter() - t0
    wav = 0.1 * torch.randn(int(16_000 * seconds))
    prompt = TaskPrompt(bb.lm.config, TaskInfo(id="bench", labels=["a", "b"]), PromptConfig())
    prompt.init_from_lm(bb.lm)
    prompt.eval()

    def best(fn) -> float:
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return 1e3 * sorted(times)[len(times) // 2]

    with torch.no_grad():
        units = bb.encoder(wav)
        encode_ms = best(lambda: bb.encoder(wav))
        lm_ms = best(lambda: prompted_forward(bb.lm, [units], [prompt]))
    prompt.requires_grad_(True)

    def train_step() -> None:  # prompt tuning: forward + backward through the frozen LM, batch of 8 clips
        out = prompted_forward(bb.lm, [units] * 8, [prompt] * 8)
        torch.stack(out.class_logits).logsumexp(-1).sum().backward()

    step_ms = best(train_step)
    return {"clip_seconds": seconds, "threads": 1, "units": len(units), "encode_ms_median": round(encode_ms, 1),
            "lm_ms_median": round(lm_ms, 1), "total_ms": round(encode_ms + lm_ms, 1),
            "train_step_ms_batch8": round(step_ms, 1),
            "encoder_params": sum(p.numel() for p in bb.encoder.dense.parameters()),
            "lm_params": bb.lm.num_params(), "build_seconds": round(build_s, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hubert", help="HuBERT: torchaudio .pth, fairseq .pt, .safetensors, HF folder, or 'torchaudio'")
    p.add_argument("--km", type=Path, help="k-means model: GSLM km.bin, or centroids .npy / .safetensors")
    p.add_argument("--ulm", type=Path, help="unit LM: hubert100_lm.tgz, its folder, or the fairseq checkpoint .pt")
    p.add_argument("--dict", type=Path, help="fairseq dict.txt (default: beside the checkpoint)")
    p.add_argument("--out", type=Path, help="backbone folder to write")
    p.add_argument("--layer", type=int, default=6, help="HuBERT layer whose output is quantized (GSLM: 6)")
    p.add_argument("--id", default="gslm-hubert-base-L6-km100-ulm", help="backbone id")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="storage precision")
    p.add_argument("--bench-random", action="store_true", help="time a random GSLM-sized backbone and exit")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.bench_random:
        print(json.dumps(bench_random()))
        return 0
    missing = [f"--{k}" for k in ("hubert", "km", "ulm", "out") if getattr(args, k) is None]
    if missing:
        p.error(f"missing {' '.join(missing)}")
    try:
        bb = import_gslm(args.hubert, args.km, args.ulm, args.out, args.dict, args.layer, args.id,
                         getattr(torch, args.dtype))
    except (ValueError, OSError, KeyError) as exc:  # GSLMImportError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    d = bb.describe()
    print(f"wrote {args.out}: {bb.id}, fingerprint {bb.fingerprint}, {d['n_units']} units, LM {d['layers']}x"
          f"{d['width']} ({d['lm_params']:,} parameters), {d['bytes_on_disk'] / 1e6:.1f} MB")
    print(f"use it: SPEECHPROMPT_BACKBONE={args.out} python app.py   (or --backbone {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
