"""The model artifact: a folder of plain data, and the loaded model that samples from it.

``weights.pt`` is a ``torch.save`` of the network's state dict (tensors only, loadable with
``torch.load(weights_only=True)``); ``config.json`` embeds the dataset schema, the encoding and
network sizes and the training hyper-parameters; ``privacy.json`` is the privacy record from
which anyone can recompute epsilon. Nothing else is stored: no training records and no
statistic of the training data. The artifact's hash (:func:`artifact_sha256`) covers every
file and is what the privacy ledger and the FHIR manifest name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsynth._io import atomic_dir
from medsynth.cohort import Cohort, Source
from medsynth.encoding.decode import decode_patients
from medsynth.encoding.encode import encode_cohort
from medsynth.encoding.vocabulary import EncodingConfig, Vocabulary, build_vocabulary
from medsynth.errors import DataError
from medsynth.models.conditions import resolve_conditions
from medsynth.models.device import resolve_device
from medsynth.models.fit import GrammarTables, sequence_log_likelihood
from medsynth.models.network import NetworkConfig, PatientNetwork
from medsynth.models.sampler import sample_batch
from medsynth.schema import parse_schema

__all__ = [
    "MODEL_FORMAT",
    "PatientModel",
    "artifact_sha256",
    "build_network",
    "load_model",
    "save_artifact",
]

MODEL_FORMAT = "medsynth.model/1"
WEIGHTS, CONFIG, PRIVACY = "weights.pt", "config.json", "privacy.json"


def build_network(vocab: Vocabulary, config: NetworkConfig) -> PatientNetwork:
    """A freshly initialised network sized for ``vocab``."""
    return PatientNetwork(
        vocab_size=vocab.size,
        n_slots=vocab.event_slot + 1,
        max_len=vocab.max_len,
        horizon_days=vocab.schema.time.horizon_days,
        config=config,
        token_channel=torch.as_tensor(vocab.token_channel),
        token_bin=torch.as_tensor(vocab.token_bin),
        token_rank=torch.as_tensor(vocab.token_rank),
        value_first=vocab.value_start,
        n_prefix=vocab.n_prefix,
    )


def artifact_sha256(path: str | Path) -> str:
    """sha256 over the sorted (file name, file sha256) lines of the artifact folder."""
    folder = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        h.update(f"{f.name}\0{hashlib.sha256(f.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


def _dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def save_artifact(
    out: str | Path,
    *,
    vocab: Vocabulary,
    net: PatientNetwork,
    training: Mapping[str, Any],
    privacy: Mapping[str, Any],
    overwrite: bool = False,
) -> Path:
    """Write the artifact folder atomically (weights, config, privacy record)."""
    config = {
        "format": MODEL_FORMAT,
        "schema": vocab.schema.to_dict(),
        "schema_sha256": vocab.schema.sha256,
        "encoding": vocab.config.to_dict(),
        "vocabulary_sha256": vocab.sha256,
        "network": net.config.to_dict(),
        "training": dict(training),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        torch.save(state, tmp / WEIGHTS)
        (tmp / CONFIG).write_text(_dumps(config), encoding="utf-8")
        (tmp / PRIVACY).write_text(_dumps(privacy), encoding="utf-8")
    return Path(out)


class PatientModel:
    """A trained generator loaded from its artifact: samples patients, scores cohorts.

    Build it with :func:`load_model`.
    """

    def __init__(
        self,
        *,
        vocab: Vocabulary,
        net: PatientNetwork,
        config: dict[str, Any],
        privacy: dict[str, Any],
        path: Path,
        sha256: str,
        device: torch.device,
    ) -> None:
        self.vocab = vocab
        self.net = net
        self.config = config
        self.privacy = privacy
        self.path = path
        self.sha256 = sha256
        self.device = device

    @property
    def schema(self):
        return self.vocab.schema

    @property
    def epsilon(self) -> float:
        return float(self.privacy["epsilon"])

    @property
    def delta(self) -> float:
        return float(self.privacy["delta"])

    def sample(
        self,
        n_patients: int,
        *,
        conditions: Mapping[str, Any] | None = None,
        random_state: int = 0,
        batch_size: int = 512,
        id_prefix: str = "syn-",
    ) -> Iterator[Cohort]:
        """Yield cohorts of at most ``batch_size`` synthetic patients, ``n_patients`` in all.

        Chunk ``k`` is drawn from seeds derived from ``(random_state, k)``, so the output is
        a function of the seed, the batch size and the device.
        """
        if n_patients < 0 or batch_size < 1:
            raise DataError(
                f"need n_patients >= 0 and batch_size >= 1, got {n_patients}, {batch_size}"
            )
        plan = resolve_conditions(self.vocab, conditions)
        width = max(6, len(str(max(n_patients - 1, 0))))
        source = Source(
            fingerprint=f"synthetic:{self.sha256}",
            kind="synthetic",
            description=f"medsynth model {self.sha256[:12]} (epsilon {self.epsilon:g})",
        )
        for k, first in enumerate(range(0, n_patients, batch_size)):
            m = min(batch_size, n_patients - first)
            seq = np.random.SeedSequence([int(random_state), k])
            torch_seed, np_seed = seq.generate_state(2, dtype=np.uint64)
            generator = torch.Generator().manual_seed(int(torch_seed) & (2**63 - 1))
            rng = np.random.default_rng(int(np_seed))
            sampled = sample_batch(
                self.net, self.vocab, m, plan=plan, generator=generator, rng=rng, device=self.device
            )
            ids = [f"{id_prefix}{i:0{width}d}" for i in range(first, first + m)]
            yield decode_patients(self.vocab, sampled, ids, rng, ranges=plan.ranges, source=source)

    def log_likelihood(self, cohort: Cohort, *, batch_size: int = 256) -> np.ndarray:
        """Log-likelihood of each patient's encoded record, in ``cohort.patients`` order.

        The prefix is scored in schema order; values count by their bins (the uniform
        within-bin density is the same for every model and is left out).
        """
        encoded = encode_cohort(self.vocab, cohort)
        tables = GrammarTables.build(self.vocab, self.device)
        return sequence_log_likelihood(self.net, tables, encoded, batch_size=batch_size)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read model file: {exc}") from None


def load_model(path: str | Path, device: str | torch.device = "cpu") -> PatientModel:
    """Load an artifact folder; weights with ``torch.load(weights_only=True)``."""
    folder = Path(path)
    missing = [n for n in (WEIGHTS, CONFIG, PRIVACY) if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder}: not a medsynth model folder (missing {', '.join(missing)})")
    config = _read_json(folder / CONFIG)
    if config.get("format") != MODEL_FORMAT:
        raise DataError(
            f"{folder / CONFIG}: field 'format' is {config.get('format')!r}, "
            f"expected {MODEL_FORMAT!r}"
        )
    schema = parse_schema(config["schema"], source=str(folder / CONFIG))
    vocab = build_vocabulary(schema, EncodingConfig.from_dict(config["encoding"]))
    if vocab.sha256 != config.get("vocabulary_sha256"):
        raise DataError(
            f"{folder / CONFIG}: the vocabulary rebuilt from the schema does not "
            "match 'vocabulary_sha256'; the model was made by another version"
        )
    dev = resolve_device(device)
    net = build_network(vocab, NetworkConfig.from_dict(config["network"]))
    state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    net.to(dev).eval()
    return PatientModel(
        vocab=vocab,
        net=net,
        config=config,
        privacy=_read_json(folder / PRIVACY),
        path=folder,
        sha256=artifact_sha256(folder),
        device=dev,
    )
