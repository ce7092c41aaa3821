"""What a valid username, email, password and display name are.

Used by the request schemas (so OpenAPI documents the limits) and by the domain
(so the rules hold whatever the entry point).
"""

from __future__ import annotations

import re
import unicodedata

from chat_shared.errors import Invalid

USERNAME_MIN, USERNAME_MAX = 3, 32
# Upper case is accepted on input and folded: usernames are unique case-insensitively.
USERNAME_PATTERN = r"^[A-Za-z0-9_.\-]{3,32}$"
USERNAME_CHARS = re.compile(r"^[a-z0-9_.\-]+$")

PASSWORD_MIN, PASSWORD_MAX = 8, 128
EMAIL_MAX = 254
DISPLAY_NAME_MAX = 64
# One '@', no spaces, a dot in the domain: deliberately basic; deliverability is
# proven by mail, not by a regex.
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")


def normalize_username(value: str) -> str:
    username = value.lower()
    if not USERNAME_MIN <= len(username) <= USERNAME_MAX or not USERNAME_CHARS.match(username):
        raise Invalid(
            f"A username is {USERNAME_MIN}-{USERNAME_MAX} characters of a-z, 0-9, '_', '.', '-'."
        )
    return username


def check_email(value: str) -> str:
    email = value.strip()
    if len(email) > EMAIL_MAX or not _EMAIL.match(email) or not email.isprintable():
        raise Invalid("This is not a valid email address.")
    return email


def check_password(value: str) -> str:
    # No composition rules and no truncation (NIST SP 800-63B): length is what counts.
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise Invalid(f"A password is {PASSWORD_MIN}-{PASSWORD_MAX} characters long.")
    return value


def check_display_name(value: str) -> str:
    name = value.strip()
    if not 1 <= len(name) <= DISPLAY_NAME_MAX:
        raise Invalid(f"A display name is 1-{DISPLAY_NAME_MAX} characters (not only spaces).")
    if any(_invisible(char) for char in name):
        raise Invalid("A display name cannot contain control or invisible characters.")
    return name


# Joiners build emoji sequences; other format characters (bidi overrides, zero
# width spaces) only serve to disguise a name.
_ALLOWED_FORMAT = {"\u200c", "\u200d"}


def _invisible(char: str) -> bool:
    category = unicodedata.category(char)
    if category == "Cf":
        return char not in _ALLOWED_FORMAT
    return category in ("Cc", "Cs", "Co", "Cn")


def looks_like_email(login: str) -> bool:
    return "@" in login
