"""SMTP test peer for mailgate's integration tests, built on aiosmtpd.

Usage: python3 smtp_peer.py '<json config>'

It takes the same JSON config and prints the same stdout events as the Node
peer (../node/smtp-peer.mjs); see that file's header for the full protocol.
Python-specific notes:

* AUTH mechanisms: PLAIN and LOGIN (aiosmtpd's own), XOAUTH2 and OAUTHBEARER
  (RFC 7628), implemented below as aiosmtpd handler ``auth_*`` hooks.
* A refused XOAUTH2/OAUTHBEARER attempt gets the ``334`` error challenge
  (base64 JSON), the client's answer (an empty line, or ``\\x01`` for
  OAUTHBEARER) is read, then ``535 5.7.8`` is sent. Every refusal sends a
  reply, so a client never hangs.
* ``requireStarttls`` maps to aiosmtpd's ``require_starttls``: every command
  but EHLO/HELO/NOOP/QUIT/STARTTLS is refused with 530 until TLS is on.
* ``pipelining`` (Python only): advertise PIPELINING. aiosmtpd reads
  pipelined commands in order but does not advertise the extension itself.
* ``mail_options`` in the message event are the MAIL FROM parameters as
  aiosmtpd hands them over (upper-cased), e.g. ``["SIZE=123", "BODY=8BITMIME"]``.

Passwords and tokens are never printed. Diagnostics go to stderr.
"""

import asyncio
import base64
import binascii
import itertools
import json
import logging
import os
import signal
import ssl
import sys
import threading
import warnings

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

SUPPORTED_AUTH = ("PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER")


def emit(event):
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def fail(message):
    sys.stderr.write(f"smtp-peer: {message}\n")
    sys.stderr.flush()
    sys.exit(2)


def b64(obj):
    return base64.b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode()


