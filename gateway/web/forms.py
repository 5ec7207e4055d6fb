"""The dashboard's forms: each field's bounds are the services' own (they check again)."""

from __future__ import annotations

from wtforms import IntegerField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from gateway.services.access import MAX_TEXT
from gateway.web.csrf import Form


class SignIn(Form):
    token = PasswordField(
        "Gateway token",
        validators=[DataRequired(message="paste your gateway token"), Length(max=128)],
    )


class Approve(Form):
    duration_hours = IntegerField(
        "Grant duration (hours)",
        validators=[Optional(), NumberRange(min=1, message="at least 1 hour")],
    )


class Deny(Form):
    reason = TextAreaField(
        "Reason (the evaluator sees it)", validators=[Optional(), Length(max=MAX_TEXT)]
    )


class RequestAccess(Form):
    justification = TextAreaField(
        "Justification (the lab reads it)",
        validators=[DataRequired(message="say why you need access"), Length(max=MAX_TEXT)],
    )
    duration_hours = IntegerField(
        "Grant duration asked for (hours)",
        validators=[Optional(), NumberRange(min=1, message="at least 1 hour")],
    )


class Withdraw(Form):
    confirm = StringField(
        "Type the artifact's name to confirm",
        validators=[DataRequired(message="type the artifact's name")],
    )


def first_error(form: Form) -> str | None:
    """The first field error of ``form``, as one line, or None."""
    for field in form:
        if field.errors:
            return f"{field.label.text}: {field.errors[0]}"
    return None
