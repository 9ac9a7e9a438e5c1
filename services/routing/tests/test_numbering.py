"""The Italian numbering plan: dial strings to E.164 and a class (pure, no I/O)."""

import pytest

from centralino_proto.events import CallClass
from centralino_routing.numbering import NumberingError, classify

C = CallClass


@pytest.mark.parametrize(
    ("dialled", "e164", "call_class"),
    [
        ("0612345678", "+390612345678", C.national_fixed),
        ("02 1234567", "+39021234567", C.national_fixed),
        ("0471-123456", "+390471123456", C.national_fixed),
        ("3351234567", "+393351234567", C.mobile),
        ("+39 335 123 4567", "+393351234567", C.mobile),
        ("0039 06 1234 5678", "+390612345678", C.national_fixed),
        ("00442071234567", "+442071234567", C.international),
        ("+5511987654321", "+5511987654321", C.international),
        ("800123456", "+39800123456", C.toll_free),
        ("803123", "+39803123", C.toll_free),
        ("848123456", "+39848123456", C.shared_cost),
        ("840123456", "+39840123456", C.shared_cost),
        ("899123456", "+39899123456", C.premium),
        ("892123", "+39892123", C.premium),
        ("1441234567", "+391441234567", C.premium),
        ("166123456", "+39166123456", C.premium),
        ("0878123456", "+390878123456", C.premium),
        ("112", "+39112", C.emergency),
        ("113", "+39113", C.emergency),
        ("115", "+39115", C.emergency),
        ("118", "+39118", C.emergency),
        ("+39112", "+39112", C.emergency),
    ],
)
def test_classify(dialled: str, e164: str, call_class: CallClass) -> None:
    result = classify(dialled)
    assert (result.e164, result.call_class) == (e164, call_class)


@pytest.mark.parametrize(
    ("dialled", "status"),
    [
        ("", 484),
        ("0", 484),
        ("06123", 484),
        ("33512", 484),
        ("80", 484),
        ("+44", 484),
        ("06123456789012", 404),
        ("335123456789", 404),
        ("+4420712345678901", 404),
        ("5551234", 404),
        ("1254", 404),
        ("*21#", 404),
        ("sip:alice", 404),
        ("00012345678", 404),
    ],
)
def test_unroutable(dialled: str, status: int) -> None:
    with pytest.raises(NumberingError) as caught:
        classify(dialled)
    assert caught.value.status == status
