"""The model artifact: a folder of plain data, and the loaded model that samples from it.

``weights.pt`` is a ``torch.save`` of the network's state dict (tensors only, loadable with
``torch.load(weights_only=True)``); ``config.json`` embeds the dataset schema, the encoding and
network sizes and the training hyper-parameters; ``privacy.json`` is the privacy record from
which anyone can recompute epsilon. Nothing else is stored: no training records and no
statistic of the training data.

**The model hash** (:func:`model_sha256`) is computed once, over what defines the model: the
tree digest (:func:`medsynth.core.hashing.tree_digest`) of ``config.json`` and ``weights.pt``.
``privacy.json`` is not part of it; instead it names the hash (``model_sha256``), in canonical
JSON (RFC 8785), so the record is bound to the weights it describes. The same hash is recorded
by the ledger's artifact event, the FHIR export manifest and the audit report; loading a model
whose ``privacy.json`` names another hash fails. Artifacts written by medsynth 0.1 have an
indented ``privacy.json`` without ``model_sha256``; they still load (:attr:`PatientModel.legacy`),
and their ledger entries name :func:`legacy_artifact_sha256`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsynth._io import atomic_dir
from medsynth.cohort import Cohort, Source
from medsynth.core.canonical import JCS, canonical_form_of, canonical_json
from medsynth.core.hashing import hash_tree, tree_digest
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
    "MODEL_FILES",
    "MODEL_FORMAT",
    "PRIVACY_FORMAT",
    "PatientModel",
    "build_network",
    "legacy_artifact_sha256",
    "load_model",
    "model_sha256",
    "privacy_document",
    "read_privacy_document",
    "save_artifact",
]

MODEL_FORMAT = "medsynth.model/1"
PRIVACY_FORMAT = "medsynth.privacy/2"  # canonical JSON naming model_sha256; 0.1 had no format
WEIGHTS, CONFIG, PRIVACY = "weights.pt", "config.json", "privacy.json"
MODEL_FILES = (CONFIG, WEIGHTS)  # what the model hash covers


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
        token_kind=torch.as_tensor(vocab.token_kind),
        prefix_features=torch.as_tensor(vocab.prefix_features),
    )


def model_sha256(path: str | Path) -> str:
    """The model hash: the tree digest of ``config.json`` and ``weights.pt`` (not privacy.json).

    Raises:
        DataError: one of the two files is missing.
    """
    return tree_digest(hash_tree(path, only=MODEL_FILES))


def legacy_artifact_sha256(path: str | Path) -> str:
    """The hash medsynth 0.1 recorded in the ledger: every file of the folder, privacy.json too.

    SHA-256 over the sorted lines ``name NUL file-sha256 LF``; only used to match an artifact
    written then against its ledger entry.
    """
    folder = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        h.update(f"{f.name}\0{hashlib.sha256(f.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


def _dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def privacy_document(record: Any, *, model_hash: str) -> dict[str, Any]:
    """The content of ``privacy.json``: the privacy record's fields, its format and the model
    hash it belongs to. ``record`` None marks a model trained without privacy (benchmarks and
    tests), which is not releasable."""
    if record is None:
        body: dict[str, Any] = {"mechanism": "none", "releasable": False}
    else:
        body = {**record.to_dict(), "releasable": True}
    return {**body, "format": PRIVACY_FORMAT, "model_sha256": model_hash}


def read_privacy_document(folder: str | Path) -> dict[str, Any]:
    """Read ``privacy.json`` of an artifact and check it belongs to the folder's weights.

    A current record must be canonical JSON naming the model hash of the folder; a 0.1 record
    (no ``format``) is returned as it is, marked ``{"format": None}``.

    Raises:
        DataError: unreadable, not canonical, or naming another model hash: the record was
            edited or moved to another model, and must not be trusted.
    """
    path = Path(folder) / PRIVACY
    try:
        data = path.read_bytes()
        doc = json.loads(data.decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the privacy record: {exc}") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: the privacy record is not a JSON object")
    if "format" not in doc:
        return {**doc, "format": None}
    if doc["format"] != PRIVACY_FORMAT:
        raise DataError(f"{path}: format {doc['format']!r} is not {PRIVACY_FORMAT!r}")
    if canonical_form_of(data, forms=(JCS,)) is None:
        raise DataError(
            f"{path}: not in canonical JSON form: the privacy record was edited after training "
            "and must not be trusted; use the artifact as written by 'medsynth train'"
        )
    actual = model_sha256(folder)
    if doc.get("model_sha256") != actual:
        raise DataError(
            f"{path}: names model {str(doc.get('model_sha256'))[:16]}… but the weights and "
            f"config of {Path(folder)} hash to {actual[:16]}…: the record belongs to another "
            "model or the model was changed; it must not be trusted"
        )
    return doc


def save_artifact(
    out: str | Path,
    *,
    vocab: Vocabulary,
    net: PatientNetwork,
    training: Mapping[str, Any],
    privacy: Any,
    overwrite: bool = False,
    before_publish: Callable[[str], None] | None = None,
) -> Path:
    """Write the artifact folder atomically (weights, config, then the privacy record naming
    their hash).

    Args:
        privacy: the :class:`medsynth.privacy.accounting.PrivacyRecord` of the DP-SGD run, or
            None for a model trained without privacy (marked not releasable).
        before_publish: called with the model hash once every file is written, before the
            folder is moved into place (the pipeline settles the ledger charge here, so a model
            never appears without the ledger naming it).
    """
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
        digest = model_sha256(tmp)
        (tmp / PRIVACY).write_bytes(canonical_json(privacy_document(privacy, model_hash=digest)))
        if before_publish is not None:
            before_publish(digest)
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
    def releasable(self) -> bool:
        """True for a DP-SGD model; False for one trained without privacy."""
        return self.privacy.get("mechanism", "dp-sgd") == "dp-sgd"

    @property
    def legacy(self) -> bool:
        """True for an artifact written by medsynth 0.1 (its privacy.json names no model hash)."""
        return self.privacy.get("format") is None

    @property
    def epsilon(self) -> float:
        """The accounted epsilon; infinite for a model trained without privacy."""
        return float(self.privacy["epsilon"]) if self.releasable else math.inf

    @property
    def delta(self) -> float:
        return float(self.privacy["delta"]) if self.releasable else 1.0

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
    """Load an artifact folder; weights with ``torch.load(weights_only=True)``.

    The privacy record is checked against the weights first (:func:`read_privacy_document`):
    a record naming another model hash, or edited out of canonical form, is refused.
    """
    folder = Path(path)
    missing = [n for n in (WEIGHTS, CONFIG, PRIVACY) if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder}: not a medsynth model folder (missing {', '.join(missing)})")
    privacy = read_privacy_document(folder)
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
        privacy=privacy,
        path=folder,
        sha256=model_sha256(folder),
        device=dev,
    )
