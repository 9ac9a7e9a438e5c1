"""The event base class, the envelope and the registry of declared event types."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

# Money travels as a decimal string, never a float.
Money = Annotated[Decimal, PlainSerializer(lambda v: format(v, "f"), return_type=str)]

_REGISTRY: dict[str, type[Event]] = {}


class Event(BaseModel):
    """An event's data; each subclass declares its routing key (`event_type`) once."""

    # Tolerant reader: a consumer on an older version ignores fields it does not know.
    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    event_type: ClassVar[str]
    version: ClassVar[int] = 1

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        event_type = cls.__dict__.get("event_type")
        if event_type is None:
            return
        if event_type in _REGISTRY and _REGISTRY[event_type] is not cls:
            raise TypeError(f"event type {event_type!r} declared twice")
        _REGISTRY[event_type] = cls


E = TypeVar("E", bound=Event)


class Envelope(BaseModel, Generic[E]):
    """What travels on the bus: the event's data plus who, when and for which tenant."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    version: int
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    producer: str
    tenant_id: uuid.UUID | None = None
    correlation_id: str | None = None
    data: E

    @classmethod
    def wrap(
        cls,
        event: E,
        *,
        producer: str,
        tenant_id: uuid.UUID | None,
        correlation_id: str | None = None,
    ) -> Envelope[E]:
        """Wraps an event's data in a new envelope."""
        envelope_cls: Any = _envelope_class(type(event))
        return envelope_cls(
            type=event.event_type,
            version=event.version,
            producer=producer,
            tenant_id=tenant_id,
            correlation_id=correlation_id,
            data=event,
        )


@functools.cache
def _envelope_class(event_cls: type[Event]) -> Any:
    # Pydantic caches parametrised generics too, but its lookup cost more per event than
    # the envelope itself on the registrar's hot path.
    return Envelope[event_cls]  # type: ignore[valid-type]


def event_types() -> dict[str, type[Event]]:
    """Every declared event type by its routing key."""
    return dict(sorted(_REGISTRY.items()))


def event_class(event_type: str) -> type[Event]:
    """The declared class for a routing key; KeyError if none."""
    return _REGISTRY[event_type]
