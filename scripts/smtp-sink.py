#!/usr/bin/env python3
"""A local SMTP sink for the e-mail alert tests (aiosmtpd from PyPI; started by scripts/services.sh).

    smtp-sink.py --dir DIR --port P [--tls-port Q --cert CRT --key KEY]

Port P speaks plain SMTP and offers STARTTLS (with --cert/--key); port Q speaks SMTP inside TLS
from the first byte (smtps). AUTH PLAIN/LOGIN is offered once the connection is encrypted and
accepts any user and password (like moto accepts any key). Each message received is written to
DIR/<time>-<n>.eml (atomically: a .tmp renamed), the message as sent preceded by the envelope and
the session: X-Sink-Mail-From, X-Sink-Rcpt-To, X-Sink-TLS (yes/no), X-Sink-Auth-User. The
password is never written anywhere.
"""
import argparse
import itertools
import os
import signal
import ssl
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

COUNTER = itertools.count()


class Sink:
    def __init__(self, directory, wrapped=False):
        self.directory = directory
        self.wrapped = wrapped

    async def handle_DATA(self, server, session, envelope):
        head = [
            f"X-Sink-Mail-From: {envelope.mail_from}",
            f"X-Sink-Rcpt-To: {', '.join(envelope.rcpt_tos)}",
            f"X-Sink-TLS: {'yes' if self.wrapped or session.ssl is not None else 'no'}",
            f"X-Sink-Auth-User: {session.auth_data if session.authenticated else ''}",
        ]
        body = envelope.original_content or envelope.content
        if isinstance(body, str):
            body = body.encode()
        name = f"{time.time_ns()}-{next(COUNTER)}.eml"
        tmp = os.path.join(self.directory, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(("\r\n".join(head) + "\r\n").encode() + body)
        os.rename(tmp, os.path.join(self.directory, name))
        return "250 OK"


def any_credentials(server, session, envelope, mechanism, auth_data):
    # auth_data is a LoginPassword(login, password); keep the user name only.
    login = getattr(auth_data, "login", b"")
    return AuthResult(success=True, auth_data=login.decode() if isinstance(login, bytes) else str(login))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls-port", type=int)
    p.add_argument("--cert")
    p.add_argument("--key")
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    tls = None
    if a.cert and a.key:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(a.cert, a.key)
    plain = Controller(Sink(a.dir), hostname=a.host, port=a.port,
                       server_kwargs=dict(tls_context=tls, authenticator=any_credentials, auth_require_tls=True))
    plain.start()
    wrapped = None
    if tls is not None and a.tls_port:
        # Encrypted from the first byte (aiosmtpd does not see that itself): AUTH offered at once.
        wrapped = Controller(Sink(a.dir, wrapped=True), hostname=a.host, port=a.tls_port, ssl_context=tls,
                             server_kwargs=dict(authenticator=any_credentials, auth_require_tls=False))
        wrapped.start()
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())
    stop.wait()
    plain.stop()
    if wrapped is not None:
        wrapped.stop()


if __name__ == "__main__":
    main()
