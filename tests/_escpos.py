"""Reading an ESC/POS print job back (tests): the commands are stripped, the text between them decoded
from GB18030, and the native QR codes' contents (GS ( k, function 180 "store") collected. An unknown
command is an error, so a test notices a job it cannot read rather than passing on half of it."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

ESC, FS, GS = 0x1B, 0x1C, 0x1D
# command bytes after ESC / FS / GS -> how many parameter bytes follow
_FIXED = {
    (ESC, ord("@")): 0,  # initialise
    (ESC, ord("!")): 1,  # print mode
    (ESC, ord("E")): 1,  # bold
    (ESC, ord("a")): 1,  # align
    (ESC, ord("{")): 1,  # upside down
    (ESC, ord("-")): 1,  # underline
    (ESC, ord("M")): 1,  # font
    (ESC, ord("t")): 1,  # code page
    (ESC, ord("d")): 1,  # print and feed n lines
    (ESC, ord("J")): 1,  # print and feed n dots
    (FS, ord("&")): 0,  # Chinese character mode on
    (FS, ord(".")): 0,  # Chinese character mode off
    (GS, ord("b")): 1,  # smoothing
    (GS, ord("B")): 1,  # reverse
    (GS, ord("!")): 1,  # character size
}


@dataclass
class Job:
    text: str = ""
    qr: list[str] = field(default_factory=list)
    cut: bool = False

    @property
    def lines(self) -> list[str]:
        return [line for line in self.text.splitlines() if line.strip()]

    def field(self, label: str) -> str:
        """The value of the line 'label: value'."""
        for line in self.lines:
            if line.startswith(f"{label}: "):
                return line[len(label) + 2 :]
        raise KeyError(f"no line {label!r} in {self.lines}")


def decode(data: bytes, encoding: str = "gb18030") -> Job:
    job = Job()
    text = bytearray()
    i = 0
    while i < len(data):
        b = data[i]
        if b in (ESC, FS, GS):
            cmd = data[i + 1]
            if (b, cmd) in _FIXED:
                i += 2 + _FIXED[(b, cmd)]
            elif (b, cmd) == (GS, ord("V")):  # cut: GS V m, or GS V m n for m 65/66
                m = data[i + 2]
                i += 4 if m in (65, 66) else 3
                job.cut = True
            elif (b, cmd) == (GS, ord("(")) and data[i + 2] == ord("k"):  # 2D codes: GS ( k pL pH cn fn ...
                n = data[i + 3] + 256 * data[i + 4]
                body = data[i + 5 : i + 5 + n]
                if body[:2] == b"1P":  # QR: store the data (cn '1', fn 'P', m '0')
                    job.qr.append(body[3:].decode("ascii"))
                i += 5 + n
            else:
                raise ValueError(f"unknown ESC/POS command {bytes([b, cmd])!r} at byte {i}")
        else:
            text.append(b)
            i += 1
    job.text = text.decode(encoding)
    return job


class PrinterListener:
    """A network receipt printer for tests: accepts raw TCP print jobs (one per connection) and keeps the
    bytes of each."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.create_server(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.jobs: list[bytes] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                chunks = []
                while True:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        break
                    if not chunk:
                        break
                    chunks.append(chunk)
            with self._lock:
                self.jobs.append(b"".join(chunks))

    def decoded(self) -> list[Job]:
        with self._lock:
            return [decode(j) for j in self.jobs]

    def close(self) -> None:
        self.sock.close()
