"""Public knowledge about diagnoses: who has them, how they link, how they progress.

A :class:`Concept` is a disease as the simulator understands it, recognised in a schema by its
SNOMED CT codes or ICD-10-CM code prefixes. Its prevalence at time zero is a logistic function of
age, sex, body mass index, race, ethnicity and other concepts (diabetes raises the odds of
hypertension, obesity those of diabetes); new cases arise during the horizon at a yearly hazard
proportional to that prevalence. Complications of cirrhosis appear when the parent's severity,
which grows over time, crosses a per-patient threshold, so they follow the labs. Coefficients
are rounded figures of the kind found in public health statistics (NHANES-style prevalence by
age); they aim at plausibility, not at any one population.
"""

from __future__ import annotations

from dataclasses import dataclass

from medsynth.schema.model import SNOMED


@dataclass(frozen=True)
class Concept:
    """A disease: codes that name it, its prevalence model, links and progression.

    Log-odds are for a woman aged 50 with body mass index 27 and none of the risk concepts.
    """

    key: str
    snomed: tuple[str, ...] = ()
    icd10: tuple[str, ...] = ()  # code prefixes, compared without dots
    logit: float = -3.2
    age: float = 0.02  # log-odds per year of age
    male: float = 0.0
    bmi: float = 0.0  # log-odds per kg/m2 above 27
    black: float = 0.0
    hispanic: float = 0.0
    risks: tuple[tuple[str, float], ...] = ()  # (concept, log-odds shift when present)
    incidence: float = 0.08  # yearly hazard of a new case, as a fraction of the prevalence
    clinic_logit: float | None = None  # intercept in a liver clinic
    liver: bool = False
    progression: float = 0.0  # mean yearly gain in severity (severity is about 1 at onset)
    severity_sd: float = 0.3  # spread of severity between patients (log scale)
    parent: str | None = None  # a complication: appears when the parent's severity crosses
    threshold: float = 0.0  # mean severity of the parent at which the complication appears
    mortality: float = 1.0  # hazard ratio of death
    excluded_by: str | None = None  # absent when this concept is present at time zero
    bmi_threshold: float | None = None  # defined by body mass index instead of a logistic model
    chronic: bool = True  # counts towards visit frequency


def _c(key: str, snomed: str = "", icd10: str = "", **kw: object) -> Concept:
    return Concept(key, tuple(snomed.split()), tuple(icd10.split()), **kw)  # type: ignore[arg-type]


