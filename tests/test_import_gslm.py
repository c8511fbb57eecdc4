"""recipes/build/import_gslm.py and the LM architecture options it needs, offline, with tiny checkpoints in GSLM's formats:
a fairseq transformer_lm state dict (fairseq's parameter names) + args, a dict.txt, a torchaudio HuBERT state dict
and a joblib-pickled scikit-learn KMeans. The imported LM is checked against an independent fairseq decoder
forward written here from the fairseq state dict with plain torch ops."""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tarfile
import types
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchaudio
from sklearn.cluster import KMeans

from app.backbone import Backbone  # noqa: E402
from app.lm import UnitLM, UnitLMConfig  # noqa: E402
from app.prompt_files import load_prompt, save_prompt  # noqa: E402
from app.prompting import PromptConfig, TaskInfo  # noqa: E402
from app.settings import DEFAULT_BACKBONE_DIR  # noqa: E402
from app.training import TrainConfig, new_prompt, train_prompt  # noqa: E402
from recipes.build.import_gslm import (GSLMImportError, convert_lm, hubert_dense, import_gslm,  # noqa: E402
                                 load_centroids, main, read_fairseq_dict, unit_rows)

from .conftest import KINDS, tiny_config, tone_clip  # noqa: E402

N_UNITS = 12
PAD = 1


# ----------------------------------------------------------------------------- tiny checkpoints in GSLM formats

