import hashlib
import hmac

import pytest

from cdc_domain.events import CollectionDelta, CollectionElement, Operation
from cdc_domain.masking import (
    REDACTED,
    DataClass,
    MaskAction,
    MaskingConfigError,
    MaskingPolicy,
    MaskOnce,
)
from tests.factories import event

KEY = b"test-key"


@pytest.mark.parametrize(
    ("column", "data_class"),
    [
        ("email", DataClass.PII),
        ("user_email", DataClass.PII),
        ("email_verified_at", DataClass.PII),
        ("phone", DataClass.PII),
        ("mobile_phone", DataClass.PII),
        ("ssn", DataClass.PII),
        ("social_security_number", DataClass.PII),
        ("credit_card", DataClass.PII),
        ("billing_address", DataClass.PII),
        ("ip_address", DataClass.PII),
        ("client_ip_addr", DataClass.PII),
        ("medical_record", DataClass.PHI),
        ("patient_id", DataClass.PHI),
        ("diagnosis", DataClass.PHI),
        ("prescription_text", DataClass.PHI),
        ("medication", DataClass.PHI),
        ("blood_type", DataClass.PHI),
        ("Email", DataClass.PII),
        ("status", DataClass.NONE),
        ("total", DataClass.NONE),
        ("remailer", DataClass.NONE),
    ],
)
def test_defaults_classify_without_any_file(column, data_class):
    assert MaskingPolicy().classify("shop.users", column)[0] is data_class


def test_defaults_redact_text_and_leave_other_columns():
    masked = MaskingPolicy().apply(
        event(columns={"email": "a@b.c", "status": "new", "phone": None})
    )
    assert masked.columns == {"email": REDACTED, "status": "new", "phone": None}


def test_masking_returns_a_new_event():
    original = event(columns={"email": "a@b.c"})
    masked = MaskingPolicy().apply(original)
    assert original.columns == {"email": "a@b.c"}
    assert masked is not original


def test_an_event_with_nothing_to_mask_is_passed_on_as_it_is():
    original = event(columns={"status": "new", "total": 3})
    assert MaskingPolicy().apply(original) is original


class _CountingPolicy(MaskingPolicy):
    applied = 0

    def apply(self, event):
        type(self).applied += 1
        return super().apply(event)


def test_mask_once_masks_each_event_object_once_for_every_destination():
    once = MaskOnce(_CountingPolicy(), size=2)
    first, second, third = (event(columns={"email": f"{n}@b.c"}) for n in range(3))
    assert once.apply(first) is once.apply(first)
    assert once.apply(first).columns == {"email": REDACTED}
    assert _CountingPolicy.applied == 1
    once.apply(event(columns={"email": "0@b.c"}))  # an equal event, another object
    assert _CountingPolicy.applied == 2
    once.apply(second)
    once.apply(third)  # past size: the oldest entries go
    once.apply(first)
    assert _CountingPolicy.applied == 5


def test_hash_is_keyed_hmac_sha256_so_joins_still_work():
    policy = MaskingPolicy.from_config({"actions": {"pii": "hash"}}, hmac_key=KEY)
    first = policy.apply(event(columns={"email": "a@b.c"}))
    second = policy.apply(event(key=2, columns={"email": "a@b.c"}))
    expected = hmac.new(KEY, b"a@b.c", hashlib.sha256).hexdigest()
    assert first.columns["email"] == second.columns["email"] == expected


def test_hash_without_a_key_is_refused():
    with pytest.raises(MaskingConfigError, match="hmac_key"):
        MaskingPolicy.from_config({"actions": {"pii": "hash"}}, hmac_key=None)


def test_partial_keeps_the_last_four():
    policy = MaskingPolicy.from_config({"actions": {"pii": "partial"}}, hmac_key=None)
    masked = policy.apply(event(columns={"credit_card": "4111111111111111", "phone": "12"}))
    assert masked.columns == {"credit_card": "************1111", "phone": "12"}


def test_pass_leaves_values():
    policy = MaskingPolicy.from_config({"actions": {"pii": "pass"}}, hmac_key=None)
    assert policy.apply(event(columns={"email": "a@b.c"})).columns == {"email": "a@b.c"}


def test_non_text_values_become_null_rather_than_fake_data():
    masked = MaskingPolicy().apply(event(columns={"patient_id_number": 12345}))
    assert masked.columns == {"patient_id_number": None}


def test_blob_values_stay_blobs():
    policy = MaskingPolicy.from_config({"actions": {"phi": "hash"}}, hmac_key=KEY)
    masked = policy.apply(event(columns={"medical_record": b"\x01\x02"}))
    assert masked.columns["medical_record"] == hmac.new(KEY, b"\x01\x02", hashlib.sha256).digest()


