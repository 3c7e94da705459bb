"""Literal transcriptions of the source derivations, each in its own notation, and their audit."""

from .audit import AuditRow as AuditRow, audit as audit
