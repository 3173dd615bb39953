"""TLS for the server (stdlib `ssl`, imported only when a certificate is given)."""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import TYPE_CHECKING

from pywharf.connection import RECV_BYTES
from pywharf.errors import ConfigError

if TYPE_CHECKING:
    import ssl


__all__ = ["TLS_HANDSHAKE_BYTE", "TLSContext", "refuse_plain"]

log = logging.getLogger("pywharf.server")

# The first byte of a TLS handshake record (RFC 8446 section 5.1: ContentType.handshake).
TLS_HANDSHAKE_BYTE = 0x16
# Modern ciphers for TLS 1.2 (forward secrecy, AEAD); TLS 1.3's suites are all modern already.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
_PLAIN_HTTP_MESSAGE = b"This port speaks HTTPS: use an https:// URL.\n"
_PLAIN_HTTP_ON_TLS = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
    % (len(_PLAIN_HTTP_MESSAGE), _PLAIN_HTTP_MESSAGE)
)


class TLSContext:
    """The server's TLS settings; `reload` swaps in a rotated certificate for new connections.

    `ssl` is imported only here: a plain-HTTP server never pays its memory.
    """

    def __init__(self, certfile: str, keyfile: str) -> None:
        self.certfile, self.keyfile = certfile, keyfile
        self.context = self._load()

    def _load(self) -> ssl.SSLContext:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(TLS12_CIPHERS)
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
        try:
            context.load_cert_chain(self.certfile, self.keyfile or None)
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(f"--certfile/--keyfile: cannot load them: {error}") from None
        return context

    def reload(self) -> None:
        """Re-read the files; a broken pair is logged and the current one stays."""
        try:
            self.context = self._load()  # one assignment: a handshake sees old or new
        except ConfigError as error:
            log.error("TLS certificate not reloaded: %s", error)
            return
        log.info("TLS certificate reloaded from %s", self.certfile)


def refuse_plain(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(_PLAIN_HTTP_ON_TLS)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(RECV_BYTES)  # read what the client sent, so closing sends FIN, not RST