def test_yaml_rules_extend_the_defaults_and_win_over_them():
    policy = MaskingPolicy.from_config(
        {
            "rules": [
                {"field": "nickname", "class": "pii"},
                {"pattern": "^email$", "class": "none"},
                {"field": "notes", "class": "phi", "tables": ["shop.visits"], "action": "partial"},
            ]
        },
        hmac_key=None,
    )
    assert policy.classify("shop.users", "nickname")[0] is DataClass.PII
    assert policy.classify("shop.users", "email") == (DataClass.NONE, MaskAction.PASS)
    assert policy.classify("shop.users", "work_email")[0] is DataClass.PII
    assert policy.classify("shop.visits", "notes") == (DataClass.PHI, MaskAction.PARTIAL)
    assert policy.classify("shop.orders", "notes")[0] is DataClass.NONE


def test_replace_defaults_drops_the_built_in_patterns():
    policy = MaskingPolicy.from_config(
        {"replace_defaults": True, "rules": [{"field": "secret"}]}, hmac_key=None
    )
    assert policy.classify("t.t", "email")[0] is DataClass.NONE
    assert policy.classify("t.t", "secret")[0] is DataClass.PII


@pytest.mark.parametrize(
    "config",
    [
        {"rules": [{"class": "pii"}]},
        {"rules": [{"field": "x", "class": "secretish"}]},
        {"actions": {"pii": "scramble"}},
        {"rules": [{"pattern": "(", "class": "pii"}]},
        {"replace_default": True},
        {"rules": [{"field": "x", "clas": "pii"}]},
    ],
)
def test_bad_rules_raise_a_typed_error(config):
    with pytest.raises(MaskingConfigError):
        MaskingPolicy.from_config(config, hmac_key=None)


def test_primary_key_columns_are_never_masked_by_default():
    base = event()
    keyed = base.create(
        operation=Operation.UPDATE,
        keyspace="shop",
        table="users",
        partition_key={"patient_id": "p-1"},
        clustering_key={"email": "k@b.c"},
        columns={"email_backup": "x"},
        timestamp_micros=1,
        captured_at=base.captured_at,
        position=base.position,
    )
    masked = MaskingPolicy().apply(keyed)
    assert masked.partition_key == {"patient_id": "p-1"}
    assert masked.clustering_key == {"email": "k@b.c"}
    assert masked.columns == {"email_backup": REDACTED}


def _user_event():
    base = event()
    return base.create(
        operation=Operation.UPDATE,
        keyspace="shop",
        table="users",
        partition_key={"email": "k@b.c"},
        columns={},
        timestamp_micros=1,
        captured_at=base.captured_at,
        position=base.position,
    )


def test_a_key_column_is_hashed_only_when_configured():
    policy = MaskingPolicy.from_config(
        {"actions": {"pii": "hash"}, "mask_key_columns": ["shop.users.email"]}, hmac_key=KEY
    )
    masked = policy.apply(_user_event())
    assert masked.partition_key == {"email": hmac.new(KEY, b"k@b.c", hashlib.sha256).hexdigest()}


def test_a_key_column_cannot_be_redacted_because_rows_would_merge():
    policy = MaskingPolicy.from_config({"mask_key_columns": ["shop.users.email"]}, hmac_key=None)
    with pytest.raises(MaskingConfigError, match="merge"):
        policy.apply(_user_event())


def test_collections_are_masked_element_by_element():
    delta = CollectionDelta(
        "set", elements=(CollectionElement("a@b.c", None, 1),), removed=("old@b.c",)
    )
    policy = MaskingPolicy.from_config({"actions": {"pii": "partial"}}, hmac_key=None)
    masked = policy.apply(
        event(columns={"emails": frozenset({"a@b.c"})}, collections={"emails": delta})
    )
    assert masked.columns["emails"] == frozenset({"*@b.c"})
    assert masked.collections["emails"].elements[0].key == "*@b.c"
    assert masked.collections["emails"].removed == ("***@b.c",)


def test_map_values_are_masked_and_keys_kept():
    delta = CollectionDelta("map", elements=(CollectionElement("home", "12 Main St", 1),))
    masked = MaskingPolicy().apply(event(collections={"addresses": delta}))
    element = masked.collections["addresses"].elements[0]
    assert (element.key, element.value) == ("home", REDACTED)


def test_hmac_key_is_not_in_the_repr():
    policy = MaskingPolicy.from_config({"actions": {"pii": "hash"}}, hmac_key=b"topsecret")
    assert "topsecret" not in repr(policy)
