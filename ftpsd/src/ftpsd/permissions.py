"""Permission profiles, their pyftpdlib letters, and what each lets a user do: the one place for these rules.

Profiles exist so that the Ansible inventory says what a user is for ("upload_only") instead of a
string of letters whose meaning has to be looked up. One extra rule is ours, not pyftpdlib's:
replacing an existing file with STOR needs both "w" and "d", because an overwrite destroys the old
content exactly like a delete does. That is what makes "upload_only" ("ew") unable to overwrite.

The Ansible side (the ftps_server role's filters, the health gate, the folder plan) asks `capabilities`
instead of reading letters itself, so that changing a profile here changes every answer at once.
"""

from __future__ import annotations

ALL_LETTERS = "elradfmwMT"
# Letters that change something on disk (append, delete, rename, mkdir, store, chmod, set mtime).
WRITE_LETTERS = frozenset("adfmwMT")

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


def may_resume_own_partial(letters: str) -> bool:
    """Whether a user may SIZE, APPE to and REST+STOR into its own partial uploads (partials.py).

    Who may see what of a partial upload, the one place for it: a partial belongs to the user whose name
    it was made under and nobody else's command ever reaches it. Its user needs only "w", the right that
    made it, not "l": SIZE of a name with this user's partial answers the partial's size (also for
    upload-only users, to whom SIZE of anything else stays 550), because that is exactly what the client
    sent and needs to continue. Listings, MLST, STAT, MDTM and other users' SIZE never show it: for them
    the name is what it was before the upload started (missing, or the complete file it will replace).
    """
    return "w" in letters


def may_resume_complete_file(letters: str, append: bool) -> bool:
    """Whether APPE (append) or REST n + STOR may start from a complete file (not a partial upload).

    The result replaces the file, so it needs the overwrite rule; appending also needs "a".
    """
    return can_overwrite(letters) and ("a" in letters or not append)


def capabilities(spec: str) -> dict[str, bool]:
    """What a profile or letter string lets a user do; ValueError for an unknown profile.

    list: LIST/NLST/MLSD; read: RETR; write: change anything on disk (the home must be writable by the
    service); overwrite: replace an existing file; delete: DELE.
    """
    letters = resolve_permissions(spec)
    return {
        "list": "l" in letters,
        "read": "r" in letters,
        "write": bool(WRITE_LETTERS & set(letters)),
        "overwrite": can_overwrite(letters),
        "delete": "d" in letters,
    }
