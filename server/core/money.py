"""Amounts on the wire: `amesa.type.v1.Money`, integer minor units next to an ISO 4217 code."""

from __future__ import annotations

from amesa.type.v1 import money_pb2


def money(amount_minor: int, currency: str) -> money_pb2.Money:
    return money_pb2.Money(currency_code=currency, amount_minor=amount_minor)


def optional_money(amount_minor: int | None, currency: str | None) -> money_pb2.Money | None:
    """None (the field stays unset) when the amount or its currency is unknown."""
    if amount_minor is None or currency is None:
        return None
    return money(amount_minor, currency)