# Ordered so that every concept comes after the concepts it depends on.
# fmt: off
CONCEPTS: tuple[Concept, ...] = (
    _c("obesity", "414916001 162864005 414915002", "E66 Z68.3", bmi_threshold=30.0),
    _c("severe_obesity", "408512008 238136002", "E66.01 Z68.4", bmi_threshold=40.0,
       mortality=1.3),
    _c("prediabetes", "15777000 714628002 9414007", "R73.0", logit=-2.3, age=0.03, bmi=0.08,
       black=0.2, hispanic=0.2, incidence=0.1, excluded_by="diabetes", chronic=False),
    _c("diabetes", "44054006 73211009 313436004", "E11 E13 E14", logit=-2.9, age=0.045,
       male=0.2, bmi=0.09, black=0.4, hispanic=0.4, risks=(("prediabetes", 1.2),),
       progression=0.02, severity_sd=0.35, mortality=1.4),
    _c("diabetes_t1", "46635009", "E10", logit=-5.3, age=-0.01, incidence=0.01,
       severity_sd=0.3, mortality=1.6),
    _c("hyperlipidemia", "55822004 13644009 267432004 398036000", "E78", logit=-1.3,
       age=0.05, male=0.3, bmi=0.04, risks=(("diabetes", 0.7),)),
    _c("hypertension", "38341003 59621000 1201005", "I10 I11 I12 I13 I15 I16", logit=-0.6,
       age=0.065, male=0.3, bmi=0.08, black=0.6,
       risks=(("diabetes", 0.7), ("diabetes_t1", 0.5)), mortality=1.1),
    _c("ckd", "709044004 431855005 431856006 433144002 431857002 433146000 46177005", "N18",
       logit=-3.7, age=0.07, black=0.4,
       risks=(("diabetes", 1.0), ("diabetes_t1", 1.0), ("hypertension", 0.8)),
       progression=0.1, severity_sd=0.35, mortality=1.6),
    _c("chd", "53741008 414545008 22298006 399211009", "I20 I21 I22 I24 I25", logit=-4.1,
       age=0.075, male=0.7,
       risks=(("diabetes", 0.6), ("hypertension", 0.5), ("hyperlipidemia", 0.5), ("ckd", 0.3)),
       mortality=1.6),
    _c("chf", "88805009 42343007 84114007 85232009 703272007", "I50 I11.0 I13.0 I13.2",
       logit=-5.4, age=0.08, male=0.3, bmi=0.04,
       risks=(("chd", 1.2), ("hypertension", 0.6), ("diabetes", 0.5), ("ckd", 0.6)),
       progression=0.05, mortality=2.5),
    _c("afib", "49436004 5370000", "I48", logit=-5.0, age=0.09, male=0.5, bmi=0.03,
       risks=(("hypertension", 0.5), ("chf", 1.2), ("chd", 0.4)), mortality=1.5),
    _c("stroke", "230690007 422504002 266257000", "I61 I63 I64 Z86.73", logit=-5.2, age=0.08,
       male=0.2, risks=(("hypertension", 0.7), ("diabetes", 0.5), ("afib", 0.9), ("chd", 0.4)),
       mortality=1.8),
    _c("copd", "87433001 13645005 185086009 63480004", "J41 J42 J43 J44", logit=-3.7,
       age=0.055, male=0.1, progression=0.04, mortality=1.8),
    _c("asthma", "195967001 233678006", "J45", logit=-2.6, age=-0.01, male=-0.35, bmi=0.03),
    _c("hypothyroidism", "40930008 83664006", "E02 E03", logit=-2.8, age=0.02, male=-1.5),
    _c("depression", "35489007 370143000 36923009", "F32 F33", logit=-2.0, age=-0.01,
       male=-0.6, chronic=False),
    _c("sleep_apnea", "78275009 73430006", "G47.3", logit=-3.3, age=0.03, male=0.8, bmi=0.1),
    _c("gout", "90560007", "M10", logit=-4.6, age=0.04, male=1.2, bmi=0.05,
       risks=(("ckd", 0.8),)),
    _c("osteoporosis", "64859006", "M80 M81", logit=-4.4, age=0.09, male=-1.6, bmi=-0.06,
       mortality=1.1),
    # Liver: general-population odds, and clinic odds for a cohort followed for liver disease.
    _c("nafld", "197321007 442685003", "K76.0 K75.81", logit=-3.4, age=0.01, male=0.2,
       bmi=0.1, hispanic=0.4, risks=(("diabetes", 0.7),), clinic_logit=-0.7, liver=True,
       progression=0.02),
    _c("alcohol_liver", "41309000", "K70", logit=-5.5, age=0.01, male=1.0, clinic_logit=-2.2,
       liver=True, mortality=1.5),
    _c("hcv", "128302006 50711007", "B17.1 B18.2 B19.2", logit=-4.6, age=0.01, male=0.5,
       clinic_logit=-1.5, liver=True, mortality=1.3),
    _c("hbv", "61977001 66071002", "B16 B18.0 B18.1 B19.1", logit=-5.8, male=0.4,
       clinic_logit=-2.8, liver=True),
    _c("pbc", "31712002", "K74.3", logit=-8.0, age=0.03, male=-2.0, clinic_logit=-1.9,
       liver=True, progression=0.06, severity_sd=0.4, mortality=1.5),
    _c("psc", "82403002", "K83.01", logit=-8.5, male=0.7, clinic_logit=-3.5, liver=True,
       progression=0.06, mortality=1.5),
    _c("cirrhosis", "19943007 420054005 266468003", "K74.4 K74.5 K74.6 K70.3", logit=-5.6,
       age=0.04, male=0.4, clinic_logit=-4.2, liver=True, incidence=0.04,
       risks=(("nafld", 1.5), ("alcohol_liver", 2.5), ("hcv", 2.5), ("hbv", 2.0),
              ("pbc", 1.5), ("psc", 1.5), ("diabetes", 0.3)),
       progression=0.09, severity_sd=0.35, mortality=2.5),
    _c("portal_hypertension", "34742003", "K76.6", logit=-9.0, parent="cirrhosis",
       threshold=1.35, liver=True, mortality=1.3),
    _c("varices", "28670008 17709002", "I85 I86.4", logit=-9.0, parent="cirrhosis",
       threshold=1.5, liver=True, mortality=1.3),
    _c("splenomegaly", "16294009", "R16.1 R16.2", logit=-6.5, parent="cirrhosis",
       threshold=1.45, liver=True),
    _c("ascites", "389026000", "R18", logit=-7.5, parent="cirrhosis", threshold=1.9,
       liver=True, mortality=3.0),
    _c("encephalopathy", "13920009", "K72 K76.82", logit=-9.0, parent="cirrhosis",
       threshold=2.1, liver=True, mortality=3.0),
    _c("liver_cancer", "187769009 25370001", "C22", logit=-9.0, parent="cirrhosis",
       threshold=2.0, liver=True, mortality=4.0),
    _c("anemia", "271737000 87522002 234347009", "D50 D51 D52 D53 D55 D58 D59 D61 D63 D64",
       logit=-3.2, age=0.02, male=-0.7,
       risks=(("ckd", 1.2), ("chf", 0.5), ("cirrhosis", 1.0), ("hcv", 0.3)), mortality=1.2),
)
# fmt: on

CONCEPT_BY_KEY: dict[str, Concept] = {c.key: c for c in CONCEPTS}
_SNOMED_INDEX: dict[str, str] = {code: c.key for c in CONCEPTS for code in c.snomed}
_ICD_PREFIXES: tuple[tuple[str, str], ...] = tuple(
    sorted(
        ((p.replace(".", "").upper(), c.key) for c in CONCEPTS for p in c.icd10),
        key=lambda item: -len(item[0]),
    )
)


def concept_for_code(code: str, system: str) -> str | None:
    """The concept a condition code names in ``system``, or None when it is not known.

    SNOMED CT codes match exactly; ICD-10(-CM) codes match their longest known prefix, so
    ``K74.3`` is primary biliary cholangitis while ``K74.60`` is cirrhosis.
    """
    if system == SNOMED:
        return _SNOMED_INDEX.get(code)
    if "icd-10" in system.lower() or "icd10" in system.lower():
        folded = code.replace(".", "").strip().upper()
        for prefix, key in _ICD_PREFIXES:
            if folded.startswith(prefix):
                return key
        return None
    return _SNOMED_INDEX.get(code)


def generic_concept(code: str) -> Concept:
    """A condition the simulator does not know: small prevalence, rising gently with age."""
    return Concept(key=f"code:{code}", logit=-3.2, age=0.02, incidence=0.08, chronic=False)
