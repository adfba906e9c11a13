"""Payment announcements for the station's speaker: "微信到账 X 元" with the pump, the numbers written out
in Chinese by cn2an, spoken by espeak-ng's Mandarin voice (Debian package `espeak-ng`, voice `cmn`) into a
WAV file, and published to the station's MQTT topic (paho-mqtt, QoS 1).

Topic scheme: `<prefix>/stations/<station id>/voice` (prefix from settings, default `lijiang-fuel`). The
payload is one JSON object: kind ("payment"), station_id, device_id (the speaker configured for the
station; a speaker ignores announcements for another id), out_trade_no, amount_fen, pump_no, nozzle_no,
text, format ("wav"), created_at (ISO-8601, Asia/Shanghai) and audio_base64 (the WAV file). A speaker
subscribes with QoS 1 and a persistent session (clean_session false, a fixed client id): the broker keeps
what it missed while offline. A message can come twice (QoS 1 is at least once): out_trade_no tells.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import cn2an
import paho.mqtt.client as mqtt

from devices._receipt import yuan
from geo import FuelError

VOICE = "cmn"  # espeak-ng's Mandarin
MAX_TEXT = 200


class SpeakerUnreachable(FuelError, ConnectionError):
    """The MQTT broker did not take the announcement: the queue tries again later."""


class SpeechUnavailable(FuelError, RuntimeError):
    """espeak-ng is missing or failed."""


def spoken_yuan(fen: int) -> str:
    """16360 -> '一百六十三点六' (cn2an; trailing zero fen are not spoken)."""
    text = yuan(fen).rstrip("0").rstrip(".")
    return str(cn2an.an2cn(text, "low"))


def announcement_text(amount_fen: int, pump_no: int | None = None) -> str:
    """'微信到账一百六十三点六元' and, when known, the pump: '，一号油枪'."""
    text = f"微信到账{spoken_yuan(amount_fen)}元"
    if pump_no:
        text += f"，{cn2an.an2cn(str(pump_no), 'low')}号油枪"
    return text


def synthesize(text: str, *, voice: str = VOICE, speed_wpm: int = 150, timeout_s: float = 20.0) -> bytes:
    """The spoken text as a WAV file (espeak-ng --stdout)."""
    if not 1 <= len(text) <= MAX_TEXT:
        raise ValueError(f"announcement text must be 1-{MAX_TEXT} characters")
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechUnavailable("espeak-ng is not installed (Debian package espeak-ng)")
    try:
        done = subprocess.run(
            [exe, "-v", voice, "-s", str(speed_wpm), "--stdout", text],
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SpeechUnavailable(f"espeak-ng took more than {timeout_s} s") from exc
    if done.returncode != 0 or not done.stdout.startswith(b"RIFF"):
        raise SpeechUnavailable(f"espeak-ng failed: {done.stderr.decode(errors='replace')[:200]}")
    return done.stdout


def topic_for(prefix: str, station_id: int) -> str:
    return f"{prefix}/stations/{station_id}/voice"


@dataclass(frozen=True, slots=True)
class Announcement:
    station_id: int
    device_id: str
    out_trade_no: str
    amount_fen: int
    pump_no: int | None
    nozzle_no: int | None
    text: str
    created_at: datetime

    def payload(self, wav: bytes) -> bytes:
        body: dict[str, Any] = {
            "kind": "payment",
            "station_id": self.station_id,
            "device_id": self.device_id,
            "out_trade_no": self.out_trade_no,
            "amount_fen": self.amount_fen,
            "pump_no": self.pump_no,
            "nozzle_no": self.nozzle_no,
            "text": self.text,
            "format": "wav",
            "created_at": self.created_at.isoformat(),
            "audio_base64": base64.b64encode(wav).decode("ascii"),
        }
        return json.dumps(body, ensure_ascii=False).encode("utf-8")


def publish(
    host: str,
    port: int,
    topic: str,
    payload: bytes,
    *,
    client_id: str,
    timeout_s: float,
    username: str | None = None,
    password: str | None = None,
) -> None:
    """Publish with QoS 1 and wait for the broker's PUBACK; SpeakerUnreachable when it does not come."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.connect_timeout = timeout_s
    if username:
        client.username_pw_set(username, password)
    try:
        client.connect(host, port, keepalive=max(5, int(timeout_s * 2)))
    except OSError as exc:
        raise SpeakerUnreachable(f"MQTT broker {host}:{port}: {exc}") from exc
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=timeout_s)
        if not info.is_published():
            raise SpeakerUnreachable(f"MQTT broker {host}:{port} did not acknowledge within {timeout_s} s")
    except (RuntimeError, ValueError) as exc:  # paho: not connected, queue full
        raise SpeakerUnreachable(f"MQTT broker {host}:{port}: {exc}") from exc
    finally:
        client.disconnect()
        client.loop_stop()
