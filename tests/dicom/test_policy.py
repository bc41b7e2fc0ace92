"""`allowed_callers`: who may open an association (AE title and host), with real name resolution."""

from __future__ import annotations

import socket

from suite_daemon.config.models import AllowedCaller
from suite_daemon.dicom.policy import REJECT_BUSY, REJECT_CALLED_AE, REJECT_CALLING_AE, CallerPolicy


def _policy(*callers: tuple[str, str], max_associations: int = 4) -> CallerPolicy:
    allowed = [AllowedCaller(ae_title=ae, host=host) for ae, host in callers]
    return CallerPolicy(allowed, "SUITE_SCP", max_associations)


def test_the_listed_caller_from_its_host_is_accepted_and_others_are_told_why() -> None:
    policy = _policy(("CT01", "10.0.0.5"))
    assert policy.check("CT01", "SUITE_SCP", "10.0.0.5", active=1) is None
    assert policy.check("CT01  ", "SUITE_SCP  ", "10.0.0.5", active=1) is None  # AE titles are space-padded
    from_elsewhere = policy.check("CT01", "SUITE_SCP", "10.0.0.6", active=1)
    assert from_elsewhere is not None and from_elsewhere.rsd == REJECT_CALLING_AE
    assert from_elsewhere.reason == "calling AE title not allowed from this host"
    stranger = policy.check("WS99", "SUITE_SCP", "10.0.0.5", active=1)
    assert stranger is not None and stranger.reason == "calling AE title not allowed"


def test_an_ipv4_caller_seen_on_an_ipv6_socket_matches_its_ipv4_rule() -> None:
    policy = _policy(("CT01", "10.0.0.5"), ("MR01", "fe80::1"))
    assert policy.check("CT01", "SUITE_SCP", "::ffff:10.0.0.5", active=1) is None
    assert policy.check("MR01", "SUITE_SCP", "fe80::1%eth0", active=1) is None  # the zone is not the host


def test_a_host_name_is_resolved_once_and_matches_its_addresses() -> None:
    addresses = {str(info[4][0]) for info in socket.getaddrinfo("localhost", None, proto=socket.IPPROTO_TCP)}
    policy = _policy(("CT01", "localhost"))
    for address in addresses:
        assert policy.check("CT01", "SUITE_SCP", address, active=1) is None
    assert policy.check("CT01", "SUITE_SCP", "10.9.9.9", active=1) is not None


def test_a_host_name_that_does_not_resolve_admits_nobody() -> None:
    policy = _policy(("CT01", "no-such-modality.invalid"))  # .invalid never resolves (RFC 2606)
    rejection = policy.check("CT01", "SUITE_SCP", "127.0.0.1", active=1)
    assert rejection is not None and rejection.rsd == REJECT_CALLING_AE


def test_wildcards_the_called_title_and_the_association_limit() -> None:
    policy = _policy(("*", "*"), max_associations=2)
    assert policy.check("ANY", "SUITE_SCP", "192.0.2.1", active=2) is None
    wrong_called = policy.check("ANY", "OTHER_SCP", "192.0.2.1", active=1)
    assert wrong_called is not None and wrong_called.rsd == REJECT_CALLED_AE
    busy = policy.check("ANY", "SUITE_SCP", "192.0.2.1", active=3)
    assert busy is not None and busy.rsd == REJECT_BUSY
