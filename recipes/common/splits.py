"""Train / validation / test splits of the real recordings in ``shared/data``, by speaker, and the espeak-ng voice
variants by split (:data:`VOICE_SPLITS`): the single place that decides which recording or voice serves what.

No speaker is in more than one of train / val / test; ``seed=0`` is the documented split, other seeds rotate the
held-out speakers. Items are ``(path, label, speaker)`` with absolute paths under :data:`DATA_ROOT`.
The held-out speakers per data set: docs/RECIPES.md#splits.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .paths import DATA_ROOT

#: espeak-ng voice variants (timbres) by split, fixed once for all tasks. Families of near-identical variants
#: (iven..iven4, steph..steph3, edward/edward2, Andy/AnxiousAndy, klatt..klatt6, ...) stay in one split.
#: ``None`` is espeak's default voice of each language.
VOICE_SPLITS: dict[str, tuple[str | None, ...]] = {
    "train": (None, "adam", "Alicia", "Andrea", "anika", "antonio", "aunty", "belinda", "benjamin", "caleb",
              "david", "Denis", "ed", "f4", "f5", "Gene", "Gene2", "grandma", "grandpa", "gustave", "Hugo", "iven",
              "iven2", "iven3", "iven4", "Jacky", "john", "kaukovalta", "klatt", "klatt2", "klatt3", "klatt4",
              "klatt5", "klatt6", "Lee", "m1", "m4", "m5", "m7", "m8", "marcelo", "Marco", "Mario", "max",
              "Michael", "miguel", "Mike", "Nguyen", "norbert", "paul", "pedro", "quincy", "RicishayMax",
              "RicishayMax2", "RicishayMax3", "rob", "sandro", "shelby", "steph", "steph2", "steph3", "Storm",
              "travis", "zac"),
    "val": ("boris", "f1", "f2", "m2", "m3", "michel", "Tweaky", "victor"),
    "test": ("Alex", "Andy", "Annie", "AnxiousAndy", "Diogo", "edward", "edward2", "f3", "Henrique", "linda",
             "m6", "pablo", "robert"),
}
#: Variants that espeak-ng lists as female (all others, and the default voice, are male).
FEMALE_VARIANTS = frozenset({"Alicia", "Andrea", "Annie", "anika", "aunty", "belinda", "f1", "f2", "f3", "f4",
                             "f5", "grandma", "linda", "steph", "steph2", "steph3"})

DATASETS = ("fsdd", "ravdess", "speech_commands", "lt_commands", "ar_commands", "voxforge")

#: Spoken language of each dataset (voxforge: the label is the language).
DATASET_LANG = {"fsdd": "en", "ravdess": "en", "speech_commands": "en", "lt_commands": "lt",
                "ar_commands": "ar", "voxforge": None}

RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
                    "07": "disgust", "08": "surprised"}

PARTS = ("train", "val", "test")
AUDIO_EXT = (".wav", ".flac")

Item = tuple[Path, str, str]


def _audio(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXT and p.is_file())


def _rotate(order: list[str], seed: int, step: int) -> list[str]:
    k = (seed * step) % len(order) if order else 0
    return order[k:] + order[:k]


def _by_roles(items: list[Item], test: set[str], val: set[str]) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = {p: [] for p in PARTS}
    for it in items:
        part = "test" if it[2] in test else "val" if it[2] in val else "train"
        out[part].append(it)
    return out


def _fsdd(root: Path, seed: int) -> dict[str, list[Item]]:
    items = []
    for p in _audio(root / "fsdd"):
        m = re.fullmatch(r"(\d)_([a-z]+)_(\d+)", p.stem)
        if m:
            items.append((p, m.group(1), m.group(2)))
    # seed 0: train jackson, yweweler; val nicolas; test theo
    order = _rotate(["jackson", "yweweler", "nicolas", "theo"], seed, 1)
    return _by_roles(items, {order[3]}, {order[2]})


def _ravdess(root: Path, seed: int) -> dict[str, list[Item]]:
    items = []
    for p in _audio(root / "ravdess"):
        f = p.stem.split("-")
        if len(f) == 7 and f[2] in RAVDESS_EMOTIONS:
            items.append((p, RAVDESS_EMOTIONS[f[2]], f[6]))
    order = _rotate([f"{a:02d}" for a in range(1, 21)], seed, 4)  # shifts by 4 keep male/female balance
    return _by_roles(items, set(order[16:20]), set(order[14:16]))


def _hash_part(key: str, seed: int, val: float = 0.1, test: float = 0.1) -> str:
    h = int(hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test else "val" if h < test + val else "train"


def _speech_commands(root: Path, seed: int) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = {p: [] for p in PARTS}
    for p in _audio(root / "speech_commands"):
        label = p.parent.name
        spk = p.stem.split("_nohash_")[0] if "_nohash_" in p.stem else f"{label}/{p.stem}"
        out[_hash_part(spk, seed)].append((p, label, spk))
    return out


def _lt_commands(root: Path, seed: int) -> dict[str, list[Item]]:
    items = [(p, p.parent.name, p.stem.split("_nohash_")[0]) for p in _audio(root / "lt_commands")
             if "_nohash_" in p.stem]
    speakers = sorted({s for _, _, s in items})  # 01..13, 16..24
    order = _rotate(speakers, seed, 6)
    return _by_roles(items, set(order[-4:]), set(order[-6:-4]))


def _ar_commands(root: Path, seed: int, block: int = 8) -> dict[str, list[Item]]:
    items = []
    for p in _audio(root / "ar_commands"):
        m = re.fullmatch(r"(.+)_(\d+)", p.stem)
        if m:
            n = int(m.group(2))
            b = (n - 1) // block
            items.append((p, p.parent.name, f"n{b * block + 1:02d}-{b * block + block:02d}"))
    blocks = sorted({s for _, _, s in items})  # 10 blocks for N = 1..80
    order = _rotate(blocks, seed, 1)
    return _by_roles(items, {order[-1]}, {order[-2]})


def voxforge_session(stem: str) -> str:
    """VoxForge session id (``user-YYYYMMDD-code``) from a clip's file stem."""
    m = re.match(r"^(.+?-\d{8}-[^_-]+)", stem)
    return m.group(1) if m else re.split(r"[-_](?=[^-_]*$)", stem)[0]


