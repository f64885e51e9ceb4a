"""smtpscript: declarative SMTP scenarios, validated, run over raw sockets, reported."""

__version__ = "0.1.0"