class Peer:
    """Configuration plus the server-wide state (refusal counter, ids)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.auth_methods = [str(m).upper() for m in cfg.get("authMethods") or []]
        for m in self.auth_methods:
            if m not in SUPPORTED_AUTH:
                fail(f"AUTH {m} is not implemented (supported: {', '.join(SUPPORTED_AUTH)})")
        self.users = cfg.get("users") or {}
        self.tokens = cfg.get("tokens") or {}
        self.refusals_left = int(cfg.get("refuseFirstAuth") or 0)
        self.scope = cfg.get("scope") or "https://mail.example.test/.default"
        self.conn_ids = itertools.count(1)

    def decide(self, conn, method, user, valid):
        """Apply refuseFirstAuth, print the auth event, return the verdict."""
        reason = None if valid else "invalid"
        if valid and self.refusals_left > 0:
            self.refusals_left -= 1
            valid = False
            reason = "refuseFirstAuth"
        emit({"event": "auth", "conn": conn, "method": method, "user": user,
              "ok": valid, "reason": reason})
        return valid

    def token_ok(self, user, token):
        if user is None:
            return False
        accepted = self.tokens.get(user)
        if isinstance(accepted, str):
            accepted = [accepted]
        return token in (accepted or [])

    # aiosmtpd "authenticator" for its built-in PLAIN and LOGIN
    def authenticator(self, server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        user = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        valid = user in self.users and self.users[user] == password
        if self.decide(server.conn, mechanism, user, valid):
            server.auth_method = mechanism
            return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)


class Handler:
    """aiosmtpd handler: envelope hooks and the OAuth mechanisms."""

    def __init__(self, peer):
        self.peer = peer
        self.cfg = peer.cfg

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # aiosmtpd prints a bare "250-AUTH " when every mechanism is excluded
        # (the open relay): drop it so no AUTH is advertised at all.
        session.host_name = hostname
        responses = [r for r in responses if r.strip() != "250-AUTH"]
        if self.cfg.get("pipelining") and len(responses) > 1:
            responses.insert(1, "250-PIPELINING")
        if self.cfg.get("hide8bitmime"):
            responses = [r for r in responses if r[4:].strip().upper() != "8BITMIME"]
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.cfg.get("failMail"):
            return f"{int(self.cfg['failMail'])} MAIL refused by test peer (failMail)"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.cfg.get("failRcpt"):
            return f"{int(self.cfg['failRcpt'])} RCPT refused by test peer (failRcpt)"
        code = (self.cfg.get("failRcptFor") or {}).get(address)
        if code:
            return f"{int(code)} RCPT refused by test peer for {address} (failRcptFor)"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.cfg.get("failData"):
            return f"{int(self.cfg['failData'])} message refused by test peer (failData)"
        user = session.auth_data if session.authenticated else None
        emit({
            "event": "message",
            "conn": server.conn,
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "secure": server.is_secure(),
            "user": user,
            "method": server.auth_method if user is not None else None,
            "mail_options": list(envelope.mail_options),
            "data": envelope.original_content.decode("utf-8", "replace"),
            # With decode_data=False, original_content holds the DATA bytes
            # exactly as received (dot-unstuffed, without the final "." line).
            "raw": base64.b64encode(envelope.original_content).decode("ascii"),
        })
        return "250 OK Message accepted"

    async def handle_exception(self, error):
        emit({"event": "error", "conn": None, "message": str(error)})
        return "451 4.3.0 test peer error"

    async def _initial_response(self, server, args):
        """The SASL initial response (from the AUTH line, or asked with an
        empty challenge). Returns bytes, or None when a reply was already sent."""
        if len(args) > 1:
            if args[1] == "=":
                return b""
            try:
                return base64.b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await server.push("501 5.5.2 Can't decode base64")
                return None
        blob = await server.challenge_auth("", encode_to_b64=False)
        return None if blob is MISSING else blob

    async def _refuse_oauth(self, server, error):
        """RFC 7628 / XOAUTH2 failure: 334 error challenge, read the client's
        dummy answer, then 535. Always leaves a reply on the wire."""
        answer = await server.challenge_auth(b64(error), encode_to_b64=False)
        if answer is MISSING:
            # '*' or bad base64: aiosmtpd already replied 501.
            return AuthResult(success=False, handled=True)
        await server.push("535 5.7.8 Authentication credentials invalid")
        return AuthResult(success=False, handled=True)

    async def auth_XOAUTH2(self, server, args):
        blob = await self._initial_response(server, args)
        if blob is None:
            return AuthResult(success=False, handled=True)
        user = token = None
        for field in blob.decode("utf-8", "replace").split("\x01"):
            key, _, value = field.partition("=")
            if key.lower() == "user":
                user = value.strip()
            elif key.lower() == "auth":
                scheme, _, rest = value.strip().partition(" ")
                if scheme.lower() == "bearer":
                    token = rest.strip()
        if not user or not token:
            await server.push("501 5.5.2 Error: invalid XOAUTH2 userdata")
            return AuthResult(success=False, handled=True)
        ok = self.peer.decide(server.conn, "XOAUTH2", user, self.peer.token_ok(user, token))
        if ok:
            server.auth_method = "XOAUTH2"
            return AuthResult(success=True, auth_data=user)
        return await self._refuse_oauth(
            server, {"status": "401", "schemes": "bearer", "scope": self.peer.scope})

    async def auth_OAUTHBEARER(self, server, args):
        blob = await self._initial_response(server, args)
        if blob is None:
            return AuthResult(success=False, handled=True)
        # gs2-header "," kvpairs: "n,a=user,\x01host=..\x01port=..\x01auth=Bearer T\x01\x01"
        text = blob.decode("utf-8", "replace")
        gs2, _, rest = text.partition("\x01")
        user = None
        for part in gs2.split(","):
            if part.startswith("a="):
                user = part[2:].replace("=2C", ",").replace("=3D", "=")
        token = None
        for field in rest.split("\x01"):
            key, _, value = field.partition("=")
            if key == "auth":
                scheme, _, tok = value.strip().partition(" ")
                if scheme.lower() == "bearer":
                    token = tok.strip()
        if not gs2.startswith(("n,", "y,", "p=")) or token is None:
            await server.push("501 5.5.2 Error: invalid OAUTHBEARER message")
            return AuthResult(success=False, handled=True)
        if user is None:
            # RFC 7628 allows omitting the authzid: find the token's owner.
            user = next((u for u in self.peer.tokens if self.peer.token_ok(u, token)), None)
        ok = self.peer.decide(server.conn, "OAUTHBEARER", user, self.peer.token_ok(user, token))
        if ok:
            server.auth_method = "OAUTHBEARER"
            return AuthResult(success=True, auth_data=user)
        return await self._refuse_oauth(
            server, {"status": "invalid_token", "scope": self.peer.scope,
                     "schemes": "bearer"})


class PeerSMTP(SMTP):
    """aiosmtpd's SMTP with connect/tls/close events and a connection id."""

    implicit_tls = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.conn = None
        self.auth_method = None
        self._closed_emitted = False

    def is_secure(self):
        return self.implicit_tls or self._tls_protocol is not None

    def connection_made(self, transport):
        starting = self.conn is None
        if starting:
            self.conn = next(self.peer_ids)
            emit({"event": "connect", "conn": self.conn, "secure": self.implicit_tls})
            if self.implicit_tls:
                emit({"event": "tls", "conn": self.conn})
        else:
            # second call: the STARTTLS handshake completed
            emit({"event": "tls", "conn": self.conn})
        super().connection_made(transport)

    def connection_lost(self, error):
        if not self._closed_emitted and self.conn is not None:
            self._closed_emitted = True
            emit({"event": "close", "conn": self.conn})
        super().connection_lost(error)


