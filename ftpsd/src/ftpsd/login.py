"""Login: passwords verified off the event loop (or from the login cache), and bans after failures.

pyftpdlib calls the authorizer inside the event loop; one argon2id (about 0.03 s) would stall every
session. Here PASS hands the check to a worker thread (offload.Offloader), the session reads no
commands until the verdict comes back, and unknown users are checked against a dummy hash so that
their timing matches real ones.

A login from an address outside the user's allowed_networks (authorizer.admits)
is decided before the KDF but answered after one: its password is verified against the dummy hash, as for an
unknown user, and the login cache is not consulted. So it costs the same time and gets the same delayed 530
as a wrong password, whether or not the password is right (a cache hit would answer faster and tell an
outsider the password is right), and the real hash is never tested from a refused address.
"""

from __future__ import annotations

import logging
import os

from ftpsd.authorizer import admits
from ftpsd.config import User
from ftpsd.logincache import LoginCache
from ftpsd.metrics import Metrics
from ftpsd.passwords import DUMMY_HASH

logger = logging.getLogger("ftpsd")


class PasswordLogin:
    """PASS for the control handler: off-loop verification, bans (bans.BanTracker), existing homes."""

    login_cache: LoginCache  # set by server.Server._apply: repeat logins skip the KDF
    metrics: Metrics  # set by server.Server._apply: ftpsd_logins by result

    def ftp_PASS(self, line: str) -> None:
        """Verify the password (login cache, else a worker thread); no commands are read until the verdict."""
        if self.authenticated:
            self.respond("503 User already authenticated.")
            return
        if not self.username:
            self.respond("503 Login with USER first.")
            return
        if self.bans.is_banned(self.remote_ip):
            self.metrics.login("banned")
            self.respond("421 Too many failed logins; try again later.")
            self.close_when_done()
            return
        user = self.authorizer.lookup(self.username)
        outside = user is not None and not admits(user.allowed_networks, self.remote_ip)
        encoded = user.password_hash if user is not None and not outside else DUMMY_HASH
        self.del_channel()
        if outside:  # the dummy hash, no cache: the cost and reply of a wrong password (module docstring)
            self.offload.run(
                self.login_cache.verify, (self.username, encoded, line), self._outside_networks, user
            )
            return
        if user is not None and self.login_cache.hit(user.name, encoded, line):
            # Verified with this password and hash less than login_cache_ttl ago: no KDF this time.
            logger.debug("password of %r accepted from the login cache", user.name)
            self.offload.waker.call_soon(self._password_checked, True, user)
            return
        check = (self.username, encoded, line)
        self.offload.run(self.login_cache.verify, check, self._password_checked, user)

    def _outside_networks(self, verdict: object, user: User) -> None:
        """A login from outside allowed_networks: refused as a wrong password is, with the reason logged."""
        if self._closed:
            return
        self.log(
            f"login of {user.name!r} refused: {self.remote_ip} is outside its allowed_networks "
            "(password not checked)",
            logfun=logger.warning,
        )
        self._password_checked(False, None, refusal="not_allowed_network")

    def _password_checked(
        self, verdict: object, user: User | None, refusal: str = "wrong_password_or_unknown_user"
    ) -> None:
        """Log in or refuse; ``refusal`` is the metrics' login result when the client is refused."""
        if self._closed:
            return
        self.add_channel()
        if verdict is True and user is not None:
            home = self.authorizer.get_home_dir(user.name)
            if os.path.isdir(home):
                self.metrics.login("ok")
                # The plain password is not kept (pyftpdlib would store it in self.password).
                self.handle_auth_success(home, "", self.authorizer.get_msg_login(user.name))
                return
            self.logerror(f"home directory {home} of user {user.name!r} does not exist")
            refusal = "error"
        elif isinstance(verdict, BaseException):
            self.logerror(f"password verification failed: {verdict!r}")
            refusal = "error"
        self.metrics.login(refusal)
        if self.bans.record_failure(self.remote_ip):
            logger.warning(
                "banning %s for %ss after %d failed logins",
                self.remote_ip,
                self.bans.duration,
                self.bans.max_failures,
            )
        self.handle_auth_failed("Authentication failed.", "")
