"""PaymentService RPCs: placeholder mixin until its module lands (the generated base answers
UNIMPLEMENTED meanwhile)."""

from __future__ import annotations

from server.core.deps import Deps


class ReportRpcs:
    _deps: Deps
