"""`agentmessage proof verify` and `proof audit` as a user runs them: the real
command in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.proof.test_tamper import SIGNER, packet_of, seed

from agentmessage.db.engine import Database
from agentmessage.proof.keys import signer_from_private_key

AGENTMESSAGE = str(Path(sys.executable).with_name("agentmessage"))


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMESSAGE_")}
    return subprocess.run(
        [AGENTMESSAGE, *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write(path: Path, packet: dict[str, Any]) -> Path:
    path.write_text(json.dumps(packet, indent=2))
    return path


async def test_verify_passes_then_names_the_check_one_changed_byte_breaks(
    database: Database, tmp_path: Path
) -> None:
    world = await seed(database)
    packet_file = write(tmp_path / "alice.json", await packet_of(world, "alice"))
    key_file = tmp_path / "log.vkey"
    key_file.write_text(SIGNER.public.vkey)
    pem_file = tmp_path / "log.pem"
    pem_file.write_text(SIGNER.public_pem())

    # No settings, no database: an empty directory and a bare environment.
    pinned = run(["proof", "verify", str(packet_file), "--public-key", str(key_file)], tmp_path)
    assert pinned.returncode == 0, pinned.stdout + pinned.stderr
    lines = pinned.stdout.splitlines()
    assert lines[0] == "PASS  format: agentmessage.proof/2"
    assert "pinned by the verifier" in lines[1]
    assert sum(line.startswith("PASS  event ") for line in lines) == 3
    assert lines[-1] == f"VERIFIED: {len(lines) - 1} of {len(lines) - 1} checks passed"
    assert not (tmp_path / "var").exists()  # nothing written, no data directory made

    with_pem = run(["proof", "verify", str(packet_file), "--public-key", str(pem_file)], tmp_path)
    assert with_pem.returncode == 0, with_pem.stdout

    unpinned = run(["proof", "verify", str(packet_file)], tmp_path)
    assert unpinned.returncode == 0
    assert "NOT PINNED" in unpinned.stdout

    # One byte of the file: the "9" of the contact's number in one event.
    text = packet_file.read_text()
    target = '"ip_address": "203.0.113.7"'
    assert target in text
    tampered = write(
        tmp_path / "tampered.json", json.loads(text.replace(target, target.replace("7", "9"), 1))
    )
    broken = run(["proof", "verify", str(tampered), "--public-key", str(key_file)], tmp_path)
    assert broken.returncode == 1
    (failed,) = [line for line in broken.stdout.splitlines() if line.startswith("FAIL")]
    assert failed.startswith("FAIL  event 1 (opt_in")
    assert "leaf 0 is not in the checkpoint's tree" in failed
    assert broken.stdout.splitlines()[-1].startswith("NOT VERIFIED")

    other = tmp_path / "other.vkey"
    other.write_text(signer_from_private_key(Ed25519PrivateKey.generate()).public.vkey)
    wrong_key = run(["proof", "verify", str(packet_file), "--public-key", str(other)], tmp_path)
    assert wrong_key.returncode == 1
    assert "FAIL  checkpoint signature: not signed by agentmessage-consent" in wrong_key.stdout


async def test_verify_bad_input_exits_2_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "junk.json").write_text("{not json")
    junk = run(["proof", "verify", str(tmp_path / "junk.json")], tmp_path)
    assert junk.returncode == 2 and "cannot read input" in junk.stderr
    assert "Traceback" not in junk.stderr
    missing = run(["proof", "verify", str(tmp_path / "absent.json")], tmp_path)
    assert missing.returncode == 2 and "cannot read input" in missing.stderr
    (tmp_path / "packet.json").write_text("{}")
    (tmp_path / "key.txt").write_text("not a key")
    bad_key = run(["proof", "verify", "packet.json", "--public-key", "key.txt"], tmp_path)
    assert bad_key.returncode == 2 and "cannot read --public-key" in bad_key.stderr


async def test_audit_command_reports_a_clean_log_and_refuses_an_unknown_org(
    database: Database, tmp_path: Path
) -> None:
    world = await seed(database)
    url = database.engine.url.render_as_string(hide_password=False)
    env = {"AGENTMESSAGE_DATABASE_URL": url, "AGENTMESSAGE_DATA_DIR": str(tmp_path)}
    done = run(["proof", "audit", "--org", str(world.org)], tmp_path, env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["leaves"] == 6 and report["checkpoints_checked"] == 1
    unknown = run(
        ["proof", "audit", "--org", "0190a1b2-c3d4-7e5f-a7b8-c9d0e1f2a3b6"], tmp_path, env
    )
    assert unknown.returncode == 2 and "organization not found" in unknown.stderr
