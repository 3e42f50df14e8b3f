"""Messages between the server and its worker processes, and the shared memory of big answers.

A worker and the server talk over a Unix socket pair of sequenced packets (each message is
one packet, so there is no framing to get wrong): small pickled tuples, with file
descriptors attached. A message too big for one packet travels in shared memory, as do the
bodies of big answers: the worker reads the data into an anonymous shared-memory file
(``memfd``), passes its descriptor, and the server writes a view of the mapping straight to
the client's socket. Nothing here knows of HTTP or HDF5.
"""

from __future__ import annotations

import array
import contextlib
import mmap
import os
import pickle
import socket
import tempfile
from typing import Any

MAX_PACKET = 64 * 1024
"""Largest message sent as one packet (well below Linux's socket buffer); bigger ones and
answer bodies go through shared memory."""

MAX_FDS = 16
"""Descriptors one message may carry."""

_BIG = "__ipc_big__"
"""Tag of a message whose pickle travels in shared memory (its descriptor attached)."""


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """Two connected ends: (the server's, the worker's)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class Shared:
    """An anonymous shared-memory buffer and this process's mapping of it."""

    def __init__(self, fd: int, size: int, *, writable: bool) -> None:
        """Map `size` bytes of the file `fd` (taken over: closed by close())."""
        self.fd = fd
        self.size = size
        access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
        self.map = mmap.mmap(fd, size, access=access) if size else None

    @classmethod
    def create(cls, size: int) -> Shared:
        """A new zero-filled buffer of `size` bytes."""
        fd = _anonymous_file()
        try:
            os.ftruncate(fd, size)
        except OSError:
            os.close(fd)
            raise
        return cls(fd, size, writable=True)

    def view(self, start: int = 0, stop: int | None = None) -> memoryview:
        """Bytes [start:stop] of the mapping, without a copy."""
        if self.map is None:
            return memoryview(b"")
        return memoryview(self.map)[start:stop]

    def close(self) -> None:
        """Unmap and close; the memory is freed once every process holding it has closed it.
        A mapping still viewed somewhere is left to the garbage collector."""
        if self.map is not None:
            with contextlib.suppress(BufferError):
                self.map.close()
            self.map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _anonymous_file() -> int:
    """A descriptor of an anonymous file in memory (memfd on Linux, else an unlinked file)."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("jupyter_h5grove", os.MFD_CLOEXEC)
    fd, path = tempfile.mkstemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    os.unlink(path)
    return fd


class Channel:
    """One end of a worker's socket pair: send and receive (message, descriptors)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message: Any, fds: list[int] | tuple[int, ...] = ()) -> None:
        """Send a picklable message and descriptors (duplicated for the receiver; the caller
        keeps its own). Blocks while the socket buffer is full."""
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) > MAX_PACKET:
            big = Shared.create(len(data))
            try:
                big.view()[:] = data
                data = pickle.dumps((_BIG, len(data)), protocol=pickle.HIGHEST_PROTOCOL)
                fds = (*fds, big.fd)
                self._send(data, fds)
            finally:
                big.close()
            return
        self._send(data, fds)

    def _send(self, data: bytes, fds: tuple[int, ...] | list[int]) -> None:
        ancillary = []
        if fds:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        self.sock.sendmsg([data], ancillary)

    def receive(self) -> tuple[Any, list[int]] | None:
        """The next message and the descriptors that came with it (now the caller's to
        close); None when the other end has closed. Blocks on a blocking socket; on a
        non-blocking one raises BlockingIOError when nothing is there."""
        data, ancillary, _flags, _addr = self.sock.recvmsg(
            MAX_PACKET + 1024, socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
        )
        fds: list[int] = []
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                received = array.array("i")
                received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
                fds.extend(received)
        if not data:
            for fd in fds:
                os.close(fd)
            return None
        message = pickle.loads(data)
        if isinstance(message, tuple) and message and message[0] == _BIG:
            big = Shared(fds.pop(), message[1], writable=False)
            try:
                message = pickle.loads(big.view())
            finally:
                big.close()
        return message, fds

    def close(self) -> None:
        self.sock.close()
