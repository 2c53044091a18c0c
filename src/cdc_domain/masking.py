"""PII/PHI masking: classify columns by name, then redact, hash or truncate their values.

Primary key columns are left alone unless a rule names them explicitly: two different
keys masked to the same value (redaction, or keep-last-4) would merge distinct rows in
every destination, silently. Hashing keeps keys distinct, so a key may be masked with
``hash`` when a rule says so; other actions on keys are refused.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs

from cdc_domain.events import ChangeEvent, CollectionDelta

__all__ = [
    "DEFAULT_PATTERNS",
    "DataClass",
    "MaskAction",
    "MaskOnce",
    "MaskRule",
    "MaskingConfigError",
    "MaskingPolicy",
]

REDACTED = "[REDACTED]"

_T = TypeVar("_T")


class MaskingConfigError(ValueError):
    """A masking configuration that cannot be applied safely."""


class DataClass(enum.Enum):
    PII = "pii"
    PHI = "phi"
    NONE = "none"


class MaskAction(enum.Enum):
    REDACT = "redact"
    HASH = "hash"
    PARTIAL = "partial"
    PASS = "pass"


DEFAULT_PATTERNS: dict[DataClass, tuple[str, ...]] = {
    DataClass.PHI: (
        "medical_record",
        "patient_id",
        "diagnosis",
        "prescription",
        "medication",
        "blood_type",
    ),
    DataClass.PII: (
        "email",
        "phone",
        "ssn",
        "social_security",
        "credit_card",
        "address",
        "ip_address",
        "ip_addr",
    ),
}

DEFAULT_ACTIONS: dict[DataClass, MaskAction] = {
    DataClass.PII: MaskAction.REDACT,
    DataClass.PHI: MaskAction.REDACT,
    DataClass.NONE: MaskAction.PASS,
}


def _word_pattern(word: str) -> re.Pattern[str]:
    # "email" matches email, user_email and emailaddress but not "remailer" mid-word
    # splits: names are snake_case in practice, so match on the token's boundaries.
    return re.compile(rf"(?:^|_){re.escape(word)}|{re.escape(word)}(?:_|$)", re.IGNORECASE)


@attrs.frozen(slots=True)
class MaskRule:
    """Columns matching ``pattern`` (a regex on the column name) belong to ``data_class``.

    ``tables`` limits the rule to ``keyspace.table`` names (empty: every table);
    ``action`` overrides the class's action for these columns.
    """

    pattern: re.Pattern[str]
    data_class: DataClass
    tables: frozenset[str] = frozenset()
    action: MaskAction | None = None

    def matches(self, qualified_table: str, column: str) -> bool:
        if self.tables and qualified_table not in self.tables:
            return False
        return self.pattern.search(column) is not None


_CONFIG_KEYS = frozenset({"rules", "replace_defaults", "actions", "mask_key_columns"})
_RULE_KEYS = frozenset({"field", "pattern", "class", "tables", "action"})


def _rule(item: Mapping[str, Any]) -> MaskRule:
    """One rule from config: ``field`` (a name word, as the defaults use) or ``pattern``
    (a regex), its ``class``, and optional ``tables`` and ``action``."""
    unknown = set(item) - _RULE_KEYS
    if unknown:
        raise MaskingConfigError(f"a rule has unknown key(s) {', '.join(sorted(unknown))}")
    if "field" in item:
        pattern = _word_pattern(str(item["field"]))
    elif "pattern" in item:
        pattern = re.compile(str(item["pattern"]), re.IGNORECASE)
    else:
        raise MaskingConfigError(f"a rule needs 'field' or 'pattern': {dict(item)}")
    action = item.get("action")
    return MaskRule(
        pattern=pattern,
        data_class=DataClass(item.get("class", "pii")),
        tables=frozenset(item.get("tables", []) or []),
        action=MaskAction(action) if action else None,
    )


def _default_rules() -> tuple[MaskRule, ...]:
    return tuple(
        MaskRule(_word_pattern(word), data_class)
        for data_class, words in DEFAULT_PATTERNS.items()
        for word in words
    )


@attrs.frozen(slots=True)
class MaskingPolicy:
    """Rules are tried in order; the first that matches classifies the column.

    ``hmac_key`` is required as soon as any class or rule hashes: without a key, a hash
    of a low-entropy value (a phone number) is reversible by brute force.
    """

    rules: tuple[MaskRule, ...] = attrs.field(factory=_default_rules)
    actions: Mapping[DataClass, MaskAction] = attrs.field(factory=lambda: dict(DEFAULT_ACTIONS))
    hmac_key: bytes | None = attrs.field(default=None, repr=False)
    key_columns: frozenset[str] = frozenset()
    # (table, column) -> its class and action: every event asks for each of its columns,
    # and trying every rule's regex each time was the policy's whole cost. The rules are
    # frozen, so the answers never change.
    _classified: dict[tuple[str, str], tuple[DataClass, MaskAction]] = attrs.field(
        init=False, factory=dict, eq=False, repr=False
    )
    # table -> column -> action, what masking an event asks for each of its columns: one
    # lookup by name instead of building a (table, column) key per column.
    _actions: dict[str, dict[str, MaskAction]] = attrs.field(
        init=False, factory=dict, eq=False, repr=False
    )
    # Tables with a key column a user chose to mask: the only ones whose keys are looked at.
    _key_tables: frozenset[str] = attrs.field(init=False, eq=False, repr=False)

    @_key_tables.default
    def _tables_of_key_columns(self) -> frozenset[str]:
        return frozenset(name.rpartition(".")[0] for name in self.key_columns)

    def __attrs_post_init__(self) -> None:
        uses_hash = MaskAction.HASH in self.actions.values() or any(
            r.action is MaskAction.HASH for r in self.rules
        )
        if uses_hash and not self.hmac_key:
            raise MaskingConfigError("masking.hmac_key is required when an action is 'hash'")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], hmac_key: bytes | None) -> MaskingPolicy:
        """Build a policy from a rules document (the masking YAML, already parsed).

        ``rules`` are tried before the defaults unless ``replace_defaults`` is true;
        ``actions`` overrides the action of a class; ``mask_key_columns`` names the
        ``keyspace.table.column`` keys a user has chosen to mask (with hash only).
        """
        unknown = set(config) - _CONFIG_KEYS
        if unknown:
            raise MaskingConfigError(f"masking rules: unknown key(s) {', '.join(sorted(unknown))}")
        try:
            rules = tuple(_rule(item) for item in config.get("rules", []) or [])
            if not config.get("replace_defaults", False):
                rules += _default_rules()
            actions = dict(DEFAULT_ACTIONS)
            for name, action in (config.get("actions") or {}).items():
                actions[DataClass(name)] = MaskAction(action)
        except (ValueError, TypeError, re.error, KeyError) as exc:
            raise MaskingConfigError(f"masking rules: {exc}") from exc
        keys = frozenset(config.get("mask_key_columns", []) or [])
        return cls(rules=rules, actions=actions, hmac_key=hmac_key, key_columns=keys)

    def classify(self, qualified_table: str, column: str) -> tuple[DataClass, MaskAction]:
        key = (qualified_table, column)
        known = self._classified.get(key)
        if known is None:
            if len(self._classified) > 100_000:
                self._classified.clear()
            known = self._classified[key] = self._first_rule(qualified_table, column)
        return known

    def _first_rule(self, qualified_table: str, column: str) -> tuple[DataClass, MaskAction]:
        for rule in self.rules:
            if rule.matches(qualified_table, column):
                action = rule.action or self.actions.get(rule.data_class, MaskAction.REDACT)
                return rule.data_class, action
        return DataClass.NONE, MaskAction.PASS

    def masked_columns(self, qualified_table: str, columns: Iterable[str]) -> dict[str, MaskAction]:
        result: dict[str, MaskAction] = {}
        for column in columns:
            _, action = self.classify(qualified_table, column)
            if action is not MaskAction.PASS:
                result[column] = action
        return result

    def apply(self, event: ChangeEvent) -> ChangeEvent:
        """``event`` with every classified column's values masked: a copy, or ``event``
        itself when it holds nothing to mask, as most events of most tables do. Unmasked
        mappings are shared with ``event``; events are immutable, so that is safe."""
        table = event.qualified_table
        columns = self._mask_mapping(table, event.columns)
        collections = self._mask_collections(table, event.collections)
        partition_key = clustering_key = None
        if table in self._key_tables:
            partition_key = self._mask_keys(table, event.partition_key)
            clustering_key = self._mask_keys(table, event.clustering_key)
        if columns is None and collections is None and partition_key is None:
            return event
        # The constructor rather than attrs.evolve, which costs three times as much: the
        # snapshot masks every event of a table with a classified column.
        return ChangeEvent(
            event_id=event.event_id,
            operation=event.operation,
            keyspace=event.keyspace,
            table=event.table,
            partition_key=partition_key or event.partition_key,
            clustering_key=clustering_key or event.clustering_key,
            columns=event.columns if columns is None else columns,
            deleted_columns=event.deleted_columns,
            collections=event.collections if collections is None else collections,
            counters=event.counters,
            counter_totals=event.counter_totals,
            scope=event.scope,
            clustering_range=event.clustering_range,
            static=event.static,
            timestamp_micros=event.timestamp_micros,
            ttl_seconds=event.ttl_seconds,
            expires_at=event.expires_at,
            captured_at=event.captured_at,
            position=event.position,
        )

    def redact_classified(self, event: ChangeEvent) -> ChangeEvent:
        """A copy with every classified value redacted, key columns included, whatever
        the configured actions: the safe form of an event the policy cannot mask."""
        table = event.qualified_table

        def redact(values: Mapping[str, Any]) -> dict[str, Any]:
            return {
                name: value
                if self.classify(table, name)[0] is DataClass.NONE
                else self._mask_value(MaskAction.REDACT, value)
                for name, value in values.items()
            }

        collections = {
            name: delta
            if self.classify(table, name)[0] is DataClass.NONE
            else attrs.evolve(delta, elements=(), removed=())
            for name, delta in event.collections.items()
        }
        return attrs.evolve(
            event,
            partition_key=redact(event.partition_key),
            clustering_key=redact(event.clustering_key),
            columns=redact(event.columns),
            collections=collections,
        )

    def _mask_mapping(self, table: str, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """The values with the classified ones masked; None when none needs masking."""
        return self._masked_copy(table, values, self._mask_value)

    def _mask_collections(
        self, table: str, deltas: Mapping[str, CollectionDelta]
    ) -> dict[str, CollectionDelta] | None:
        """The deltas with the classified ones masked; None when none needs masking."""
        return self._masked_copy(table, deltas, self._mask_delta)

    def _masked_copy(
        self, table: str, items: Mapping[str, _T], mask: Callable[[MaskAction, _T], _T]
    ) -> dict[str, _T] | None:
        """A copy of ``items`` with each classified one masked, made only once something
        changes (a null value masks to itself): most events have nothing to mask."""
        masked = None
        actions = self._actions.get(table)
        if actions is None:
            if len(self._actions) > 10_000:
                self._actions.clear()
            actions = self._actions[table] = {}
        for name, item in items.items():
            action = actions.get(name)
            if action is None:
                action = actions[name] = self.classify(table, name)[1]
            if action is MaskAction.PASS:
                continue
            new = mask(action, item)
            if new is not item:
                if masked is None:
                    masked = dict(items)
                masked[name] = new
        return masked

    def _mask_keys(self, table: str, values: Mapping[str, Any]) -> dict[str, Any]:
        masked = {}
        for name, value in values.items():
            if f"{table}.{name}" not in self.key_columns:
                masked[name] = value
                continue
            _, action = self.classify(table, name)
            if action is MaskAction.PASS:
                masked[name] = value
                continue
            if action is not MaskAction.HASH or not isinstance(value, str | bytes):
                raise MaskingConfigError(
                    f"key column {table}.{name} can only be hashed, and only when it is text "
                    f"or blob: {action.value} of a {type(value).__name__} would merge rows"
                )
            masked[name] = self._mask_value(action, value)
        return masked

    def _mask_delta(self, action: MaskAction, delta: CollectionDelta) -> CollectionDelta:
        elements = tuple(
            attrs.evolve(
                element,
                key=self._mask_value(action, element.key) if delta.kind == "set" else element.key,
                value=self._mask_value(action, element.value),
            )
            for element in delta.elements
        )
        removed = delta.removed
        if delta.kind == "set":
            removed = tuple(self._mask_value(action, r) for r in delta.removed)
        return attrs.evolve(delta, elements=elements, removed=removed)

    def _mask_value(self, action: MaskAction, value: Any) -> Any:
        if action is MaskAction.PASS or value is None:
            return value
        if isinstance(value, list):
            return [self._mask_value(action, v) for v in value]
        if isinstance(value, frozenset | set):
            return frozenset(self._mask_value(action, v) for v in value)
        if isinstance(value, dict):
            return {k: self._mask_value(action, v) for k, v in value.items()}
        return self._mask_scalar(action, value)

    def _mask_scalar(self, action: MaskAction, value: Any) -> Any:
        # Masked values keep their column's type: text becomes masked text and a blob
        # masked bytes. A number, uuid or address cannot hold a mask, so it becomes null
        # rather than a fake value that a reader could take for real data.
        if isinstance(value, str):
            return self._mask_text(action, value)
        if isinstance(value, bytes):
            return self._mask_bytes(action, value)
        return None

    def _mask_text(self, action: MaskAction, text: str) -> str:
        if action is MaskAction.REDACT:
            return REDACTED
        if action is MaskAction.PARTIAL:
            return "*" * max(len(text) - 4, 0) + text[-4:]
        return self._digest(text.encode()).hex()

    def _mask_bytes(self, action: MaskAction, data: bytes) -> bytes:
        if action is MaskAction.REDACT:
            return b""
        if action is MaskAction.PARTIAL:
            return data[-4:]
        return self._digest(data)

    def _digest(self, data: bytes) -> bytes:
        assert self.hmac_key is not None
        return hmac.new(self.hmac_key, data, hashlib.sha256).digest()


class MaskOnce:
    """A policy's :meth:`~MaskingPolicy.apply` remembered per event object.

    Every destination reads the same event objects from the source (it decodes a range
    once for all of them) and one policy serves them all, so an event needs masking once,
    not once per destination. Entries are keyed by the object's id and keep the object
    too, so an id is never reused while its entry lives; the oldest go past ``size``.
    An ordered dict drops its oldest entry in constant time; a plain dict's first key,
    after many deletions from its front, is found by skipping every deleted slot (22 µs
    per event at 50,000 entries, measured).
    """

    def __init__(self, policy: MaskingPolicy, size: int = 50_000) -> None:
        self.policy = policy
        self._size = size
        self._masked: OrderedDict[int, tuple[ChangeEvent, ChangeEvent]] = OrderedDict()

    def apply(self, event: ChangeEvent) -> ChangeEvent:
        known = self._masked.get(id(event))
        if known is not None and known[0] is event:
            return known[1]
        masked = self.policy.apply(event)
        if len(self._masked) >= self._size:
            self._masked.popitem(last=False)
        self._masked[id(event)] = (event, masked)
        return masked

    def redact_classified(self, event: ChangeEvent) -> ChangeEvent:
        return self.policy.redact_classified(event)