def write_dict(path: Path, order: list[int], padding: int = 2) -> list[str]:
    """A fairseq dict.txt: units by (made-up) frequency, not in id order, plus fairseq's padding symbols."""
    lines = [f"{u} {1000 - 7 * i}" for i, u in enumerate(order)] + [f"madeupword{i:04d} 0" for i in range(padding)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ["<s>", "<pad>", "</s>", "<unk>"] + [x.split(" ")[0] for x in lines]


def fairseq_lm(n_symbols: int, *, d: int = 32, layers: int = 2, heads: int = 4, ffn: int = 48, pre_norm: bool = True,
               learned: bool = False, shared: bool = True, activation: str = "relu", scale: bool = True,
               max_pos: int = 64, seed: int = 0) -> tuple[dict[str, torch.Tensor], argparse.Namespace]:
    """A random fairseq ``transformer_lm`` state dict with fairseq's parameter names, and its args."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, std: float = 0.3) -> torch.Tensor:
        return std * torch.randn(*shape, generator=g)

    s: dict[str, torch.Tensor] = {"decoder.version": torch.tensor([3.0])}
    s["decoder.embed_tokens.weight"] = rnd(n_symbols, d)
    if learned:
        s["decoder.embed_positions.weight"] = rnd(max_pos + PAD + 1, d)
    else:
        s["decoder.embed_positions._float_tensor"] = torch.zeros(1)
    for i in range(layers):
        p = f"decoder.layers.{i}."
        for name in ("k_proj", "v_proj", "q_proj", "out_proj"):
            s[f"{p}self_attn.{name}.weight"], s[f"{p}self_attn.{name}.bias"] = rnd(d, d), rnd(d, std=0.1)
        for ln in ("self_attn_layer_norm", "final_layer_norm"):
            s[f"{p}{ln}.weight"], s[f"{p}{ln}.bias"] = 1 + rnd(d, std=0.1), rnd(d, std=0.1)
        s[f"{p}fc1.weight"], s[f"{p}fc1.bias"] = rnd(ffn, d), rnd(ffn, std=0.1)
        s[f"{p}fc2.weight"], s[f"{p}fc2.bias"] = rnd(d, ffn), rnd(d, std=0.1)
    if pre_norm:  # fairseq: a final layer norm only with decoder_normalize_before
        s["decoder.layer_norm.weight"], s["decoder.layer_norm.bias"] = 1 + rnd(d, std=0.1), rnd(d, std=0.1)
    s["decoder.output_projection.weight"] = s["decoder.embed_tokens.weight"] if shared else rnd(n_symbols, d)
    args = argparse.Namespace(
        arch="transformer_lm", decoder_embed_dim=d, decoder_ffn_embed_dim=ffn, decoder_layers=layers,
        decoder_attention_heads=heads, decoder_normalize_before=pre_norm, decoder_learned_pos=learned,
        no_scale_embedding=not scale, share_decoder_input_output_embed=shared, activation_fn=activation,
        max_target_positions=max_pos, tokens_per_sample=max_pos, no_decoder_final_norm=False,
        adaptive_softmax_cutoff=None, adaptive_input=False, character_embeddings=False, layernorm_embedding=False,
        decoder_input_dim=d, decoder_output_dim=d, dropout=0.1, attention_dropout=0.1,
    )
    return s, args


def fairseq_sinusoids(n: int, d: int, padding_idx: int) -> torch.Tensor:
    """fairseq SinusoidalPositionalEmbedding.get_embedding, in float64."""
    half = d // 2
    f = torch.exp(torch.arange(half, dtype=torch.float64) * -(math.log(10000) / (half - 1)))
    a = torch.arange(n, dtype=torch.float64)[:, None] * f[None]
    e = torch.cat([torch.sin(a), torch.cos(a)], dim=1)
    e[padding_idx] = 0
    return e.float()


def fairseq_forward(s: dict[str, torch.Tensor], args: argparse.Namespace, tokens: torch.Tensor) -> torch.Tensor:
    """Reference: fairseq TransformerDecoder (no encoder attention) logits ``(B, T, n_symbols)`` for ``tokens``
    (fairseq dictionary indices, no padding), from its state dict and args with plain tensor ops."""
    d, h = args.decoder_embed_dim, args.decoder_attention_heads
    B, T = tokens.shape
    x = s["decoder.embed_tokens.weight"][tokens] * (1.0 if args.no_scale_embedding else math.sqrt(d))
    positions = torch.arange(T) + PAD + 1  # make_positions: the first non-pad token is padding_idx + 1
    if args.decoder_learned_pos:
        x = x + s["decoder.embed_positions.weight"][positions]
    else:
        x = x + fairseq_sinusoids(args.max_target_positions + PAD + 1, d, PAD)[positions]
    act = F.relu if args.activation_fn == "relu" else F.gelu
    future = torch.triu(torch.full((T, T), float("-inf")), 1)

    def ln(x, name):
        return F.layer_norm(x, (d,), s[f"{name}.weight"], s[f"{name}.bias"], 1e-5)

    def lin(x, name):
        return x @ s[f"{name}.weight"].T + s[f"{name}.bias"]

    for i in range(args.decoder_layers):
        p = f"decoder.layers.{i}."
        residual = x
        if args.decoder_normalize_before:
            x = ln(x, p + "self_attn_layer_norm")
        q = lin(x, p + "self_attn.q_proj") * (d // h) ** -0.5
        k, v = lin(x, p + "self_attn.k_proj"), lin(x, p + "self_attn.v_proj")
        q, k, v = (t.view(B, T, h, d // h).transpose(1, 2) for t in (q, k, v))
        w = torch.softmax(q @ k.transpose(-1, -2) + future, dim=-1)
        x = lin((w @ v).transpose(1, 2).reshape(B, T, d), p + "self_attn.out_proj")
        x = residual + x
        if not args.decoder_normalize_before:
            x = ln(x, p + "self_attn_layer_norm")
        residual = x
        if args.decoder_normalize_before:
            x = ln(x, p + "final_layer_norm")
        x = residual + lin(act(lin(x, p + "fc1")), p + "fc2")
        if not args.decoder_normalize_before:
            x = ln(x, p + "final_layer_norm")
    if "decoder.layer_norm.weight" in s:
        x = ln(x, "decoder.layer_norm")
    return x @ s["decoder.output_projection.weight"].T


def imported(variant: dict, order: list[int], tmp_path: Path) -> tuple[UnitLM, dict, argparse.Namespace, list[int]]:
    symbols = write_dict(tmp_path / "dict.txt", order)
    state, args = fairseq_lm(len(symbols), **variant)
    rows = unit_rows(read_fairseq_dict(tmp_path / "dict.txt"), N_UNITS)
    cfg, ours = convert_lm(state, vars(args), rows)
    lm = UnitLM(cfg).eval()
    lm.load_state_dict(ours, strict=True)
    return lm, state, args, rows


VARIANTS = {
    # GSLM's ULM (transformer_lm_big): pre-LN, sinusoidal positions, sqrt(d) scale, ReLU, shared embeddings
    "pre-norm": dict(pre_norm=True, learned=False, shared=True, activation="relu", scale=True),
    # a post-LN decoder (no final layer norm), learned positions, separate output projection, GELU, no scale
    "post-norm": dict(pre_norm=False, learned=True, shared=False, activation="gelu", scale=False),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_imported_lm_matches_fairseq_decoder(variant, tmp_path):
    order = list(np.random.default_rng(3).permutation(N_UNITS))
    lm, state, args, rows = imported(VARIANTS[variant], order, tmp_path)
    g = torch.Generator().manual_seed(1)
    ids = torch.cat([torch.randint(0, N_UNITS, (3, 20), generator=g), torch.full((3, 1), lm.config.eos)], dim=1)
    ref = fairseq_forward(state, args, torch.tensor(rows)[ids])[..., rows]  # fairseq's logits for our symbols
    with torch.no_grad():
        ours = lm(ids)["units"]
        last = lm.unit_logits(lm.run(lm.embed(ids), read_at=torch.tensor([20, 12, 5])))
    assert ours.shape == ref.shape == (3, 21, N_UNITS + 1)
    diff = (ours - ref).abs().max().item()
    assert diff < 1e-4, diff
    assert ref.std() > 1.0  # the comparison is not between near-constant logits
    torch.testing.assert_close(last, ref[torch.arange(3), torch.tensor([20, 12, 5])], atol=1e-4, rtol=0)
    assert set(lm.next_token_logits(lm.run(lm.embed(ids[:, :3])))) == {"units"}  # no prosody streams


def test_vocabulary_mapping(tmp_path):
    order = [5, 0, 11, 3, 7, 1, 9, 2, 10, 4, 8]  # unit 6 never occurs in dict.txt
    symbols = write_dict(tmp_path / "dict.txt", order)
    assert read_fairseq_dict(tmp_path / "dict.txt") == symbols
    rows = unit_rows(symbols, N_UNITS)
    assert rows[5] == 4 and rows[0] == 5 and rows[6] == 3 and rows[-1] == 2  # first dict line, <unk>, </s>
    assert [symbols[r] for r in rows] == [str(u) if u != 6 else "<unk>" for u in range(N_UNITS)] + ["</s>"]
    with pytest.raises(GSLMImportError, match="only 8 clusters"):
        unit_rows(symbols, 8)


def test_unsupported_options_are_refused(tmp_path):
    symbols = write_dict(tmp_path / "dict.txt", list(range(N_UNITS)))
    state, args = fairseq_lm(len(symbols))
    rows = unit_rows(symbols, N_UNITS)
    with pytest.raises(GSLMImportError, match="layernorm_embedding"):
        convert_lm(state, {**vars(args), "layernorm_embedding": True}, rows)
    with pytest.raises(GSLMImportError, match="unsupported parameters"):
        convert_lm({**state, "decoder.layers.0.attn_ln.weight": torch.ones(32)}, vars(args), rows)


def test_new_options_keep_old_configs_and_fingerprints():
    """Architecture options at their defaults are not written, so existing configs (and fingerprints) stay."""
    shipped = json.loads((DEFAULT_BACKBONE_DIR / "config.json").read_text())
    assert UnitLMConfig(**shipped["lm"]).to_dict() == shipped["lm"]
    assert set(tiny_config()["lm"]) == {"vocab_size", "n_layer", "n_head", "n_embd", "block_size", "n_duration",
                                        "n_pitch", "dropout"}
    cfg = UnitLMConfig(pos="sinusoidal", pos_offset=2, norm="post", tied_output=False)
    assert UnitLMConfig(**cfg.to_dict()) == cfg and "pos" in cfg.to_dict() and "activation" not in cfg.to_dict()
    assert "pos_table" not in UnitLM(cfg).state_dict()  # fixed sinusoids are not weights
    with pytest.raises(ValueError, match="norm"):
        UnitLMConfig(norm="sandwich")


# ----------------------------------------------------------------------------- the whole importer

HUBERT_ARCH = dict(extractor_mode="group_norm", extractor_conv_layer_config=[(32, 10, 5)] + [(32, 3, 2)] * 4
                   + [(32, 2, 2)] * 2, extractor_conv_bias=False, encoder_embed_dim=128, encoder_pos_conv_kernel=16,
                   encoder_pos_conv_groups=4, encoder_num_layers=3, encoder_num_heads=2, encoder_ff_interm_features=256,
                   encoder_layer_norm_first=False)
NO_DROP = dict(encoder_projection_dropout=0.0, encoder_attention_dropout=0.0, encoder_ff_interm_dropout=0.0,
               encoder_dropout=0.0, encoder_layer_drop=0.0, aux_num_out=None)
LAYER = 2


FAIRSEQ_HUBERT_NAMES = [  # torchaudio -> fairseq parameter names (the inverse of torchaudio's import_fairseq map)
    (r"feature_extractor\.conv_layers\.0\.layer_norm\.", "feature_extractor.conv_layers.0.2."),
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
    (r"encoder\.feature_projection\.projection\.", "post_extract_proj."),
    (r"encoder\.feature_projection\.layer_norm\.", "layer_norm."),
    (r"encoder\.transformer\.pos_conv_embed\.conv\.", "encoder.pos_conv.0."),
    (r"encoder\.transformer\.layer_norm\.", "encoder.layer_norm."),
    (r"encoder\.transformer\.layers\.(\d+)\.attention\.", r"encoder.layers.\1.self_attn."),
    (r"encoder\.transformer\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
    (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.fc1."),
    (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.fc2."),
    (r"encoder\.transformer\.layers\.(\d+)\.final_layer_norm\.", r"encoder.layers.\1.final_layer_norm."),
]


def reduce_name(key: str) -> str:
    for pattern, repl in FAIRSEQ_HUBERT_NAMES:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key, count=1)
    raise KeyError(key)


def clips() -> list[torch.Tensor]:
    return [torch.from_numpy(tone_clip(k, seed=i)) for k in KINDS for i in range(3)]


@pytest.fixture(scope="module")
def gslm_files(tmp_path_factory):
    """Tiny GSLM-format inputs: HuBERT (torchaudio state dict, legacy weight_g/weight_v keys), km.bin (joblib
    KMeans), hubert100_lm.tgz-like archive (fairseq checkpoint with args + dict.txt)."""
    root = tmp_path_factory.mktemp("gslm")
    torch.manual_seed(0)
    hubert = torchaudio.models.wav2vec2_model(**HUBERT_ARCH, **NO_DROP).eval()
    state = hubert.state_dict()
    p = "encoder.transformer.pos_conv_embed.conv."
    legacy = {k.replace(p + "parametrizations.weight.original0", p + "weight_g")
               .replace(p + "parametrizations.weight.original1", p + "weight_v"): v for k, v in state.items()}
    torch.save(legacy, root / "hubert.pth")
    fairseq = {reduce_name(k): v for k, v in legacy.items()}
    fairseq |= {"label_embs_concat": torch.randn(N_UNITS, 16), "final_proj.weight": torch.randn(16, 128),
                "final_proj.bias": torch.zeros(16), "mask_emb": torch.randn(128)}
    torch.save({"model": fairseq, "args": None, "cfg": {"model": {"_name": "hubert", "encoder_attention_heads": 2,
                "layer_norm_first": False}, "task": {"_name": "hubert_pretraining", "normalize": False}}},
               root / "hubert_base_ls960.pt")
    with torch.no_grad():
        feats = torch.cat([hubert.extract_features(w[None], num_layers=LAYER)[0][-1][0] for w in clips()])
    km = KMeans(n_clusters=N_UNITS, n_init=2, random_state=0).fit(feats.numpy().astype(np.float64))
    joblib.dump(km, root / "km.bin")
    (root / "lm").mkdir()
    symbols = write_dict(root / "lm" / "dict.txt", list(np.random.default_rng(5).permutation(N_UNITS)))
    lm_state, args = fairseq_lm(len(symbols), max_pos=128)
    torch.save({"model": lm_state, "args": args, "cfg": None, "extra_state": {"epoch": 3}},
               root / "lm" / "checkpoint_best.pt")
    with tarfile.open(root / "hubert100_lm.tgz", "w:gz") as tar:
        tar.add(root / "lm", arcname="hubert100_lm")
    return {"root": root, "hubert": hubert, "km": km, "lm_state": lm_state, "args": args, "symbols": symbols}


@pytest.fixture(scope="module")
def gslm_backbone(gslm_files):
    root = gslm_files["root"]
    assert main(["--hubert", str(root / "hubert.pth"), "--km", str(root / "km.bin"), "--ulm",
                 str(root / "hubert100_lm.tgz"), "--out", str(root / "backbone"), "--layer", str(LAYER),
                 "--id", "tiny-gslm"]) == 0
    return Backbone.load(root / "backbone")


def test_imported_backbone_loads_and_encodes_like_gslm(gslm_files, gslm_backbone):
    bb = gslm_backbone
    folder = bb.folder
    assert {p.name for p in folder.iterdir()} == {"config.json", "encoder.safetensors", "lm.safetensors",
                                                  "MODEL_CARD.md"}
    assert bb.id == "tiny-gslm" and bb.n_units == N_UNITS and bb.config["dense"]["kind"] == "hubert"
    assert Backbone.load(folder).fingerprint == bb.fingerprint
    wav = clips()[4]
    with torch.no_grad():
        want = gslm_files["hubert"].extract_features(wav[None], num_layers=LAYER)[0][-1][0]
        feats = bb.encoder.features(wav)
    torch.testing.assert_close(feats, want, atol=1e-4, rtol=1e-4)  # cut after layer 2, weight norm folded
    frame_units = bb.encoder.quantize(feats)
    assert frame_units.tolist() == gslm_files["km"].predict(want.numpy().astype(np.float64)).tolist()
    units = bb.encoder(wav)
    assert len(units) > 1 and int(units.ids.max()) < N_UNITS and int(units.durations.sum()) == feats.shape[0]
    # the LM survived the round trip through the folder: same logits as fairseq's decoder
    rows = bb.config["import"]["fairseq_rows"]
    ids = torch.cat([units.ids, torch.tensor([bb.lm.config.eos])])[None]
    ref = fairseq_forward(gslm_files["lm_state"], gslm_files["args"], torch.tensor(rows)[ids])[..., rows]
    with torch.no_grad():
        assert (bb.lm(ids)["units"] - ref).abs().max().item() < 1e-4
    card = (folder / "MODEL_CARD.md").read_text()
    assert bb.fingerprint in card and "</s>" in card


def test_prompts_train_on_the_imported_backbone(gslm_backbone, tmp_path):
    bb = gslm_backbone
    data = [(bb.encoder(w), i // 3) for i, w in enumerate(clips())]
    info = TaskInfo(id="tones", labels=list(KINDS))
    prompt = new_prompt(bb.lm, info, PromptConfig(prompt_length=3), [u for u, _ in data], seed=0)
    result = train_prompt(bb.lm, prompt, data, None, TrainConfig(epochs=8, lr=2e-2, batch_size=9))
    assert len(result.history) >= 1 and math.isfinite(result.history[-1]["loss"])
    save_prompt(prompt, tmp_path / "tones", bb.id, bb.fingerprint)
    loaded = load_prompt(tmp_path / "tones", bb.lm.config, bb.fingerprint)
    assert loaded.reads == ("units",) and loaded.num_trainable() == prompt.num_trainable()


def test_centroid_files_and_stub_unpickling(gslm_files, tmp_path):
    """A .npy of centroids needs no pickle; a checkpoint naming classes this environment lacks (fairseq's omegaconf
    config) still imports, its options read from inert stand-ins."""
    root = gslm_files["root"]
    np.save(tmp_path / "c.npy", gslm_files["km"].cluster_centers_)
    torch.testing.assert_close(load_centroids(tmp_path / "c.npy"), load_centroids(root / "km.bin"))

    fake = types.ModuleType("fake_omegaconf")

    class DictConfig:
        def __init__(self, content):
            self._content, self._metadata, self._parent = content, None, None

    class AnyNode:
        def __init__(self, val):
            self._val = val

    DictConfig.__module__ = AnyNode.__module__ = "fake_omegaconf"
    DictConfig.__qualname__, AnyNode.__qualname__ = "DictConfig", "AnyNode"
    fake.DictConfig, fake.AnyNode = DictConfig, AnyNode
    model_cfg = DictConfig({k: AnyNode(v) for k, v in vars(gslm_files["args"]).items()})
    sys.modules["fake_omegaconf"] = fake
    try:
        torch.save({"model": gslm_files["lm_state"], "args": None, "cfg": DictConfig({"model": model_cfg})},
                   tmp_path / "checkpoint_best.pt")
    finally:
        del sys.modules["fake_omegaconf"]
    (tmp_path / "dict.txt").write_text((root / "lm" / "dict.txt").read_text())
    np.save(tmp_path / "c.npy", gslm_files["km"].cluster_centers_.astype(np.float32))
    bb = import_gslm(str(root / "hubert.pth"), tmp_path / "c.npy", tmp_path / "checkpoint_best.pt", tmp_path / "out",
                     layer=LAYER, backbone_id="tiny-gslm")
    assert bb.lm.config.embed_scale == pytest.approx(math.sqrt(32)) and bb.lm.config.pos == "sinusoidal"
    assert bb.fingerprint == Backbone.load(root / "backbone").fingerprint  # same inputs, same backbone


def test_fairseq_hubert_checkpoint_imports_like_torchaudio_format(gslm_files):
    """fairseq's own hubert_base_ls960.pt layout (fairseq names, label embeddings, cfg) gives the same dense model."""
    root = gslm_files["root"]
    cfg_pt, state_pt, _ = hubert_dense(str(root / "hubert_base_ls960.pt"), LAYER)
    cfg_ta, state_ta, _ = hubert_dense(str(root / "hubert.pth"), LAYER)
    assert cfg_pt == cfg_ta and cfg_ta["arch"]["encoder_num_heads"] == 2 and cfg_ta["layer"] == LAYER
    assert state_pt.keys() == state_ta.keys() and all(torch.equal(state_pt[k], state_ta[k]) for k in state_ta)
    assert not any(".layers.2." in k for k in state_ta)  # layers after the quantized one are not kept


def test_import_errors_are_one_line(gslm_files, tmp_path, capsys):
    root = gslm_files["root"]
    km = KMeans(n_clusters=4, n_init=1, random_state=0).fit(np.random.default_rng(0).normal(size=(20, 128)))
    joblib.dump(km, tmp_path / "km4.bin")
    args = ["--hubert", str(root / "hubert.pth"), "--ulm", str(root / "lm"), "--out", str(tmp_path / "out"),
            "--layer", str(LAYER)]
    assert main([*args, "--km", str(tmp_path / "km4.bin")]) == 2
    err = capsys.readouterr().err
    assert "error: dict.txt has units" in err and "do not belong together" in err and "Traceback" not in err
    assert main([*args, "--km", str(tmp_path / "nope.npy")]) == 2
    assert not (tmp_path / "out").exists()


class _RunsCode:
    """A pickle payload that would run a shell command if its reader called what it names."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


class _Elsewhere:
    """A plain class: pickled by reference to this test module, which the loader must not import."""

    def __init__(self) -> None:
        self.value = 7


def test_pickled_inputs_cannot_run_code(gslm_files, tmp_path):
    """Checkpoints and km.bin go through restricted unpicklers: a payload naming os.system becomes an inert stub."""
    from recipes.build.import_gslm import GSLMImportError, Stub, load_checkpoint

    marker = tmp_path / "ran"
    torch.save({"model": gslm_files["lm_state"], "args": gslm_files["args"], "extra": _RunsCode(marker)},
               tmp_path / "evil.pt")
    with pytest.raises(GSLMImportError, match="cannot be read safely"):  # torch refuses os / posix outright
        load_checkpoint(tmp_path / "evil.pt")
    # a class this environment lacks is read as an inert stub, next to the real Namespace and tensors
    torch.save({"model": gslm_files["lm_state"], "args": gslm_files["args"], "extra": _Elsewhere()},
               tmp_path / "other.pt")
    ckpt = load_checkpoint(tmp_path / "other.pt")
    assert isinstance(ckpt["extra"], Stub) and ckpt["extra"].value == 7
    assert isinstance(ckpt["args"], argparse.Namespace)
    assert torch.equal(ckpt["model"]["decoder.embed_tokens.weight"],
                       gslm_files["lm_state"]["decoder.embed_tokens.weight"])
    joblib.dump(_RunsCode(marker), tmp_path / "evil_km.bin")
    with pytest.raises(GSLMImportError, match="not a fitted k-means"):
        load_centroids(tmp_path / "evil_km.bin")
    assert not marker.exists()


@pytest.mark.parametrize("has_data_filter", [True, False])
def test_lm_archives_extract_only_files_inside_the_folder(tmp_path, monkeypatch, has_data_filter):
    """Python 3.11 before 3.11.4 has no tarfile "data" filter: the same refusals are made by hand."""
    import io
    import tarfile

    from recipes.build.import_gslm import GSLMImportError, extract_data

    if not has_data_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    ok, bad = tmp_path / "ok.tgz", tmp_path / "bad.tgz"
    with tarfile.open(ok, "w:gz") as tar:
        info = tarfile.TarInfo("lm/dict.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"1 2"))
    with tarfile.open(ok) as tar:
        extract_data(tar, tmp_path / "out")
    assert (tmp_path / "out" / "lm" / "dict.txt").read_text() == "1 2"
    for name, kind in (("../escape.txt", tarfile.REGTYPE), ("lm/link", tarfile.SYMTYPE)):
        with tarfile.open(bad, "w:gz") as tar:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            tar.addfile(info, io.BytesIO(b""))
        with tarfile.open(bad) as tar, pytest.raises((GSLMImportError, tarfile.TarError)):
            extract_data(tar, tmp_path / "out2")
        assert not (tmp_path / "escape.txt").exists()
