"""Operator command payloads (`pipeline.commands.parse_command`): identities that could never match an object
are refused instead of being linked into the open procedure."""

from __future__ import annotations

import json

import pytest

from suite_daemon.pipeline.commands import CommandError, parse_command


def payload(**fields: str) -> bytes:
    return json.dumps({"request_id": "r1", **fields}).encode()


def test_a_valid_command_is_parsed() -> None:
    command = parse_command("open", payload(study_instance_uid="1.2.826.0.1.3680043.8.498.1", accession_number="A1"))
    assert command.study_instance_uid == "1.2.826.0.1.3680043.8.498.1" and command.accession_number == "A1"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"study_instance_uid": "not a uid!"}, "is not a DICOM UID"),
        ({"study_instance_uid": "1.02.3"}, "is not a DICOM UID"),
        ({"study_instance_uid": "1." + "2" * 70}, "is not a DICOM UID"),
        ({"accession_number": "A" * 17}, "longer than 16"),
    ],
)
def test_identities_that_cannot_match_an_object_are_refused(fields: dict[str, str], error: str) -> None:
    with pytest.raises(CommandError, match=error) as refused:
        parse_command("open", payload(**fields))
    assert refused.value.request_id == "r1"  # answered to the sender
