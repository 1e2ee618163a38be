#!/usr/bin/python3
"""Minimal TLS service for the certificate tests: answers every handshake with "ok", re-reads its
certificate and key on SIGHUP (as ftpsd does), so tests see what a reload makes new connections get."""

import signal
import socket
import ssl
import sys


def load(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def main() -> None:
    cert, key, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    current = {"context": load(cert, key)}
    signal.signal(signal.SIGHUP, lambda *_: current.update(context=load(cert, key)))
    with socket.create_server(("0.0.0.0", port)) as server:
        while True:
            connection, _ = server.accept()
            try:
                with current["context"].wrap_socket(connection, server_side=True) as tls:
                    tls.sendall(b"ok\n")
            except OSError:
                connection.close()


if __name__ == "__main__":
    main()
