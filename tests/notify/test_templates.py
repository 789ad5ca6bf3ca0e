"""Templates fill values in and never evaluate them."""

from __future__ import annotations

import pytest

from server.notify import templates


def test_values_are_inserted_verbatim_never_evaluated() -> None:
    values = templates.variables(
        {"to": "a@example.org", "new_email": "${code} {0.__class__} <script>x</script>"}
    )

    email = templates.render_email("email_change_requested", "en", values)

    assert "${code} {0.__class__} <script>x</script>" in email.text
    assert "&lt;script&gt;x&lt;/script&gt;" in email.html
    assert "<script>" not in email.html


def test_language_falls_back_to_its_primary_subtag_then_english() -> None:
    assert templates.render_sms("phone_code", "fr-CA", {"code": "123456"}).startswith(
        "Your Amesa verification code is 123456."
    )


def test_missing_variable_is_template_missing() -> None:
    with pytest.raises(templates.TemplateMissing):
        templates.render_sms("phone_code", "en", {})


def test_unknown_template_is_template_missing() -> None:
    with pytest.raises(templates.TemplateMissing):
        templates.render_email("no_such_template", "en", {})
