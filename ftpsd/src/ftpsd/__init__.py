"""ftpsd: a hardened FTPS server (explicit and implicit FTP over TLS) on top of pyftpdlib.

The package deliberately does not expose a version string to clients; see README.md.
"""
