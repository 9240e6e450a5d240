"""Optional ZeroMQ CURVE encryption for the client sockets (the publisher and the ZeroMQ subscriber).

CURVE encrypts and authenticates a ZeroMQ connection with Curve25519 keys, written as 40-character
Z85 strings (`zmq.curve_keypair()` makes a pair). A client needs the server's public key; its own
key pair identifies it to a server that keeps an allow-list, and is made fresh when not given
(the connection is then encrypted but the client anonymous). Without a server key the socket is
plain TCP, as on a rig's private network.

`poco-rt curve-keys` writes pairs as ZeroMQ certificate files, which pyzmq reads as they are, so
no reader of its own is needed here:

    server_public_key, _ = zmq.auth.load_certificate("keys/server.key")
    public_key, secret_key = zmq.auth.load_certificate("keys/rig1.key_secret")   # for an allow-list
"""

from __future__ import annotations

import dataclasses

import zmq

Z85_KEY_LENGTH = 40  # a 32-byte Curve25519 key in Z85


@dataclasses.dataclass(frozen=True, slots=True)
class CurveKeys:
    server_public_key: bytes
    public_key: bytes
    secret_key: bytes = dataclasses.field(repr=False)

    @classmethod
    def of(
        cls,
        *,
        server_public_key: bytes | str | None,
        public_key: bytes | str | None,
        secret_key: bytes | str | None,
    ) -> CurveKeys | None:
        """Checked keys for a CURVE client, or None (plain TCP) when no server key is given.

        Checked before any socket is made, so a bad key leaves nothing open behind it.
        """
        if server_public_key is None:
            if public_key is not None or secret_key is not None:
                raise ValueError("public_key/secret_key were given without server_public_key; give all three or none")
            return None
        if (public_key is None) != (secret_key is None):
            raise ValueError("give both public_key and secret_key (the client's key pair), or neither for a fresh pair")
        if not zmq.has("curve"):
            raise ValueError("this libzmq was built without CURVE; install a pyzmq wheel (they bundle libsodium)")
        if public_key is None or secret_key is None:
            public_key, secret_key = zmq.curve_keypair()
        return cls(
            server_public_key=_key("server_public_key", server_public_key),
            public_key=_key("public_key", public_key),
            secret_key=_key("secret_key", secret_key),
        )

    def apply(self, socket: zmq.Socket) -> None:
        """Before `connect`: ZeroMQ reads the keys when the connection's handshake starts."""
        socket.curve_serverkey = self.server_public_key
        socket.curve_publickey = self.public_key
        socket.curve_secretkey = self.secret_key


def _key(name: str, key: bytes | str) -> bytes:
    key = key.encode("ascii") if isinstance(key, str) else bytes(key)
    if len(key) != Z85_KEY_LENGTH:
        raise ValueError(
            f"{name} is {len(key)} bytes; a CURVE key is {Z85_KEY_LENGTH} Z85 characters (from zmq.curve_keypair())"
        )
    return key
