"""What the simulator makes of a dataset schema: known concepts, traits and visit groups.

A :class:`Plan` is built once per schema from its public content only. Each condition code is
matched to a known disease concept (SNOMED CT codes exactly, ICD-10-CM codes by prefix) or gets
a generic concept of its own; each channel is matched by LOINC code and unit to a known trait
(with the conversion into the channel's unit) or gets a generic trait centred in its normal
range; channels are grouped into what one visit measures together (a schema measurement group always
whole). A schema whose conditions
(or, without conditions, channels) are mostly about the liver is simulated as a liver clinic:
sicker patients, more frequent liver panels, longer follow-up.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from medsynth.schema.model import Channel, DatasetSchema
from medsynth.simulator.concepts import (
    CONCEPT_BY_KEY,
    CONCEPTS,
    Concept,
    concept_for_code,
    generic_concept,
)
from medsynth.simulator.traits import Trait, generic_group, generic_trait, trait_for_channel
from medsynth.simulator.visits import GroupPlan


@dataclass(frozen=True)
class ChannelPlan:
    """A schema channel, the trait that produces it and the conversion into its unit."""

    channel: Channel
    trait: Trait
    scale: float = 1.0
    offset: float = 0.0
    known: bool = True


@dataclass(frozen=True)
class Plan:
    """Everything the simulator needs from a schema, resolved once."""

    schema: DatasetSchema
    concepts: tuple[Concept, ...]  # known concepts in dependency order, then generic ones
    condition_codes: tuple[tuple[str, str], ...]  # (schema code, concept key)
    channels: tuple[ChannelPlan, ...]  # in schema order
    groups: tuple[GroupPlan, ...]
    clinic: bool


def _channel_plan(channel: Channel) -> ChannelPlan:
    found = trait_for_channel(channel)
    if found is None:
        return ChannelPlan(channel, generic_trait(channel), known=False)
    trait, scale, offset = found
    return ChannelPlan(channel, trait, scale, offset)


def _groups(channels: tuple[ChannelPlan, ...], schema: DatasetSchema) -> tuple[GroupPlan, ...]:
    """Visit groups: the traits' own groups, except that the channels of a schema measurement
    group form one group of their own, always measured whole (every share 1)."""
    members: dict[str, list[int]] = {}
    for pos, cp in enumerate(channels):
        measured = schema.group_of_channel.get(cp.channel.name)
        key = cp.trait.group if measured is None else f"measured:{measured.name}"
        members.setdefault(key, []).append(pos)
    plans = []
    for key, pos in members.items():
        group = generic_group(channels[pos[0]].trait)
        whole = key.startswith("measured:")
        plans.append(
            GroupPlan(
                replace(group, key=key) if whole else group,
                tuple(pos),
                tuple(1.0 if whole else channels[i].trait.share for i in pos),
                tuple(channels[i].channel.name for i in pos),
            )
        )
    return tuple(plans)


def _is_clinic(codes: tuple[tuple[str, str], ...], channels: tuple[ChannelPlan, ...]) -> bool:
    known = [CONCEPT_BY_KEY[key] for _, key in codes if key in CONCEPT_BY_KEY]
    if known:
        return sum(c.liver for c in known) > len(known) / 2
    groups = [cp.trait.group for cp in channels if cp.known]
    return bool(groups) and groups.count("liver") > len(groups) / 2


def make_plan(schema: DatasetSchema) -> Plan:
    """Resolve a schema's conditions and channels against the simulator's public knowledge."""
    codes: list[tuple[str, str]] = []
    generic: list[Concept] = []
    for cond in schema.conditions:
        key = next(
            (
                k
                for code in (cond.code, *cond.aliases)
                if (k := concept_for_code(code, schema.condition_system)) is not None
            ),
            None,
        )
        if key is None:
            concept = generic_concept(cond.code)
            generic.append(concept)
            key = concept.key
        codes.append((cond.code, key))
    channels = tuple(_channel_plan(c) for c in schema.channels)
    return Plan(
        schema=schema,
        concepts=CONCEPTS + tuple(generic),
        condition_codes=tuple(codes),
        channels=channels,
        groups=_groups(channels, schema),
        clinic=_is_clinic(tuple(codes), channels),
    )
