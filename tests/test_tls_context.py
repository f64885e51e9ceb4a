"""TLS client contexts are made once per set of options, and again when a file they
load changes on disk (a renewed CA must be used at once, not after a restart)."""

from __future__ import annotations

import os

import pytest

from smtpscript.model import TlsOptions
from smtpscript.sandbox import _make_certificate
from smtpscript.tlsinfo import make_context


def test_the_same_options_share_one_context():
    options = TlsOptions(verify=False, min_version="TLSv1.2")
    assert make_context(options) is make_context(TlsOptions(verify=False, min_version="TLSv1.2"))
    assert make_context(options) is not make_context(TlsOptions(verify=False))


def test_a_ca_file_changed_on_disk_makes_a_new_context(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, _ = _make_certificate("one.test", tmp_path / "a")
    second, _ = _make_certificate("two.test", tmp_path / "b")
    ca = tmp_path / "ca.pem"
    ca.write_bytes(first.read_bytes())
    options = TlsOptions(ca_file=str(ca))
    old = make_context(options)
    assert make_context(options) is old
    ca.write_bytes(second.read_bytes())
    os.utime(ca, ns=(1, 1))  # a new stamp even within the clock's resolution
    new = make_context(options)
    assert new is not old
    assert new.cert_store_stats()["x509"] == 1  # the new file's certificate, loaded


def test_a_missing_ca_file_still_names_it(tmp_path):
    missing = tmp_path / "nope.pem"
    with pytest.raises(Exception, match=r"nope\.pem"):
        make_context(TlsOptions(ca_file=str(missing)))
