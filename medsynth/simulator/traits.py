"""Public knowledge about measurements: what each LOINC-coded channel looks like.

A :class:`Trait` is one measured quantity (a vital sign or a lab) with its model: a typical value
for a woman aged 50 with body mass index 27, linear shifts for age, sex, body mass index and race,
shifts for each disease scaled by that disease's severity, and three spreads: between patients,
within a patient over time (an Ornstein-Uhlenbeck process with memory ``memory`` days) and
measurement noise. Skewed labs are modelled on a log scale. Traits that share a ``shared``
factor move together (systolic with diastolic pressure, creatinine with urea). A few traits are
``derived`` from others by a formula (BMI from weight and height, total cholesterol from its
fractions, glucose from HbA1c) and are computed in :mod:`medsynth.simulator.physiology`.

A :class:`Group` is a set of channels measured together at one visit (vital signs, a basic
metabolic panel, a lipid panel, a liver panel...), with the chance that a visit includes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from medsynth.schema.model import Channel


@dataclass(frozen=True)
class Trait:
    """A measured quantity and its model (transformed scale when ``log``)."""

    key: str
    codes: tuple[str, ...]
    group: str
    unit: str
    center: float  # on the natural scale
    log: bool = False  # model log(value - floor)
    floor: float = 0.0
    between: float = 0.0  # sd of the patient's own level
    within: float = 0.0  # sd of the patient's slow fluctuation
    noise: float = 0.0  # sd of measurement noise
    memory: float = 365.0  # days for the fluctuation's autocorrelation to fall to 1/e
    male: float = 0.0
    age: float = 0.0  # per year of age above 50
    age_late: float = 0.0  # extra per year of age above 60
    bmi: float = 0.0  # per kg/m2 above 27
    black: float = 0.0
    effects: tuple[tuple[str, float], ...] = ()  # (concept, shift at severity 1)
    shared: str | None = None
    loading: float = 0.0  # share of the between and within spread taken by ``shared``
    share: float = 1.0  # chance the trait is measured when its group is
    units: tuple[tuple[str, float, float], ...] = ()  # (unit, scale, offset) alternatives
    derived: bool = False

    def to_scale(self, value: float) -> float:
        """A natural-scale value on the model scale."""
        return math.log(value - self.floor) if self.log else value

    def conversion(self, channel: Channel) -> tuple[float, float] | None:
        """(scale, offset) from this trait's unit to the channel's, or None if unknown."""
        names = {_fold(channel.unit), *(_fold(u) for u in channel.unit_aliases)}
        for unit, scale, offset in ((self.unit, 1.0, 0.0), *self.units):
            if _fold(unit) in names:
                return scale, offset
        return None


@dataclass(frozen=True)
class Group:
    """Channels measured together, and how often a visit measures them."""

    key: str
    rate: float  # chance per visit, general setting
    clinic_rate: float  # chance per visit in a liver clinic
    first: float  # chance at the first visit (at least ``rate``)
    boosts: tuple[tuple[str, float], ...] = ()  # (concept, added chance when present)


def _fold(unit: str) -> str:
    return unit.replace("[", "").replace("]", "").replace(" ", "").casefold()


def _t(key: str, codes: str, group: str, unit: str, center: float, **kw: object) -> Trait:
    return Trait(key, tuple(codes.split()), group, unit, center, **kw)  # type: ignore[arg-type]


# fmt: off
_MMHG = (("mmHg", 1.0, 0.0),)
_PER_MIN = (("{beats}/min", 1.0, 0.0), ("beats/min", 1.0, 0.0), ("bpm", 1.0, 0.0))
_MEQ = (("meq/L", 1.0, 0.0), ("mEq/L", 1.0, 0.0))
_CHOL = (("mmol/L", 1 / 38.67, 0.0),)
_GDL = (("g/L", 10.0, 0.0),)
_PER_UL = (("10^3/uL", 1.0, 0.0), ("10*9/L", 1.0, 0.0), ("10^9/L", 1.0, 0.0), ("K/uL", 1.0, 0.0))
_UL = (("IU/L", 1.0, 0.0), ("U/l", 1.0, 0.0))

GROUPS: tuple[Group, ...] = (
    Group("vitals", 0.9, 0.75, 1.0),
    Group("bmp", 0.4, 0.5, 0.7, (("diabetes", 0.2), ("ckd", 0.3), ("hypertension", 0.1),
                                 ("chf", 0.2))),
    Group("lipids", 0.2, 0.1, 0.5, (("hyperlipidemia", 0.15), ("diabetes", 0.15), ("chd", 0.15))),
    Group("a1c", 0.12, 0.1, 0.3, (("diabetes", 0.5), ("diabetes_t1", 0.5), ("prediabetes", 0.2))),
    Group("liver", 0.1, 0.95, 0.25, (("nafld", 0.3), ("hcv", 0.3), ("cirrhosis", 0.3))),
    Group("cbc", 0.3, 0.85, 0.5, (("anemia", 0.3), ("ckd", 0.2), ("cirrhosis", 0.2))),
    Group("coag", 0.03, 0.45, 0.05, (("cirrhosis", 0.35), ("afib", 0.3))),
    Group("thyroid", 0.08, 0.05, 0.2, (("hypothyroidism", 0.4),)),
)
GROUP_BY_KEY: dict[str, Group] = {g.key: g for g in GROUPS}

TRAITS: tuple[Trait, ...] = (
    # Vital signs.
    _t("height", "8302-2 8306-3 3137-7", "vitals", "cm", 162.0, share=0.5,
       units=(("m", 0.01, 0.0), ("[in_i]", 1 / 2.54, 0.0), ("in", 1 / 2.54, 0.0)), derived=True),
    _t("weight", "29463-7 3141-9", "vitals", "kg", 73.0,
       units=(("[lb_av]", 2.20462, 0.0), ("lb", 2.20462, 0.0), ("g", 1000.0, 0.0)), derived=True),
    _t("bmi", "39156-5", "vitals", "kg/m2", 27.0, derived=True),
    _t("systolic_bp", "8480-6", "vitals", "mm[Hg]", 122.0, between=10.0, within=8.0,
       noise=5.0, memory=540.0, male=4.0, age=0.5, bmi=0.5, black=4.0,
       effects=(("hypertension", 14.0), ("ckd", 3.0), ("diabetes", 2.0)),
       shared="bp", loading=0.7, units=_MMHG),
    _t("diastolic_bp", "8462-4", "vitals", "mm[Hg]", 77.0, between=7.0, within=5.0, noise=4.0,
       memory=540.0, male=3.0, age=0.25, age_late=-0.6, bmi=0.3, black=2.0,
       effects=(("hypertension", 7.0),), shared="bp", loading=0.7, units=_MMHG, derived=True),
    _t("heart_rate", "8867-4", "vitals", "/min", 73.0, between=8.0, within=5.0, noise=4.0,
       memory=240.0, male=-3.0, age=-0.05, bmi=0.3,
       effects=(("afib", 10.0), ("chf", 5.0), ("copd", 6.0), ("anemia", 4.0)), units=_PER_MIN),
    _t("respiratory_rate", "9279-1", "vitals", "/min", 16.0, between=1.5, within=1.0, noise=1.5,
       memory=120.0, effects=(("copd", 3.0), ("chf", 2.0)),
       units=(("{breaths}/min", 1.0, 0.0), ("breaths/min", 1.0, 0.0))),
    _t("temperature", "8310-5", "vitals", "Cel", 36.8, between=0.2, within=0.2, noise=0.15,
       memory=30.0, units=(("[degF]", 1.8, 32.0), ("degF", 1.8, 32.0), ("C", 1.0, 0.0))),
    _t("oxygen_saturation", "59408-5 2708-6", "vitals", "%", 97.5, between=1.0, within=0.8,
       noise=0.8, memory=180.0, age=-0.03, effects=(("copd", -3.0), ("chf", -1.5))),
    # Basic metabolic panel.
    _t("glucose", "2339-0 2345-7 41653-7", "bmp", "mg/dL", 97.0,
       units=(("mmol/L", 1 / 18.016, 0.0),), derived=True),
    _t("urea_nitrogen", "6299-2 3094-0", "bmp", "mg/dL", 14.0, log=True, between=0.2,
       within=0.12, noise=0.08, male=0.12, age=0.008,
       effects=(("ckd", 0.55), ("chf", 0.25)), shared="kidney", loading=0.6,
       units=(("mmol/L", 0.357, 0.0),)),
    _t("creatinine", "38483-4 2160-0", "bmp", "mg/dL", 0.78, log=True, between=0.14,
       within=0.06, noise=0.05, male=0.25, age=0.003, black=0.1,
       effects=(("ckd", 0.45), ("diabetes", 0.03), ("chf", 0.08)), shared="kidney",
       loading=0.6, units=(("umol/L", 88.4, 0.0),)),
    _t("egfr", "33914-3 62238-1 98979-8 48642-3 48643-1 69405-9", "bmp", "mL/min/{1.73_m2}",
       90.0, units=(("mL/min/1.73m2", 1.0, 0.0), ("mL/min", 1.0, 0.0)), derived=True),
    _t("calcium", "49765-1 17861-6", "bmp", "mg/dL", 9.4, between=0.25, within=0.2, noise=0.15,
       age=-0.003, effects=(("ckd", -0.2),), units=(("mmol/L", 0.2495, 0.0),)),
    _t("sodium", "2947-0 2951-2", "bmp", "mmol/L", 139.5, between=1.2, within=1.3, noise=1.0,
       memory=240.0, age=-0.02, effects=(("chf", -2.0), ("diabetes", -0.5), ("cirrhosis", -2.0)),
       shared="electrolytes", loading=0.6, units=_MEQ),
    _t("potassium", "6298-4 2823-3", "bmp", "mmol/L", 4.2, between=0.22, within=0.22,
       noise=0.15, memory=240.0, effects=(("ckd", 0.35), ("chf", 0.1)), units=_MEQ),
    _t("chloride", "2069-3 2075-0", "bmp", "mmol/L", 102.5, between=1.5, within=1.5,
       noise=1.0, memory=240.0, effects=(("ckd", 1.0),), shared="electrolytes", loading=0.6,
       units=_MEQ),
    _t("carbon_dioxide", "20565-8 2028-9 1963-8", "bmp", "mmol/L", 25.5, between=1.5,
       within=1.5, noise=1.0, memory=240.0, effects=(("ckd", -2.0), ("copd", 2.0)), units=_MEQ),
    # Lipids: total cholesterol is derived from LDL, HDL and triglycerides.
    _t("ldl", "18262-6 13457-7 2089-1", "lipids", "mg/dL", 118.0, between=28.0, within=10.0,
       noise=6.0, memory=540.0, male=2.0, age=0.4, age_late=-1.2, bmi=0.8,
       effects=(("hyperlipidemia", 22.0), ("diabetes", -8.0), ("chd", -12.0)),
       units=_CHOL),
    _t("hdl", "2085-9", "lipids", "mg/dL", 58.0, log=True, between=0.18, within=0.07,
       noise=0.04, male=-0.2, age=0.002, bmi=-0.012,
       effects=(("diabetes", -0.08), ("hyperlipidemia", -0.05)), units=_CHOL),
    _t("triglycerides", "2571-8", "lipids", "mg/dL", 105.0, log=True, between=0.38,
       within=0.2, noise=0.1, memory=365.0, male=0.15, age=0.004, bmi=0.025,
       effects=(("diabetes", 0.3), ("hyperlipidemia", 0.3), ("nafld", 0.2)),
       units=(("mmol/L", 1 / 88.57, 0.0),)),
    _t("cholesterol_total", "2093-3", "lipids", "mg/dL", 190.0, units=_CHOL, derived=True),
    # Glycaemia: HbA1c on log(value - 3.5).
    _t("hba1c", "4548-4 17856-6 4549-2", "a1c", "%", 5.35, log=True, floor=3.5,
       between=0.12, within=0.05, noise=0.025, memory=365.0, age=0.0035, bmi=0.012,
       black=0.05, effects=(("prediabetes", 0.26), ("diabetes", 0.75), ("diabetes_t1", 0.85)),
       units=(("mmol/mol", 10.929, -23.5),)),
    # Liver panel: inflammation ("hepatitis") and cholestasis factors.
    _t("alt", "1742-6 1743-4 1744-2 76625-3", "liver", "U/L", 19.0, log=True, between=0.3,
       within=0.2, noise=0.08, memory=180.0, male=0.3, age=-0.004, bmi=0.02,
       effects=(("nafld", 0.7), ("hcv", 0.9), ("hbv", 0.6), ("alcohol_liver", 0.4),
                ("pbc", 0.6), ("psc", 0.6), ("cirrhosis", 0.1)),
       shared="hepatitis", loading=0.6, units=_UL),
    _t("ast", "1920-8 30239-8", "liver", "U/L", 21.0, log=True, between=0.25, within=0.18,
       noise=0.08, memory=180.0, male=0.15,
       effects=(("nafld", 0.45), ("hcv", 0.8), ("hbv", 0.5), ("alcohol_liver", 0.9),
                ("pbc", 0.55), ("psc", 0.5), ("cirrhosis", 0.45)),
       shared="hepatitis", loading=0.6, units=_UL),
    _t("alk_phos", "6768-6", "liver", "U/L", 72.0, log=True, between=0.25, within=0.1,
       noise=0.05, memory=240.0, male=0.05, age=0.004,
       effects=(("pbc", 1.1), ("psc", 1.2), ("cirrhosis", 0.25), ("nafld", 0.1)),
       shared="cholestasis", loading=0.6, units=_UL),
    _t("ggt", "2324-2", "liver", "U/L", 20.0, log=True, between=0.4, within=0.2, noise=0.06,
       memory=180.0, male=0.35, bmi=0.02,
       effects=(("pbc", 1.4), ("psc", 1.4), ("nafld", 0.7), ("alcohol_liver", 1.0),
                ("cirrhosis", 0.6), ("hcv", 0.7)),
       shared="cholestasis", loading=0.5, share=0.75, units=_UL),
    _t("bilirubin", "1975-2 42719-5", "liver", "mg/dL", 0.55, log=True, between=0.35,
       within=0.2, noise=0.08, memory=180.0, male=0.2,
       effects=(("cirrhosis", 0.4), ("pbc", 0.2), ("psc", 0.2), ("alcohol_liver", 0.2)),
       units=(("umol/L", 17.1, 0.0),)),
    _t("albumin", "1751-7 61151-7 2862-1", "liver", "g/dL", 4.3, between=0.22, within=0.15,
       noise=0.1, memory=240.0, age=-0.008, male=0.1,
       effects=(("cirrhosis", -0.35), ("ckd", -0.1), ("chf", -0.1), ("pbc", -0.1)),
       units=_GDL),
    _t("globulin", "10834-0", "liver", "g/dL", 2.9, between=0.3, within=0.15, noise=0.1,
       memory=240.0, effects=(("hcv", 0.4), ("cirrhosis", 0.3), ("pbc", 0.2)), units=_GDL),
    _t("total_protein", "2885-2", "liver", "g/dL", 7.2, units=_GDL, derived=True),
    # Blood counts and coagulation.
    _t("platelets", "777-3 26515-7 49497-1", "cbc", "10*3/uL", 255.0, log=True, between=0.2,
       within=0.1, noise=0.06, memory=240.0, male=-0.1, age=-0.003,
       effects=(("cirrhosis", -0.45), ("portal_hypertension", -0.15), ("splenomegaly", -0.2),
                ("hcv", -0.1)), units=_PER_UL),
    _t("hemoglobin", "718-7", "cbc", "g/dL", 13.5, between=0.9, within=0.5, noise=0.2,
       male=1.5, effects=(("anemia", -2.0), ("ckd", -0.8), ("cirrhosis", -0.8)), units=_GDL),
    _t("leukocytes", "6690-2 26464-8", "cbc", "10*3/uL", 6.5, log=True, between=0.2,
       within=0.15, noise=0.05, memory=90.0, effects=(("cirrhosis", -0.15),), units=_PER_UL),
    _t("prothrombin_time", "5902-2", "coag", "s", 12.2, log=True, between=0.04, within=0.03,
       noise=0.03, memory=240.0, effects=(("cirrhosis", 0.1),)),
    _t("inr", "6301-6 34714-6", "coag", "{INR}", 1.0, units=(("1", 1.0, 0.0),), derived=True),
    _t("tsh", "3016-3 11580-8", "thyroid", "m[IU]/L", 1.8, log=True, between=0.4, within=0.25,
       noise=0.08, memory=180.0, age=0.005, effects=(("hypothyroidism", 0.6),),
       units=(("mIU/L", 1.0, 0.0), ("u[IU]/mL", 1.0, 0.0), ("uIU/mL", 1.0, 0.0))),
)
# fmt: on
TRAIT_BY_KEY: dict[str, Trait] = {t.key: t for t in TRAITS}
TRAIT_BY_CODE: dict[str, Trait] = {code: t for t in TRAITS for code in t.codes}


def trait_for_channel(channel: Channel) -> tuple[Trait, float, float] | None:
    """The known trait of a channel (by LOINC code) and the unit conversion, if both known."""
    for code in (channel.code, *channel.aliases):
        trait = TRAIT_BY_CODE.get(code)
        if trait is not None:
            conv = trait.conversion(channel)
            if conv is not None:
                return trait, conv[0], conv[1]
    return None


def generic_trait(channel: Channel) -> Trait:
    """A trait for a channel the simulator does not know, centred in its normal range.

    The normal range (or, without one, the middle quarter of ``[min, max]``) is taken as about
    four population standard deviations. Wide positive ranges are modelled on a log scale.
    """
    lo, hi = channel.normal or (
        channel.min + 0.375 * (channel.max - channel.min),
        channel.min + 0.625 * (channel.max - channel.min),
    )
    log = lo > 0 and channel.min > 0 and channel.max / channel.min > 20
    if log:
        center, sd = math.sqrt(lo * hi), math.log(hi / lo) / 4
    else:
        center, sd = (lo + hi) / 2, (hi - lo) / 4
    group = "vitals" if channel.category == "vital-signs" else f"lab:{channel.name}"
    return Trait(
        key=f"channel:{channel.name}",
        codes=(channel.code,),
        group=group,
        unit=channel.unit,
        center=center,
        log=log,
        between=0.65 * sd,
        within=0.5 * sd,
        noise=0.35 * sd,
        memory=180.0,
    )


def generic_group(trait: Trait) -> Group:
    """Group of a trait whose group is not in :data:`GROUPS` (an unknown lab)."""
    return GROUP_BY_KEY.get(trait.group) or Group(trait.group, 0.35, 0.35, 0.6)
