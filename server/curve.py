"""Optional ZeroMQ CURVE on the server's frame and forecast sockets, with an optional allow-list of clients.

    curve_server_key_file   the server's secret certificate (`poco-rt curve-keys` writes NAME.key_secret):
                            both sockets become CURVE servers. A client must know the matching public
                            key (NAME.key); without it the handshake fails and nothing it sends arrives.
    curve_clients_dir       a folder of client public certificates (*.key): a ZAP handler admits only
                            those keys. Unset, any client that knows the server's public key connects.

The certificate and the allow-list are read when the server is built, so a missing, public-only or
malformed file refuses the start with a ValueError naming it, before a socket binds. The ZAP
handler is pyzmq's ThreadAuthenticator, bound in the ingest thread's own context: ZeroMQ asks the
ZAP handler of the socket's context, so servers side by side in one process keep apart, and the
handler starts before the sockets bind and stops before the context ends. It covers both sockets:
a forecast subscriber is a client too and needs its key listed. The allow-list is read once;
a key added later takes a restart.
"""

from __future__ import annotations

import logging
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from poco_rt.server.settings import ServerSettings

logger = logging.getLogger(__name__)

Z85_KEY_LENGTH = 40  # a 32-byte Curve25519 key in Z85
ZAP_THREAD_NAME = "poco-rt-zap"  # named like the server's other threads, so a test sees one left running


class ServerCurve:
    """The server's CURVE key pair, applied to each stream socket, and the allow-list's ZAP handler."""

    def __init__(self, *, key_file: Path, clients_dir: Path | None) -> None:
        if not zmq.has("curve"):
            raise ValueError(
                "curve_server_key_file is set but this libzmq was built without CURVE; "
                "install a pyzmq wheel (they bundle libsodium)"
            )
        self.public_key, self._secret_key = _server_keys(key_file)
        self._clients_dir = clients_dir
        allowed = None if clients_dir is None else _allowed_clients(clients_dir)
        self._authenticator: ThreadAuthenticator | None = None
        who = "any client that knows its public key" if allowed is None else f"{allowed} clients from {clients_dir}"
        logger.info("ZeroMQ CURVE on the frame and forecast sockets (server key %s): %s", key_file, who)

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> ServerCurve | None:
        if settings.curve_server_key_file is None:
            return None
        return cls(key_file=settings.curve_server_key_file, clients_dir=settings.curve_clients_dir)

    def start(self, context: zmq.Context) -> None:
        """Before the sockets bind: the allow-list's ZAP handler, in `context` (nothing without an allow-list)."""
        if self._clients_dir is None:
            return
        authenticator = ThreadAuthenticator(context, log=logger)
        authenticator.configure_curve(domain="*", location=str(self._clients_dir))
        authenticator.start()
        authenticator.thread.name = ZAP_THREAD_NAME
        self._authenticator = authenticator

    def secure(self, socket: zmq.Socket) -> None:
        """Before `bind`: the socket takes CURVE handshakes only, as this server."""
        socket.curve_server = True
        socket.curve_secretkey = self._secret_key
        socket.curve_publickey = self.public_key

    def stop(self) -> None:
        """After the sockets closed and before the context ends (its sockets would hold `term` up)."""
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None


def write_key_pair(out_dir: Path, name: str) -> tuple[Path, Path]:
    """(public, secret) certificate files of a fresh key pair, NAME.key and NAME.key_secret in `out_dir`.

    ZeroMQ's own certificate format (zmq.auth.create_certificates, the czmq layout), so any ZeroMQ
    program reads them. The secret file is made readable by its owner only, and existing files are
    never overwritten: a server's pair replaced by mistake would lock out every client.
    """
    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"name {name!r} must be a plain file name such as 'server' or 'rig1'")
    if not zmq.has("curve"):
        raise ValueError("this libzmq was built without CURVE; install a pyzmq wheel (they bundle libsodium)")
    for suffix in (".key", ".key_secret"):
        if (out_dir / f"{name}{suffix}").exists():
            raise ValueError(
                f"{out_dir / (name + suffix)} exists; pick another --name or folder (nothing is overwritten)"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    public_file, secret_file = zmq.auth.create_certificates(out_dir, name)
    Path(secret_file).chmod(0o600)
    return Path(public_file), Path(secret_file)


def _server_keys(key_file: Path) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a secret certificate, checked to be a matching pair."""
    where = f"curve_server_key_file={str(key_file)!r}"
    try:
        public_key, secret_key = zmq.auth.load_certificate(key_file)
    except (OSError, ValueError) as error:
        raise ValueError(f"{where} is not a ZeroMQ certificate ({error}); make one with `poco-rt curve-keys`") from None
    if secret_key is None:
        raise ValueError(
            f"{where} holds only a public key; give the server its secret certificate "
            "(NAME.key_secret from `poco-rt curve-keys`) and the public one (NAME.key) to clients"
        )
    for name, key in (("public-key", public_key), ("secret-key", secret_key)):
        if not _is_z85_key(key):
            raise ValueError(f"{where}: its {name} is not a {Z85_KEY_LENGTH}-character Z85 key; make a new pair")
    if zmq.curve_public(secret_key) != public_key:
        raise ValueError(f"{where}: its public-key does not belong to its secret-key; make a new pair")
    return public_key, secret_key


def _allowed_clients(clients_dir: Path) -> int:
    """How many client certificates (*.key) the allow-list holds; each must be readable."""
    try:
        keys = zmq.auth.load_certificates(clients_dir)
    except (OSError, ValueError) as error:
        raise ValueError(f"curve_clients_dir={str(clients_dir)!r}: {error}; it holds client NAME.key files") from None
    bad = [key for key in keys if not _is_z85_key(key)]
    if bad:
        raise ValueError(f"curve_clients_dir={str(clients_dir)!r}: {len(bad)} certificates hold no valid public key")
    if not keys:
        raise ValueError(
            f"curve_clients_dir={str(clients_dir)!r} holds no client certificate (*.key), so no client could "
            "connect; copy each client's NAME.key there (from `poco-rt curve-keys`), or leave the setting out"
        )
    return len(keys)


def _is_z85_key(key: bytes) -> bool:
    if len(key) != Z85_KEY_LENGTH:
        return False
    try:
        z85.decode(key)
    except (KeyError, ValueError):  # pyzmq's z85 raises KeyError for a character outside the alphabet
        return False
    return True
