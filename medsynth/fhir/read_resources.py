"""What a parsed JSON value holds: FHIR resources, Bundle entries, and what keeps them out.

:func:`check_resource` turns a value read from a file into :class:`Entry` items (one per
resource, a Bundle's entries in order, nested Bundles included, walked with a stack rather than
recursion) and :class:`FileProblem` items for what cannot be read: not an object, no or an
unknown ``resourceType``, an element a Bundle or a Bundle entry does not have (``entries``, an
object where ``entry`` should be an array, ``resorce``), or an ``entry`` array on a resource
that is not a Bundle (a Patient carrying the Bundle's entries): each is counted, never dropped
silently. :func:`refused_problem` names a record that was over a parsing limit.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

from medsynth.fhir.read_json import Refused, show

NOT_OBJECT = "not a JSON object"
NO_RESOURCE_TYPE = "missing resourceType"
BAD_RESOURCE_TYPE = "unknown resourceType (not a FHIR R4 resource type)"
UNKNOWN_BUNDLE_ELEMENT = "not an element of Bundle (not read)"
UNKNOWN_ENTRY_ELEMENT = "not an element of Bundle.entry (not read)"
ENTRY_NOT_ARRAY = "Bundle.entry is not an array (entries not read)"
ENTRY_OUTSIDE_BUNDLE = "entry element in a resource that is not a Bundle (not read)"

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


def _elements(names: str) -> frozenset[str]:
    plain = names.split()
    return frozenset(plain) | frozenset(f"_{name}" for name in plain)


# The elements of R4 Bundle and Bundle.entry (with their "_name" primitive extensions).
BUNDLE_ELEMENTS = _elements(
    "resourceType id meta implicitRules language identifier type timestamp total link entry "
    "signature"
)
ENTRY_ELEMENTS = _elements(
    "id extension modifierExtension link fullUrl resource search request response"
)
# Resource types with an element named "entry" of their own (List.entry).
_TYPES_WITH_ENTRY = frozenset({"Bundle", "List"})
_PLAIN_TYPES = RESOURCE_TYPES - {"Bundle"}


def describe(value: Any) -> str:
    """What stands where something else was expected, in a few words."""
    if isinstance(value, list):
        return f"an array of {len(value)} item(s)"
    if isinstance(value, dict):
        return f"an object of {len(value)} member(s)"
    return f"a {type(value).__name__}: {show(value)}"


def check_resource(
    obj: Any, location: str, full_url: str | None = None
) -> Iterator[Entry | FileProblem]:
    """Yield ``obj`` as an :class:`Entry` (and a nested Bundle's entries, in order), or the
    problems that keep it (or parts of it) from being read."""
    rtype = obj.get("resourceType") if type(obj) is dict else None
    if type(rtype) is str and rtype in _PLAIN_TYPES and "entry" not in obj and full_url is None:
        # the common case, quickly
        yield Entry(location, obj)
        return
    todo: list[tuple[bool, Any, str, str | None]] = [(False, obj, location, full_url)]
    while todo:  # a stack, not recursion: Bundles nest as deep as the input
        is_entry, obj, location, full_url = todo.pop()
        if is_entry:
            resource, full_url = yield from _entry(obj, location)
            if resource is None:
                continue
            obj = resource
        if not isinstance(obj, dict):
            yield FileProblem(location, NOT_OBJECT, type(obj).__name__)
            continue
        rtype = obj.get("resourceType")
        rid = obj.get("id") if isinstance(obj.get("id"), str) else None
        if rtype is None:
            yield FileProblem(location, NO_RESOURCE_TYPE, resource_id=rid, field="resourceType")
            continue
        if not (isinstance(rtype, str) and rtype in RESOURCE_TYPES):
            yield FileProblem(
                location, BAD_RESOURCE_TYPE, show(rtype), resource_id=rid, field="resourceType"
            )
            continue
        yield Entry(location, obj, full_url)
        if rtype not in _TYPES_WITH_ENTRY and "entry" in obj:
            yield FileProblem(
                location, ENTRY_OUTSIDE_BUNDLE, describe(obj["entry"]), rtype, rid, "entry"
            )
        if rtype == "Bundle":
            for key in obj:
                if key not in BUNDLE_ELEMENTS:
                    yield FileProblem(
                        location, UNKNOWN_BUNDLE_ELEMENT, describe(obj[key]), rtype, rid, key[:80]
                    )
            entries = obj.get("entry")
            if isinstance(entries, list):
                todo += [
                    (True, item, f"{location}, entry {i}", None)
                    for i, item in reversed(list(enumerate(entries)))
                ]
            elif entries is not None:
                yield FileProblem(location, ENTRY_NOT_ARRAY, describe(entries), rtype, rid, "entry")


def _entry(
    item: Any, location: str
) -> Generator[FileProblem | Entry, None, tuple[Any, str | None]]:
    """The problems of one Bundle entry; returns its resource (None if none) and fullUrl."""
    if not isinstance(item, dict):
        yield FileProblem(location, NOT_OBJECT, type(item).__name__)
        return None, None
    unknown = [k for k in item if k not in ENTRY_ELEMENTS]
    if unknown:
        detail = "; ".join(describe(item[k]) for k in unknown[:3])
        names = ", ".join(k[:40] for k in unknown[:3]) + (", ..." if len(unknown) > 3 else "")
        yield FileProblem(location, UNKNOWN_ENTRY_ELEMENT, detail, field=names)
    url = item.get("fullUrl") if isinstance(item.get("fullUrl"), str) else None
    if item.get("resource") is None:
        yield Entry(location, None, url)
        return None, None
    return item["resource"], url


def check_resource_entry(item: Any, location: str) -> Iterator[Entry | FileProblem]:
    """Yield what a Bundle entry holds (see :func:`check_resource`)."""
    resource, url = yield from _entry(item, location)
    if resource is not None:
        yield from check_resource(resource, location, url)


def refused_problem(exc: Refused, location: str, entry: bool = False) -> FileProblem:
    """A record over a limit as a problem, naming the resource when it was seen in time."""
    res = exc.partial.get("resource") if entry and isinstance(exc.partial, dict) else exc.partial
    res = res if isinstance(res, dict) else {}
    rtype, rid = res.get("resourceType"), res.get("id")
    field = exc.field
    if entry and field and (field == "resource" or field.startswith(("resource.", "resource["))):
        field = field.removeprefix("resource").removeprefix(".") or None
    return FileProblem(
        location,
        exc.reason,
        exc.detail,
        rtype if isinstance(rtype, str) else None,
        rid if isinstance(rid, str) else None,
        field,
    )
