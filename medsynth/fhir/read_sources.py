"""Find FHIR input files, fingerprint them, and stream their resources one at a time.

A source is a file (``.json`` / ``.json.gz`` holding a Bundle of any type or a single
resource; ``.ndjson`` / ``.ndjson.gz`` bulk data, one resource per line) or a folder scanned
recursively for those suffixes in sorted order. Bundles are streamed entry by entry with
``ijson`` and bulk files line by line, so memory does not grow with file size. Every problem of
a file (empty, bad JSON, unknown resourceType, truncated gzip) comes out as a
:class:`FileProblem` in the stream at the place it happened, after everything readable before
it; nothing here raises on bad content. A byte-order mark is skipped, a bulk-data manifest is
recognised, and the bare ``NaN`` / ``Infinity`` some exporters write cost only their resource.
Files are opened read-only.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import ijson
import orjson

from medsynth.errors import DataError

SUFFIXES = (".ndjson.gz", ".json.gz", ".ndjson", ".json")

BAD_JSON = "bad JSON"
NOT_OBJECT = "not a JSON object"
NO_RESOURCE_TYPE = "missing resourceType"
BAD_RESOURCE_TYPE = "unknown resourceType (not a FHIR R4 resource type)"
EMPTY_FILE = "empty file"
BAD_GZIP = "truncated or corrupt gzip"
UNREADABLE = "file cannot be read"
BULK_MANIFEST = "(bulk data manifest)"

_CHUNK = 1 << 18
_BOM = b"\xef\xbb\xbf"

# Resource type names of FHIR R4 (4.0.1) and R4B (4.3.0); anything else in resourceType is an
# issue (a typo such as "Observaton" would otherwise vanish among the ignored types).
_R4_TYPES = """
    Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse
    AuditEvent Basic Binary BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement
    CarePlan CareTeam CatalogEntry ChargeItem ChargeItemDefinition Claim ClaimResponse
    ClinicalImpression CodeSystem Communication CommunicationRequest CompartmentDefinition
    Composition ConceptMap Condition Consent Contract Coverage CoverageEligibilityRequest
    CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric
    DeviceRequest DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference
    EffectEvidenceSynthesis Encounter Endpoint EnrollmentRequest EnrollmentResponse
    EpisodeOfCare EventDefinition Evidence EvidenceVariable ExampleScenario
    ExplanationOfBenefit FamilyMemberHistory Flag Goal GraphDefinition Group GuidanceResponse
    HealthcareService ImagingStudy Immunization ImmunizationEvaluation
    ImmunizationRecommendation ImplementationGuide InsurancePlan Invoice Library Linkage List
    Location Measure MeasureReport Media Medication MedicationAdministration MedicationDispense
    MedicationKnowledge MedicationRequest MedicationStatement MedicinalProduct
    MedicinalProductAuthorization MedicinalProductContraindication MedicinalProductIndication
    MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured
    MedicinalProductPackaged MedicinalProductPharmaceutical MedicinalProductUndesirableEffect
    MessageDefinition MessageHeader MolecularSequence NamingSystem NutritionOrder Observation
    ObservationDefinition OperationDefinition OperationOutcome Organization
    OrganizationAffiliation Parameters Patient PaymentNotice PaymentReconciliation Person
    PlanDefinition Practitioner PractitionerRole Procedure Provenance Questionnaire
    QuestionnaireResponse RelatedPerson RequestGroup ResearchDefinition
    ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment
    RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen
    SpecimenDefinition StructureDefinition StructureMap Subscription Substance
    SubstanceNucleicAcid SubstancePolymer SubstanceProtein SubstanceReferenceInformation
    SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest Task
    TerminologyCapabilities TestReport TestScript ValueSet VerificationResult
    VisionPrescription
"""
_R4B_TYPES = """
    AdministrableProductDefinition Citation ClinicalUseDefinition EvidenceReport Ingredient
    ManufacturedItemDefinition MedicinalProductDefinition NutritionProduct
    PackagedProductDefinition RegulatedAuthorization SubscriptionStatus SubscriptionTopic
    SubstanceDefinition
