"""Smoke tests of the loopback Postfix itself, with stdlib smtplib only.

If these fail, the test server (tests/postfix/setup.sh) is broken, not smtpscript.
"""

from __future__ import annotations

import smtplib
import ssl

import pytest

pytestmark = pytest.mark.postfix


def _connect(postfix, port=None) -> smtplib.SMTP:
    client = smtplib.SMTP(timeout=10)
    client._host = postfix.host  # lets starttls() check the certificate's name
    code, banner = client.connect(postfix.host, port or postfix.port)
    assert code == 220, banner
    return client


def _tls_context(postfix) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=postfix.ca_file)


def test_banner(postfix):
    client = smtplib.SMTP(timeout=10)
    code, banner = client.connect(postfix.host, postfix.port)
    try:
        assert code == 220
        assert banner == b"mx.postfix.test ESMTP Postfix"
    finally:
        client.quit()


def test_relay_for_outsider_is_refused(postfix):
    client = _connect(postfix)
    try:
        client.ehlo("outsider.example.org")
        assert client.mail("probe@example.org")[0] == 250
        code, text = client.rcpt("x@example.net")
        assert (code, text) == (554, b"5.7.1 <x@example.net>: Relay access denied")
    finally:
        client.quit()


def test_unknown_local_user_is_rejected(postfix):
    client = _connect(postfix)
    try:
        client.ehlo("outsider.example.org")
        client.mail("probe@example.org")
        code, text = client.rcpt(f"nobody@{postfix.domain}")
        assert code == 550
        assert text.startswith(b"5.1.1 ")
    finally:
        client.quit()


def test_auth_only_after_starttls(postfix):
    client = _connect(postfix)
    try:
        client.ehlo("client.example.org")
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        client.starttls(context=_tls_context(postfix))
        client.ehlo("client.example.org")
        assert not client.has_extn("starttls")
        assert client.has_extn("auth")
        assert set(postfix.mechs) <= set(client.esmtp_features["auth"].split())
        code, _ = client.login(postfix.user, postfix.password)
        assert code == 235
    finally:
        client.quit()


def test_smtps_is_tls_from_the_first_byte(postfix):
    client = smtplib.SMTP_SSL(
        postfix.host, postfix.smtps_port, timeout=10, context=_tls_context(postfix)
    )
    try:
        client.ehlo("client.example.org")
        assert client.has_extn("auth")
        assert isinstance(client.sock, ssl.SSLSocket)
    finally:
        client.quit()