async def main(cfg):
    peer = Peer(cfg)
    handler = Handler(peer)
    secure = bool(cfg.get("secure"))
    starttls = bool(cfg.get("starttls")) and not secure

    tls_ctx = None
    if secure or starttls:
        if not (cfg.get("key") and cfg.get("cert")):
            fail("secure/starttls need 'key' and 'cert' PEM file paths")
        tls_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            tls_ctx.load_cert_chain(cfg["cert"], cfg["key"])
        except (OSError, ssl.SSLError) as err:
            fail(f"cannot load TLS key/cert: {err}")

    excluded = [m for m in ("PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER")
                if m not in peer.auth_methods]
    no_auth = not peer.auth_methods
    allow_insecure = bool(cfg.get("allowInsecureAuth"))

    class Server(PeerSMTP):
        implicit_tls = secure
        peer_ids = peer.conn_ids

    def factory():
        return Server(
            handler,
            hostname="localhost",
            decode_data=False,
            enable_SMTPUTF8=not cfg.get("hideSmtputf8"),
            tls_context=tls_ctx if starttls else None,
            require_starttls=bool(cfg.get("requireStarttls")) and starttls,
            # Same rule as smtp-server: AUTH before TLS is refused only when
            # STARTTLS is on offer and allowInsecureAuth is not set.
            auth_require_tls=starttls and not allow_insecure,
            auth_required=not no_auth and not cfg.get("authOptional"),
            auth_exclude_mechanism=excluded,
            authenticator=peer.authenticator,
        )

    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(
            factory, host=cfg.get("host") or "127.0.0.1", port=int(cfg.get("port") or 0),
            ssl=tls_ctx if secure else None)
    except OSError as err:
        fail(f"cannot listen: {err}")
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"LISTENING {port}\n")
    sys.stdout.flush()

    if cfg.get("watchStdin"):
        # Exit when the harness's end of stdin closes, so a peer never
        # outlives its test process.
        def watch_stdin():
            sys.stdin.buffer.read()
            os._exit(0)

        threading.Thread(target=watch_stdin, daemon=True).start()

    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with server:
        await stop


if __name__ == "__main__":
    # aiosmtpd logs every session (and deprecation notes) to "mail.log";
    # keep stderr for real problems.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    try:
        config = json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}")
    except json.JSONDecodeError as err:
        fail(f"config is not JSON: {err}")
    asyncio.run(main(config))