def _voxforge(root: Path, seed: int) -> dict[str, list[Item]]:
    items = [(p, p.parent.name, voxforge_session(p.stem)) for p in _audio(root / "voxforge")]
    test: set[str] = set()
    val: set[str] = set()
    for lang in sorted({lab for _, lab, _ in items}):
        order = _rotate(sorted({s for _, lab, s in items if lab == lang}), seed, 1)
        if len(order) >= 3:
            test.add(order[-1])
            val.add(order[-2])
    return _by_roles(items, test, val)


_SPLITTERS = {"fsdd": _fsdd, "ravdess": _ravdess, "speech_commands": _speech_commands,
              "lt_commands": _lt_commands, "ar_commands": _ar_commands, "voxforge": _voxforge}


def split(dataset: str, seed: int = 0, root: str | os.PathLike | None = None) -> dict[str, list[Item]]:
    """``{"train": [...], "val": [...], "test": [...]}`` of ``(path, label, speaker)`` for ``dataset``.

    Sorted by path within each part; deterministic for a seed. See the module docstring for who is held out.
    Raises FileNotFoundError if the dataset's folder is missing.
    """
    if dataset not in _SPLITTERS:
        raise ValueError(f"unknown dataset {dataset!r}; one of {', '.join(DATASETS)}")
    base = Path(root) if root is not None else DATA_ROOT
    if not (base / dataset).is_dir():
        raise FileNotFoundError(f"{base / dataset} not found (set SPEECHPROMPT_DATA to the data folder)")
    parts = _SPLITTERS[dataset](base, seed)
    return {k: sorted(v) for k, v in parts.items()}


def language_of(dataset: str, label: str) -> str:
    """Spoken language of a recording (voxforge's label is its language)."""
    return DATASET_LANG.get(dataset) or label


def real_training_audio(seed: int = 0, root: str | os.PathLike | None = None,
                        datasets: tuple[str, ...] = DATASETS) -> list[tuple[Path, str, str, str]]:
    """Every real training-split recording of every dataset present: ``(path, dataset, label, speaker)``.

    This is what may go into the unit-LM pretraining corpus; val and test recordings never do.
    Datasets whose folder is missing are skipped.
    """
    base = Path(root) if root is not None else DATA_ROOT
    out = []
    for ds in datasets:
        if not (base / ds).is_dir():
            continue
        out += [(p, ds, label, spk) for p, label, spk in split(ds, seed, base)["train"]]
    return out


if __name__ == "__main__":  # print the split sizes
    for ds in DATASETS:
        try:
            parts = split(ds)
        except FileNotFoundError as e:
            print(ds, "missing:", e)
            continue
        desc = "  ".join(f"{k}={len(v)} files/{len({s for _, _, s in v})} spk" for k, v in parts.items())
        print(f"{ds:16s} {desc}")
