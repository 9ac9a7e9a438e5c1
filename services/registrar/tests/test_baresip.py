"""A real softphone (baresip, from Debian) registers with demo credentials."""

import asyncio
import contextlib
from pathlib import Path

from centralino_proto.demo import BELLAVISTA
from centralino_proto.testing import ServiceHarness, until
from centralino_registrar.seed import seed

from .conftest import free_port


def baresip_config(directory: Path, *, registrar_port: int, extension: str) -> None:
    """A headless baresip: no audio devices, one account through our registrar."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config").write_text(
        "\n".join(
            [
                f"sip_listen 127.0.0.1:{free_port()}",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module_app account.so",
                "audio_player none",
                "audio_source none",
                "audio_alert none",
                "",
            ]
        )
    )
    realm = BELLAVISTA.sip_realm
    (directory / "accounts").write_text(
        f"<sip:{extension}@{realm}>;auth_pass=secret{extension};"
        f'outbound="sip:127.0.0.1:{registrar_port};transport=udp";regint=120\n'
    )


async def test_baresip_registers_and_shows_in_line_status(
    harness: ServiceHarness, tmp_path: Path
) -> None:
    await seed(harness.runtime)
    port = int(harness.settings.sip_port)  # type: ignore[attr-defined]
    config = tmp_path / "baresip"
    baresip_config(config, registrar_port=port, extension="103")
    proc = await asyncio.create_subprocess_exec(
        "baresip",
        "-f",
        str(config),
        "-s",
        "-t",
        "60",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    headers = harness.mint.headers("operator")

    async def bound() -> list[dict] | None:
        response = await harness.client.get(
            "/v1/tenants/bellavista/line-status/103", headers=headers
        )
        return response.json() or None

    try:
        [binding] = await until(bound, timeout=30, interval=0.3, message="baresip binding")
    except AssertionError:
        proc.terminate()
        output, _ = await asyncio.wait_for(proc.communicate(), 15)
        raise AssertionError(output.decode(errors="replace")[-3000:]) from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        output, _ = await asyncio.wait_for(proc.communicate(), 15)
    assert "baresip" in (binding["user_agent"] or "").lower(), output.decode(errors="replace")
    assert binding["transport"] == "udp" and binding["source"].startswith("127.0.0.1:")
    assert binding["aor"] == f"sip:103@{BELLAVISTA.sip_realm}"