"""
RESOURCE_TYPES = frozenset(_R4_TYPES.split()) | frozenset(_R4B_TYPES.split())


@dataclass(frozen=True, slots=True)
class InputFile:
    """An input file: its path and its path relative to the source it was found in."""

    path: Path
    relative: str


@dataclass(frozen=True, slots=True)
class Entry:
    """One resource read from a file, where it was, and its Bundle fullUrl if any."""

    location: str
    resource: dict[str, Any] | None
    full_url: str | None = None


@dataclass(frozen=True, slots=True)
class FileProblem:
    """Content that could not be read as a resource, where it was, and why.

    ``field`` names the element at fault (``resourceType``) when there is one, ``resource_id``
    the resource's ``id`` when it could be read.
    """

    location: str
    reason: str
    detail: str = ""
    resource_type: str | None = None
    resource_id: str | None = None
    field: str | None = None


@dataclass(frozen=True, slots=True)
class NotResource:
    """A file that is part of an export but holds no resource (a bulk-data manifest)."""

    location: str
    kind: str


def is_bulk_manifest(obj: Any) -> bool:
    """Whether ``obj`` is a FHIR Bulk Data export manifest (``transactionTime`` + ``output``)."""
    return (
        isinstance(obj, dict)
        and "resourceType" not in obj
        and isinstance(obj.get("output"), list)
        and "transactionTime" in obj
    )


def is_fhir_file(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def find_inputs(sources: Iterable[str | Path]) -> list[InputFile]:
    """Every FHIR file named by ``sources`` (files, or folders scanned recursively), once each.

    Raises:
        DataError: a source does not exist, or no FHIR file was found at all.
    """
    found: list[InputFile] = []
    seen: set[Path] = set()
    names: list[str] = []
    for source in sources:
        root = Path(source)
        names.append(str(root))
        if root.is_dir():
            paths = sorted(
                (p for p in root.rglob("*") if p.is_file() and is_fhir_file(p)),
                key=lambda p: p.relative_to(root).as_posix(),
            )
            pairs = [(p, p.relative_to(root).as_posix()) for p in paths]
        elif root.is_file():
            pairs = [(root, root.name)]
        else:
            raise DataError(f"FHIR source {str(root)!r} does not exist; give a file or folder")
        for path, rel in pairs:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                found.append(InputFile(path, rel))
    if not found:
        where = ", ".join(names) or "no sources"
        raise DataError(f"no FHIR files ({', '.join(SUFFIXES)}) found in {where}")
    return found


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes as stored (compressed files are hashed compressed)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(digests: Iterable[tuple[str, str]]) -> str:
    """sha256 over the sorted (relative path, file sha256) pairs: where the files sit does not
    matter, their names and bytes do."""
    payload = json.dumps(sorted(digests), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


# -- streaming -------------------------------------------------------------------------------------
class _ShortReads:
    """A gzip stream whose ``read(n)`` returns what one step decompresses (``read1``).

    A buffered ``read(n)`` on a truncated gzip file raises and loses the bytes it had already
    decompressed; with short reads, everything before the break reaches the JSON parser first.
    """

    def __init__(self, fh: gzip.GzipFile) -> None:
        self._fh = fh

    def read(self, size: int = -1) -> bytes:
        return self._fh.read1(size if size > 0 else _CHUNK) if size else b""

    def __enter__(self) -> _ShortReads:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


def _open(path: Path) -> IO[bytes] | _ShortReads:
    """A file for reading past any UTF-8 byte-order mark; gzip files with short reads."""
    gz = path.name.lower().endswith(".gz")
    fh: IO[bytes] = gzip.GzipFile(path, "rb") if gz else path.open("rb")
    try:
        if fh.read(len(_BOM)) != _BOM:
            fh.seek(0)
    except BaseException:
        fh.close()
        raise
    return _ShortReads(fh) if gz else fh  # type: ignore[arg-type]


def _read_errors(path: Path) -> tuple[type[BaseException], ...]:
    return (EOFError, OSError, zlib.error) if path.name.lower().endswith(".gz") else (OSError,)


def iter_file(path: Path) -> Iterator[Entry | FileProblem | NotResource]:
    """Stream the resources of one file, with problems in place; never raises on content."""
    gz = path.name.lower().endswith(".gz")
    ndjson = path.name.lower().removesuffix(".gz").endswith(".ndjson")
    state = {"where": "start of file"}
    try:
        if _is_blank(path):
            yield FileProblem("whole file", EMPTY_FILE)
            return
        inner = _iter_ndjson(path, state) if ndjson else _iter_json(path, state)
        yield from inner
    except _read_errors(path) as exc:
        reason = BAD_GZIP if gz and not isinstance(exc, PermissionError) else UNREADABLE
        yield FileProblem(state["where"], reason, f"{type(exc).__name__}: {exc}")


def _is_blank(path: Path) -> bool:
    with _open(path) as fh:
        while chunk := fh.read(_CHUNK):
            if chunk.strip():
                return False
    return True


def check_resource(
    obj: Any, location: str, full_url: str | None = None
) -> Iterator[Entry | FileProblem]:
    """Yield ``obj`` as an :class:`Entry` (or a nested Bundle's entries), or a problem."""
    if not isinstance(obj, dict):
        yield FileProblem(location, NOT_OBJECT, type(obj).__name__)
        return
    rtype = obj.get("resourceType")
    rid = obj.get("id") if isinstance(obj.get("id"), str) else None
    if rtype is None:
        yield FileProblem(location, NO_RESOURCE_TYPE, resource_id=rid, field="resourceType")
    elif not (isinstance(rtype, str) and rtype in RESOURCE_TYPES):
        yield FileProblem(
            location, BAD_RESOURCE_TYPE, repr(rtype), resource_id=rid, field="resourceType"
        )
    elif rtype == "Bundle":
        yield Entry(location, obj, full_url)
        entries = obj.get("entry") if isinstance(obj.get("entry"), list) else []
        for i, item in enumerate(entries):
            yield from _bundle_entry(item, f"{location}, entry {i}")
    else:
        yield Entry(location, obj, full_url)


def _bundle_entry(item: Any, location: str) -> Iterator[Entry | FileProblem]:
    if not isinstance(item, dict):
        yield FileProblem(location, NOT_OBJECT, type(item).__name__)
    elif item.get("resource") is None:
        yield Entry(location, None, item.get("fullUrl"))
    else:
        yield from check_resource(item["resource"], location, item.get("fullUrl"))


def _lines(fh: IO[bytes] | _ShortReads) -> Iterator[bytes]:
    """The lines of a stream, read a chunk at a time; a line cut off by a read error is lost."""
    parts: list[bytes] = []
    while chunk := fh.read(_CHUNK):
        if b"\n" not in chunk:
            parts.append(chunk)
            continue
        first, *middle, last = chunk.split(b"\n")
        yield b"".join((*parts, first))
        yield from middle
        parts = [last]
    if tail := b"".join(parts):
        yield tail


def _iter_ndjson(path: Path, state: dict[str, str]) -> Iterator[Entry | FileProblem]:
    with _open(path) as fh:
        for number, raw in enumerate(_lines(fh), start=1):
            state["where"] = f"after line {number}"
            if not raw.strip():
                continue
            location = f"line {number}"
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                try:  # the standard parser also reads NaN and Infinity (as floats)
                    obj = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    yield FileProblem(location, BAD_JSON, str(exc))
                    continue
            yield from check_resource(obj, location)


class _NonFiniteAsStrings:
    """A stream that turns the bare ``NaN``, ``Infinity`` and ``-Infinity`` some exporters write
    (not JSON) into strings, so one such value costs its resource, not the rest of the file.

    Outside JSON strings these words can only be those tokens; string contents (escapes
    included) pass unchanged, and a token or escape cut by a chunk border waits for the next.
    """

    _OUTSIDE = re.compile(rb'"|-?Infinity|NaN')
    _STRING_END = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
    _CUT_TOKEN = re.compile(rb"(?:-|-?I(?:n(?:f(?:i(?:n(?:i(?:t)?)?)?)?)?)?|N(?:a)?)\Z")

    def __init__(self, fh: IO[bytes] | _ShortReads) -> None:
        self._fh = fh
        self._in_string = False
        self._pending = b""

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""
        while True:
            chunk = self._fh.read(size if size > 0 else _CHUNK)
            if not chunk:
                rest, self._pending = self._pending, b""
                return rest
            if out := self._rewrite(self._pending + chunk):
                return out

    def _rewrite(self, data: bytes) -> bytes:
        out: list[bytes] = []
        i, n = 0, len(data)
        self._pending = b""
        while i < n:
            if self._in_string:
                m = self._STRING_END.match(data, i)
                if m is None:
                    tail = data[i:]
                    cut = (len(tail) - len(tail.rstrip(b"\\"))) % 2  # a lone backslash waits
                    out.append(tail[: len(tail) - cut])
                    self._pending = tail[len(tail) - cut :]
                    break
                out.append(data[i : m.end()])
                i, self._in_string = m.end(), False
                continue
            m = self._OUTSIDE.search(data, i)
            if m is None:
                cut = self._CUT_TOKEN.search(data, i)
                end = cut.start() if cut else n
                out.append(data[i:end])
                self._pending = data[end:]
                break
            if m.group() == b'"':
                out.append(data[i : m.end()])
                self._in_string = True
            else:
                out += [data[i : m.start()], b'"', m.group(), b'"']
            i = m.end()
        return b"".join(out)


def _stream(fh: IO[bytes] | _ShortReads, tolerant: bool) -> IO[bytes] | _ShortReads | Any:
    return _NonFiniteAsStrings(fh) if tolerant else fh


def _top_level_type(path: Path, tolerant: bool) -> tuple[str, Any]:
    """("array"|"scalar"|"object", resourceType or None), reading no further than needed."""
    with _open(path) as fh:
        events = ijson.parse(_stream(fh, tolerant), use_float=True)
        prefix, event, _ = next(events)
        if event == "start_array":
            return "array", None
        if event != "start_map":
            return "scalar", None
        for prefix, event, value in events:
            if prefix == "resourceType" and event not in ("start_map", "start_array"):
                return "object", value
            if prefix == "resourceType":
                return "object", {}
    return "object", None


def _iter_json(path: Path, state: dict[str, str]) -> Iterator[Entry | FileProblem | NotResource]:
    try:
        try:
            kind, rtype = _top_level_type(path, tolerant=False)
        except ijson.JSONError:
            kind, rtype = _top_level_type(path, tolerant=True)
    except (ijson.JSONError, UnicodeDecodeError) as exc:
        yield FileProblem("whole file", BAD_JSON, _short(exc))
        return
    if kind != "object":
        yield FileProblem("whole file", NOT_OBJECT, kind)
        return
    if rtype != "Bundle":
        try:
            with _open(path) as fh:
                obj = next(ijson.items(_stream(fh, True), "", use_float=True))
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            yield FileProblem("whole file", BAD_JSON, _short(exc))
            return
        if is_bulk_manifest(obj):
            yield NotResource("whole file", BULK_MANIFEST)
            return
        yield from check_resource(obj, "resource")
        return
    yield Entry("bundle", {"resourceType": "Bundle"})
    done = -1
    for tolerant in (False, True):  # the fast parser first; the tolerant one if it fails
        try:
            with _open(path) as fh:
                items = ijson.items(_stream(fh, tolerant), "entry.item", use_float=True)
                for index, item in enumerate(items):
                    if index > done:
                        state["where"] = f"after entry {index}"
                        done = index
                        yield from _bundle_entry(item, f"entry {index}")
            return
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            if tolerant:
                yield FileProblem(
                    f"after entry {done}" if done >= 0 else "before the first entry",
                    BAD_JSON,
                    _short(exc),
                )


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]
