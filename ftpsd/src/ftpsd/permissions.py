"""Permission profiles and their mapping onto pyftpdlib's permission letters.

Profiles exist so that the Ansible inventory says what a user is for ("upload_only") instead of a
string of letters whose meaning has to be looked up. One extra rule is ours, not pyftpdlib's:
replacing an existing file with STOR needs both "w" and "d", because an overwrite destroys the old
content exactly like a delete does. That is what makes "upload_only" ("ew") unable to overwrite.
"""

from __future__ import annotations

ALL_LETTERS = "elradfmwMT"

PROFILES: dict[str, str] = {
    "full": "elradfmwMT",
    "read_only": "elr",
    "upload_only": "ew",
}


def resolve_permissions(spec: str) -> str:
    """Turn a profile name or a string of pyftpdlib letters into letters; raise ValueError otherwise."""
    if spec in PROFILES:
        return PROFILES[spec]
    if spec and all(letter in ALL_LETTERS for letter in spec) and len(set(spec)) == len(spec):
        return spec
    names = ", ".join(list(PROFILES)[:-1]) + f" or {list(PROFILES)[-1]}"
    raise ValueError(
        f"unknown profile {spec!r} (expected {names} or permission letters from {ALL_LETTERS!r})"
    )


def can_overwrite(letters: str) -> bool:
    """Whether STOR may replace an existing file (see module docstring)."""
    return "w" in letters and "d" in letters
