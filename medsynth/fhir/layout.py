"""Lay a cohort out as FHIR resources and files, a block of consecutive patients at a time.

:class:`PreparedCohort` sorts a cohort's tables once into output order with numpy (patients in
table order; per patient, events by time, then observation slot, repeat rank and channel) and
marks where each Observation (one per value; panel channels measured at one time share one)
starts; each block then marks its Encounters (one per patient and local calendar day with
events, once the patient's invented start time is drawn). :meth:`PreparedCohort.block_input` cuts a
run of patients into a picklable :class:`BlockInput` (array slices and the random words drawn
from :class:`Streams`), and :func:`build_block` turns that into resource dicts with the
builders of :mod:`medsynth.fhir.resources`, in this process or in a worker.
:func:`render_block` serialises a block with ``orjson`` and the sinks lay the bytes out on disk:
:class:`NdjsonSink` as one ``<Type>.ndjson`` per resource type, :class:`BundleSink` as
transaction Bundles of whole patients. Memory stays bounded by the block size, whatever the
size of the cohort.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import orjson
import pandas as pd

from medsynth.cohort import Cohort
from medsynth.errors import DataError, MedsynthError
from medsynth.fhir.resources import (
    META,
    SECONDS_PER_DAY,
    W_CLOCK,
    W_DAY,
    WORDS_PER_PATIENT,
    Templates,
    build_condition,
    build_encounter,
    build_observation,
    build_panel,
    build_patient,
    epoch_seconds,
    local_datetimes,
    offset_seconds,
    quantity_values,
    start_of,
    uuid_strings,
)
from medsynth.schema.model import Attribute


# -- random streams ----------------------------------------------------------------------------
class Streams:
    """The writer's seeded random streams, each consumed in global patient order.

    Three independent PCG64 streams (SeedSequence spawn keys 1, 2, 3 of ``seed``) give a fixed
    number of raw 64-bit words per patient (start day and clock, name, MRN, birth day), two
    words per resource id and two per Bundle id. Because every patient and every resource
    consumes a fixed number of words in output order, the output does not depend on how the
    cohort is cut into chunks.
    """

    def __init__(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise MedsynthError(f"seed must be a non-negative integer, got {seed!r}")
        self._gens = [
            np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=(k,))) for k in (1, 2, 3)
        ]

    def patient_words(self, n: int) -> list[list[int]]:
        """``WORDS_PER_PATIENT`` words for each of the next ``n`` patients."""
        raw = self._gens[0].random_raw(n * WORDS_PER_PATIENT)
        return raw.reshape(n, WORDS_PER_PATIENT).tolist()

    def id_words(self, n: int) -> np.ndarray:
        """Random words (two each) for the ids of the next ``n`` resources."""
        return self._gens[1].random_raw(2 * n)

    def bundle_id(self) -> str:
        """Id of the next Bundle."""
        return uuid_strings(self._gens[2].random_raw(2))[0]


# -- a cohort laid out as resources ------------------------------------------------------------
@dataclass(frozen=True)
class Block:
    """The resources of a run of consecutive patients, each list in output order.

    ``n_encounters[i]`` (and the other counts) say how many resources of each kind patient
    ``i`` of the block has, so a Bundle writer can cut the lists patient by patient.
    """

    patients: list[dict[str, Any]]
    encounters: list[dict[str, Any]]
    observations: list[dict[str, Any]]
    conditions: list[dict[str, Any]]
    n_encounters: list[int]
    n_observations: list[int]
    n_conditions: list[int]

    def by_type(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "Patient": self.patients,
            "Encounter": self.encounters,
            "Observation": self.observations,
            "Condition": self.conditions,
        }

    def per_patient(self) -> list[list[dict[str, Any]]]:
        """For each patient: its Patient, Encounters, Observations and Conditions."""
        out, e, o, c = [], 0, 0, 0
        for i, pat in enumerate(self.patients):
            ne, no, nc = self.n_encounters[i], self.n_observations[i], self.n_conditions[i]
            out.append(
                [
                    pat,
                    *self.encounters[e : e + ne],
                    *self.observations[o : o + no],
                    *self.conditions[c : c + nc],
                ]
            )
            e, o, c = e + ne, o + no, c + nc
        return out


def _column(values: pd.Series, attr: Attribute) -> list[Any]:
    """An attribute column as Python values, None where missing."""
    out = values.astype(object).where(values.notna(), None).tolist()
    if attr.type == "date":
        return [None if v is None else pd.Timestamp(v).date() for v in out]
    return out


def _exclusive_cumsum(counts: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)


def _run_starts(*keys: np.ndarray) -> np.ndarray:
    """True where any of the (sorted) key arrays changes value, and at position 0."""
    n = len(keys[0])
    flags = np.zeros(n, dtype=bool)
    if n:
        flags[0] = True
        for k in keys:
            flags[1:] |= k[1:] != k[:-1]
    return flags


class PreparedCohort:
    """A cohort's tables as arrays sorted in output order, cut into blocks on demand.

    Events are sorted by patient (patients-table order), time, observation slot, repeat rank
    and channel; panel channels measured at one time (the k-th value of each) share one
    Observation. Encounters are cut per block (they depend on the drawn start times).
    """

    def __init__(self, cohort: Cohort, templates: Templates) -> None:
        t, schema = templates, cohort.schema
        self.t = t
        self.n = cohort.n_patients
        index = pd.Index(cohort.patients["patient_id"])
        # A model's synthetic patients have invented ids; any other cohort's ids are its own.
        self.source_ids = (
            None if cohort.source.kind == "synthetic" else [str(p) for p in index.tolist()]
        )
        self.attrs = {home: _column(cohort.patients[a.name], a) for home, a in t.homes.items()}
        ev = cohort.events
        pidx = _lookup(index, ev["patient_id"], "events", "patient_id")
        ch = _lookup(pd.Index(schema.channel_names), ev["channel"], "events", "channel")
        ts = offset_seconds(ev["time"].to_numpy(np.float64))
        val = ev["value"].to_numpy(np.float64)
        order = np.lexsort((val, ch, ts, pidx))
        pidx, ch, ts, val = pidx[order], ch[order], ts[order], val[order]
        runs = _run_starts(pidx, ts, ch)
        rank = np.arange(len(ch)) - np.flatnonzero(runs)[np.cumsum(runs) - 1]
        slot = t.slot[ch]
        order = np.lexsort((ch, rank, slot, ts, pidx))
        self.pidx, self.ch, self.ts, self.val = pidx[order], ch[order], ts[order], val[order]
        slot, rank = slot[order], rank[order]
        new_time = _run_starts(self.pidx, self.ts)
        self.new_obs = new_time | _run_starts(slot, rank) | (t.panel_of[self.ch] < 0)
        self.ev_bounds = np.searchsorted(self.pidx, np.arange(self.n + 1))
        co = cohort.conditions
        cp = _lookup(index, co["patient_id"], "conditions", "patient_id")
        code = _lookup(pd.Index(schema.condition_codes), co["code"], "conditions", "code")
        cts = offset_seconds(co["onset"].to_numpy(np.float64))
        order = np.lexsort((code, cts, cp))
        self.cpidx, self.code, self.cts = cp[order], code[order], cts[order]
        self.cond_bounds = np.searchsorted(self.cpidx, np.arange(self.n + 1))

    def block_input(self, a: int, b: int, streams: Streams) -> BlockInput:
        """What patients ``a`` to ``b - 1`` need to become resources, random words drawn."""
        es, ee = int(self.ev_bounds[a]), int(self.ev_bounds[b])
        cs, ce = int(self.cond_bounds[a]), int(self.cond_bounds[b])
        words = streams.patient_words(b - a)
        starts = [start_of(self.t.schema, w[W_DAY], w[W_CLOCK]) for w in words]
        base = np.array([epoch_seconds(s) for s in starts], dtype=np.int64)
        pidx, ts, new_obs = self.pidx[es:ee] - a, self.ts[es:ee], self.new_obs[es:ee]
        # one Encounter per patient and local calendar day with events
        new_enc = _run_starts(pidx, (base[pidx] + ts) // SECONDS_PER_DAY)
        n_resources = (b - a) + int(new_enc.sum()) + int(new_obs.sum()) + (ce - cs)
        return BlockInput(
            attrs={home: col[a:b] for home, col in self.attrs.items()},
            patient_words=words,
            starts=starts,
            base=base,
            id_words=streams.id_words(n_resources),
            source_ids=None if self.source_ids is None else self.source_ids[a:b],
            pidx=pidx,
            ts=ts,
            ch=self.ch[es:ee],
            val=self.val[es:ee],
            new_enc=new_enc,
            new_obs=new_obs,
            cpidx=self.cpidx[cs:ce] - a,
            code=self.code[cs:ce],
            cts=self.cts[cs:ce],
        )


@dataclass(frozen=True)
class BlockInput:
    """A run of patients cut from a :class:`PreparedCohort`: picklable plain data.

    Patient positions (``pidx``, ``cpidx``) count from the block's first patient.
    """

    attrs: dict[str, list[Any]]
    patient_words: list[list[int]]
    starts: list[dt.datetime]  # each patient's time zero, naive local time
    base: np.ndarray  # the same as epoch seconds
    id_words: np.ndarray
    source_ids: list[str] | None
    pidx: np.ndarray
    ts: np.ndarray
    ch: np.ndarray
    val: np.ndarray
    new_enc: np.ndarray
    new_obs: np.ndarray
    cpidx: np.ndarray
    code: np.ndarray
    cts: np.ndarray

    @property
    def n(self) -> int:
        return len(self.patient_words)


def build_block(t: Templates, inp: BlockInput, *, urn_refs: bool) -> Block:
    """The resources of a block; references are ``urn:uuid:`` ones (for Bundles) when
    ``urn_refs``, else ``Patient/<id>`` and ``Encounter/<id>``."""
    n, words, starts, base = inp.n, inp.patient_words, inp.starts, inp.base
    enc_pos, obs_pos = np.flatnonzero(inp.new_enc), np.flatnonzero(inp.new_obs)
    enc_p, obs_p, cond_p = inp.pidx[enc_pos], inp.pidx[obs_pos], inp.cpidx
    n_enc, n_obs, n_cond = (
        np.bincount(p, minlength=n).astype(np.int64) for p in (enc_p, obs_p, cond_p)
    )
    first = _exclusive_cumsum(1 + n_enc + n_obs + n_cond)  # id position of each Patient
    ids = uuid_strings(inp.id_words)

    def ids_of(p: np.ndarray, count: np.ndarray, before: np.ndarray) -> list[str]:
        rank = np.arange(len(p)) - _exclusive_cumsum(count)[p]
        return [ids[i] for i in (first[p] + 1 + before[p] + rank).tolist()]

    pat_ids = [ids[i] for i in first.tolist()]
    enc_ids = ids_of(enc_p, n_enc, np.zeros(n, np.int64))
    obs_ids = ids_of(obs_p, n_obs, n_enc)
    cond_ids = ids_of(cond_p, n_cond, n_enc + n_obs)
    pat_prefix, enc_prefix = ("urn:uuid:", "urn:uuid:") if urn_refs else ("Patient/", "Encounter/")
    subjects = [{"reference": pat_prefix + i} for i in pat_ids]
    enc_refs = [{"reference": enc_prefix + i} for i in enc_ids]
    enc_last = np.append(enc_pos[1:], len(inp.ts)) - 1
    enc_start = local_datetimes(base[enc_p] + inp.ts[enc_pos], t.tz_suffix)
    enc_end = local_datetimes(base[enc_p] + inp.ts[enc_last], t.tz_suffix)
    cond_when = local_datetimes(base[cond_p] + inp.cts, t.tz_suffix)

    homes = list(inp.attrs.items())
    patients = [
        build_patient(
            t,
            pat_ids[i],
            {home: col[i] for home, col in homes},
            starts[i].date(),
            words[i],
            None if inp.source_ids is None else inp.source_ids[i],
        )
        for i in range(n)
    ]
    enc_pl = enc_p.tolist()
    encounters = [
        build_encounter(enc_ids[k], subjects[enc_pl[k]], enc_start[k], enc_end[k])
        for k in range(len(enc_ids))
    ]
    obs_when = local_datetimes(base[obs_p] + inp.ts[obs_pos], t.tz_suffix)
    observations = _observations(t, inp, obs_pos, obs_p, obs_ids, subjects, enc_refs, obs_when)
    code, cond_pl = inp.code.tolist(), cond_p.tolist()
    conditions = [
        build_condition(t, cond_ids[k], code[k], subjects[cond_pl[k]], cond_when[k])
        for k in range(len(cond_ids))
    ]
    return Block(
        patients,
        encounters,
        observations,
        conditions,
        n_enc.tolist(),
        n_obs.tolist(),
        n_cond.tolist(),
    )


def _observations(
    t: Templates,
    inp: BlockInput,
    obs_pos: np.ndarray,
    obs_p: np.ndarray,
    obs_ids: list[str],
    subjects: list[dict[str, str]],
    enc_refs: list[dict[str, str]],
    obs_when: list[str],
) -> list[dict[str, Any]]:
    values = quantity_values(inp.val, t.channel_decimals[inp.ch])
    panel = t.panel_of[inp.ch].tolist()
    chl, enc = inp.ch.tolist(), (np.cumsum(inp.new_enc) - 1).tolist()
    starts, ends = obs_pos.tolist(), [*obs_pos[1:].tolist(), len(chl)]
    out = []
    for j, p in enumerate(obs_p.tolist()):
        f = starts[j]
        e = enc[f]
        if panel[f] < 0:
            out.append(
                build_observation(
                    t, obs_ids[j], chl[f], subjects[p], enc_refs[e], obs_when[j], values[f]
                )
            )
        else:
            members = [(chl[k], values[k]) for k in range(f, ends[j])]
            out.append(
                build_panel(t, obs_ids[j], panel[f], subjects[p], enc_refs[e], obs_when[j], members)
            )
    return out


def _lookup(index: pd.Index, values: pd.Series, table: str, column: str) -> np.ndarray:
    """Positions of ``values`` in ``index``; a value that is not there is a DataError."""
    pos = index.get_indexer(values.astype(str))
    if (pos < 0).any():
        bad = values.iloc[int(np.flatnonzero(pos < 0)[0])]
        raise DataError(
            f"{table} table: {column} {bad!r} is not in the cohort's "
            f"{'patients' if column == 'patient_id' else 'schema'}; "
            "build the cohort with Cohort.conform"
        )
    return pos.astype(np.int64)


# -- serialised output: ndjson files or transaction Bundles --------------------------------------
RESOURCE_TYPES = ("Patient", "Encounter", "Observation", "Condition")
Layout = Literal["ndjson", "bundle"]
_REQUEST = {t: {"method": "POST", "url": t} for t in RESOURCE_TYPES}
_BUFFER = 1 << 20


@dataclass(frozen=True)
class OutputFile:
    """One output file: the resource type it holds, its relative name, count and sha256."""

    type: str
    url: str
    count: int
    sha256: str


@dataclass(frozen=True)
class Rendered:
    """A block serialised: ndjson lines by type, or one JSON Bundle entry per resource."""

    counts: dict[str, int]
    lines: dict[str, bytes]
    entries: list[bytes]
    per_patient: list[int]


def render_block(t: Templates, inp: BlockInput, layout: Layout) -> Rendered:
    """Build the resources of a block and serialise them with orjson."""
    block = build_block(t, inp, urn_refs=layout == "bundle")
    by_type = block.by_type()
    counts = {rtype: len(res) for rtype, res in by_type.items()}
    if layout == "ndjson":
        opt = orjson.OPT_APPEND_NEWLINE
        lines = {
            rtype: b"".join([orjson.dumps(r, option=opt) for r in res])
            for rtype, res in by_type.items()
            if res
        }
        return Rendered(counts, lines, [], [])
    groups = block.per_patient()
    entries = [
        orjson.dumps(
            {
                "fullUrl": "urn:uuid:" + r["id"],
                "resource": r,
                "request": _REQUEST[r["resourceType"]],
            }
        )
        for group in groups
        for r in group
    ]
    return Rendered(counts, {}, entries, [len(g) for g in groups])


class OutputStream:
    """An output file opened on first write, hashed as it is written."""

    def __init__(self, path: Path) -> None:
        self.path, self.count, self.hash = path, 0, hashlib.sha256()
        self.fh: BinaryIO | None = None

    def write(self, data: bytes, count: int) -> None:
        if self.fh is None:
            self.fh = open(self.path, "wb", buffering=_BUFFER)
        self.fh.write(data)
        self.hash.update(data)
        self.count += count

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


class NdjsonSink:
    """One ``<Type>.ndjson`` per resource type; a type with no resource gets no file."""

    def __init__(self, folder: Path) -> None:
        self.files = {t: OutputStream(folder / f"{t}.ndjson") for t in RESOURCE_TYPES}

    def add(self, r: Rendered) -> None:
        for rtype, data in r.lines.items():
            self.files[rtype].write(data, r.counts[rtype])

    def finish(self) -> list[OutputFile]:
        self.close()
        return [
            OutputFile(t, f.path.name, f.count, f.hash.hexdigest())
            for t, f in self.files.items()
            if f.count
        ]

    def close(self) -> None:
        for f in self.files.values():
            f.close()


class BundleSink:
    """``bundle-000001.json``...: transaction Bundles of up to ``per_bundle`` whole patients.

    A Bundle is assembled from its serialised entries; the bytes equal ``orjson.dumps`` of
    the whole Bundle dict.
    """

    def __init__(self, folder: Path, per_bundle: int, streams: Streams) -> None:
        self.folder, self.per_bundle, self.streams = folder, per_bundle, streams
        self.entries: list[bytes] = []
        self.n_patients = 0
        self.output: list[OutputFile] = []

    def add(self, r: Rendered) -> None:
        i = 0
        for n in r.per_patient:
            self.entries.extend(r.entries[i : i + n])
            i += n
            self.n_patients += 1
            if self.n_patients == self.per_bundle:
                self._flush()

    def _flush(self) -> None:
        if not self.entries:
            return
        head = orjson.dumps(
            {
                "resourceType": "Bundle",
                "id": self.streams.bundle_id(),
                "meta": META,
                "type": "transaction",
                "entry": [],
            }
        )[:-2]
        data = b"".join((head, b",".join(self.entries), b"]}\n"))
        name = f"bundle-{len(self.output) + 1:06d}.json"
        (self.folder / name).write_bytes(data)
        self.output.append(
            OutputFile("Bundle", name, len(self.entries), hashlib.sha256(data).hexdigest())
        )
        self.entries, self.n_patients = [], 0

    def finish(self) -> list[OutputFile]:
        self._flush()
        return self.output

    def close(self) -> None:
        self.entries = []
