"""The euicc-sim and ipa command lines, run in-process on a card in a temporary directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from euicc_cli import ipa_command as ipa_cli
from euicc_cli import sim_command as card_cli

TS48 = Path(__file__).resolve().parent.parent / "profiles" / "ts48"
A = "8949449999999990023"  # TS48V1-A-UNIQUE
B = "8949449999999990171"  # TS48V5-SAIP2-3-NOBERTLV-UNIQUE
EID = "89049032123451234512345678901235"


@pytest.fixture(scope="module")
def card_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "card"
    assert card_cli.main(["init", str(path), "--eid", EID, "--kind", "consumer"]) == 0
    assert (
        card_cli.main(
            [
                "preload",
                str(path),
                str(TS48 / "TS48V1-A-UNIQUE.der"),
                "--enable",
                "--notify",
                "smdp.example.com",
            ]
        )
        == 0
    )
    assert (
        card_cli.main(
            [
                "preload",
                str(path),
                str(TS48 / "TS48V5-SAIP2-3-NOBERTLV-UNIQUE.der"),
                "--class",
                "operational",
                "--ppr2",
                "--notify",
                "smdp.example.com",
            ]
        )
        == 0
    )
    return path


@pytest.fixture()
def card(card_template: Path, tmp_path: Path) -> str:
    import shutil

    target = tmp_path / "card"
    shutil.copytree(card_template, target)
    return str(target)


def data(out: str) -> Any:
    """The ``data`` of a successful ``--json`` envelope."""
    envelope = json.loads(out)
    assert (envelope["ok"], envelope["code"]) == (True, 0), envelope
    return envelope["data"]


def run_ipa(card: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = ipa_cli.main(["--card", card, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_init_refuses_an_existing_card(card: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert card_cli.main(["init", card]) == 1
    assert "already holds a card" in capsys.readouterr().err


def test_info_json_lists_preloaded_profiles_with_asn1_names(
    card: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert card_cli.main(["info", card, "--json"]) == 0
    info = data(capsys.readouterr().out)
    assert info["eid"] == EID
    states = {p["iccid"]: (p["profileState"], p["profileClass"]) for p in info["profileInfoList"]}
    assert states == {A: ("enabled", "test"), B: ("disabled", "operational")}
    assert info["profileInfoList"][1]["profilePolicyRules"] == ["ppr2"]


def test_preload_of_garbage_fails_with_a_message(
    card: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.der"
    bad.write_bytes(b"\x30\x03\x02\x01\x00")
    assert card_cli.main(["preload", card, str(bad)]) == 1
    assert "not a valid profile package" in capsys.readouterr().err


def test_ipa_eid_prints_the_cards_eid(card: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_ipa(card, capsys, "eid") == (0, EID + "\n", "")
    code, out, _ = run_ipa(card, capsys, "--json", "eid")
    assert data(out) == {"eidValue": EID}


def test_ipa_enable_switches_and_persists(card: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_ipa(card, capsys, "enable", B)[0] == 0
    code, out, _ = run_ipa(card, capsys, "--json", "profiles")
    states = {p["iccid"]: p["profileState"] for p in data(out)["profileInfoListOk"]}
    assert states == {A: "disabled", B: "enabled"}


def test_ipa_delete_of_enabled_profile_reports_the_result_code(
    card: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_ipa(card, capsys, "delete", A)
    assert code == 1
    assert "profileNotInDisabledState (2)" in err


def test_ipa_disable_then_delete_removes_the_profile(
    card: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_ipa(card, capsys, "disable", A)[0] == 0
    assert run_ipa(card, capsys, "delete", A)[0] == 0
    code, out, _ = run_ipa(card, capsys, "profiles")
    assert A not in out and B in out


def test_ipa_nickname_is_shown_in_profiles(card: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_ipa(card, capsys, "nickname", B, "lab sim")[0] == 0
    code, out, _ = run_ipa(card, capsys, "--json", "profiles")
    nick = {p["iccid"]: p.get("profileNickname") for p in data(out)["profileInfoListOk"]}
    assert nick[B] == "lab sim"


def test_ipa_notifications_lists_and_removes(card: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_ipa(card, capsys, "enable", B)  # disable A, enable B: two notifications
    code, out, _ = run_ipa(card, capsys, "--json", "notifications")
    listed = data(out)["notificationList"]
    events = [n["otherSignedNotification"]["profileManagementOperation"] for n in listed]
    assert events == [["notificationDisable"], ["notificationEnable"]]
    first = listed[0]["otherSignedNotification"]["seqNumber"]
    assert run_ipa(card, capsys, "notifications", "--remove", str(first))[0] == 0
    code, out, _ = run_ipa(card, capsys, "notifications")
    assert out.count("->") == 1


def test_ipa_info_shows_versions(card: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_ipa(card, capsys, "--json", "info")
    info = data(out)
    assert info["eidValue"] == EID
    assert info["euiccInfo2"]["svn"] == "2.5.0"


def test_ipa_without_a_card_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert ipa_cli.main(["eid"]) == 2
    assert "--card" in capsys.readouterr().err


def test_ipa_on_a_directory_without_a_card_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ipa_cli.main(["--card", str(tmp_path / "none"), "eid"]) == 3
    assert "holds no card" in capsys.readouterr().err


def test_ipa_reader_options_need_a_reader(card: str, capsys: pytest.CaptureFixture[str]) -> None:
    from euicc_cli.ipa_command import main as ipa_main

    assert ipa_main(["--card", card, "--protocol", "T1", "eid"]) == 2
    assert "--protocol and --exclusive are for --reader" in capsys.readouterr().err
    assert ipa_main(["--card", card, "--exclusive", "eid"]) == 2


# -- global options anywhere, the --json envelope, exit codes ----------------------------------


def envelope(out: str) -> dict[str, Any]:
    """The one JSON document a --json command printed (and nothing else on stdout)."""
    document = json.loads(out)
    assert set(document) == {"ok", "code", "message", "data"}
    return document


@pytest.mark.parametrize(
    "argv",
    [
        ["--card", "{card}", "--json", "eid"],
        ["eid", "--card", "{card}", "--json"],
        ["--json", "eid", "--card", "{card}"],
        ["--card", "/nowhere", "eid", "--card", "{card}", "--json"],  # the later one wins
    ],
)
def test_global_options_are_accepted_before_and_after_the_command(
    card: str, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert ipa_cli.main([a.replace("{card}", card) for a in argv]) == 0
    assert envelope(capsys.readouterr().out)["data"] == {"eidValue": EID}


def test_a_card_refusal_is_one_envelope_with_code_1_and_the_result(
    card: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_ipa(card, capsys, "delete", A, "--json")
    assert code == 1
    document = envelope(out)
    assert (document["ok"], document["code"]) == (False, 1)
    assert document["data"]["result"] == "profileNotInDisabledState"
    assert document["data"]["resultCode"] == 2
    assert document["data"]["function"] == "ES10c.DeleteProfile"
    assert "profileNotInDisabledState (2)" in err


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["eid", "--bogus"], 2, "unrecognized arguments: --bogus"),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
        (["eid"], 2, "--card DIR or --reader NAME"),
        (["--card", "{card}", "enable", "12345"], 2, "neither an ICCID"),
        (["--card", "{card}", "--block-size", "0", "eid"], 2, "--block-size 0"),
        (["--card", "{card}", "apdu", "00A4G"], 2, "not hex"),
        (["--card", "{card}", "download", "LPA:1$x$y", "--ca-cert", "/no/such.pem"], 2, "such.pem"),
        (["--card", "{card}", "poll", "--eim-url", "eim.example"], 2, "not an http:// or https://"),
        (["--card", "{card}", "--log-level", "LOUD", "eid"], 2, "choose one of DEBUG"),
        (["--card", "{card}/missing", "eid"], 3, "holds no card"),
    ],
)
def test_errors_print_one_envelope_and_the_documented_exit_code(
    card: str, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    argv = [a.replace("{card}", card) for a in argv]
    assert ipa_cli.main([*argv, "--json"]) == code
    out, err = capsys.readouterr()
    document = envelope(out)
    assert (document["ok"], document["code"]) == (False, code)
    assert message in document["message"]
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ({"state.json": b"{not json"}, "state.json: state file is not valid JSON"),
        ({"state.json": b'{"format": 1}'}, "state.json: state file does not have"),
        ({"files/cert_ci_0.der": b"\x30\x03junk"}, "cert_ci_0.der is damaged"),
        ({"files/sk_euicc_1.pem": b"-----BEGIN"}, "sk_euicc_1.pem is damaged"),
        ({"files/config.json": b"[1, 2"}, "config.json is damaged"),
        ({"files/ecasd.json": b"{}"}, "ecasd.json is damaged"),
    ],
)
def test_a_damaged_card_directory_is_named_with_exit_code_3(
    card: str, capsys: pytest.CaptureFixture[str], damage: dict[str, bytes], message: str
) -> None:
    for name, content in damage.items():
        (Path(card) / name).write_bytes(content)
    code, out, err = run_ipa(card, capsys, "eid", "--json")
    assert code == 3
    document = envelope(out)
    assert card in document["message"] and message in document["message"]
    assert card_cli.main(["info", card]) == 3
    assert message in capsys.readouterr().err


def test_a_foreign_directory_is_not_a_card(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert card_cli.main(["info", str(tmp_path), "--json"]) == 3
    assert "holds no card" in envelope(capsys.readouterr().out)["message"]
    assert (tmp_path / "notes.txt").read_text() == "hello"  # left as it was


def test_missing_key_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["init", str(tmp_path / "c"), "--euicc-key", str(tmp_path / "none.pem"), "--json"]
    assert card_cli.main(argv) == 2
    document = envelope(capsys.readouterr().out)
    assert "none.pem" in document["message"] and "No such file" in document["message"]


@pytest.mark.parametrize("command", ["smdpp", "eim"])
def test_a_port_above_65535_is_a_usage_error(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [command, "--pki", "sgp26", "--port", "70000", "--json"]
    if command == "smdpp":
        argv += ["--profiles", str(TS48)]
    assert card_cli.main(argv) == 2
    assert "70000 is out of range" in envelope(capsys.readouterr().out)["message"]


def test_serve_refuses_a_vpcd_port_out_of_range(
    card: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert card_cli.main(["serve", card, "--vpcd", "127.0.0.1:99999"]) == 2
    assert "99999" in capsys.readouterr().err


def test_ctrl_c_in_a_command_exits_130_without_a_traceback(
    card: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ipa.es10 import Es10Client

    def interrupted(self: Any) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(Es10Client, "get_eid", interrupted)
    code, out, err = run_ipa(card, capsys, "eid", "--json")
    assert code == 130
    assert envelope(out)["code"] == 130 and "interrupted" in err


def test_an_internal_error_is_reported_not_a_traceback(
    card: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ipa.es10 import Es10Client

    def broken(self: Any) -> str:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(Es10Client, "get_eid", broken)
    code, out, err = run_ipa(card, capsys, "eid")
    assert code == 1
    assert "internal error: ZeroDivisionError: oops" in err and "Traceback" not in err


def test_version_on_both_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from euicc_sim import __version__

    assert ipa_cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"ipa {__version__}\n"
    assert card_cli.main(["--version", "--json"]) == 0
    assert envelope(capsys.readouterr().out)["data"] == {"version": __version__}


# -- logging -------------------------------------------------------------------------------------


def test_apdus_are_traced_once_and_only_at_debug(
    card: str, capsys: pytest.CaptureFixture[str]
) -> None:
    select_isdr = "A4040410A0000005591010FFFFFFFF8900000100"
    code, out, err = run_ipa(card, capsys, "-vv", "eid")
    assert code == 0 and out == EID + "\n"
    assert err.count(select_isdr) == 1
    code, out, err = run_ipa(card, capsys, "-v", "eid")
    assert select_isdr not in err
    code, out, err = run_ipa(card, capsys, "eid", "--log-level", "debug")
    assert err.count(select_isdr) == 1
    code, out, err = run_ipa(card, capsys, "eid")
    assert err == ""


# -- targets and the new commands ----------------------------------------------------------------


def _aid_of(card: str, capsys: pytest.CaptureFixture[str], iccid: str) -> str:
    _, out, _ = run_ipa(card, capsys, "--json", "profiles")
    (aid,) = [p["isdpAid"] for p in data(out)["profileInfoListOk"] if p["iccid"] == iccid]
    return str(aid)


def test_profiles_are_targeted_by_isdp_aid_as_well_as_iccid(
    card: str, capsys: pytest.CaptureFixture[str]
) -> None:
    aid_a, aid_b = _aid_of(card, capsys, A), _aid_of(card, capsys, B)
    assert run_ipa(card, capsys, "enable", aid_b)[0] == 0
    assert run_ipa(card, capsys, "nickname", aid_b, "by aid")[0] == 0
    assert run_ipa(card, capsys, "delete", f"aid:{aid_a.lower()}")[0] == 0
    _, out, _ = run_ipa(card, capsys, "--json", "profiles")
    (only,) = data(out)["profileInfoListOk"]
    assert (only["iccid"], only["profileState"], only["profileNickname"]) == (
        B,
        "enabled",
        "by aid",
    )
    code, _, err = run_ipa(card, capsys, "disable", aid_a)
    assert code == 1 and "iccidOrAidNotFound" in err


def test_profile_target_tells_iccids_from_aids() -> None:
    assert ipa_cli.profile_target("8949449999999990023") == ("iccid", "8949449999999990023")
    assert ipa_cli.profile_target("89494499999999900231") == ("iccid", "89494499999999900231")
    assert ipa_cli.profile_target("A0000005591010FFFFFFFF8900001000") == (
        "isdpAid",
        bytes.fromhex("A0000005591010FFFFFFFF8900001000"),
    )
    assert ipa_cli.profile_target("iccid:8949449999999990023")[0] == "iccid"
    with pytest.raises(ipa_cli.UsageError):
        ipa_cli.profile_target("aid:123")


def test_default_smdp_address_is_read_set_and_cleared(
    card: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_ipa(card, capsys, "default-smdp", "smdp.example.org")[0] == 0
    _, out, _ = run_ipa(card, capsys, "default-smdp", "--json")
    assert data(out)["defaultDpAddress"] == "smdp.example.org"
    assert run_ipa(card, capsys, "default-smdp", "--clear")[0] == 0
    _, out, _ = run_ipa(card, capsys, "default-smdp")
    assert out.splitlines()[0] == "default SM-DP+ -"
    assert run_ipa(card, capsys, "default-smdp", "x", "--clear")[0] == 2


def test_memory_reset_deletes_what_its_options_name(
    card: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The card is a consumer (SGP.22) card: eUICCMemoryReset in its SGP.22 form (BF34).
    code, out, _ = run_ipa(
        card, capsys, "memory-reset", "deleteOperationalProfiles", "--sgp22", "--json"
    )
    assert code == 0 and data(out)["resetResult"] == "ok"
    _, out, _ = run_ipa(card, capsys, "--json", "profiles")
    assert [p["iccid"] for p in data(out)["profileInfoListOk"]] == [A]  # B was operational
    code, _, err = run_ipa(card, capsys, "memory-reset", "deleteOperationalProfiles", "--sgp22")
    assert code == 1 and "nothingToDelete" in err
    assert run_ipa(card, capsys, "memory-reset", "everything")[0] == 2


def test_es10_passthrough_returns_the_response_tlv(
    card: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_ipa(card, capsys, "es10", "BF3E035C015A")
    assert code == 0 and out.strip() == "BF3E125A10" + EID
    code, out, _ = run_ipa(card, capsys, "es10", "bf2d 00", "--json")
    answer = data(out)
    assert answer["response"].startswith("BF2D")
    assert answer["function"] == "ES10c.GetProfilesInfo"
    listed = answer["decoded"]["profileInfoListOk"]
    # ProfileInfo iccid in the EF.ICCID coding (nibbles swapped), as on the wire
    assert {p["iccid"] for p in listed} == {"989444999999990920F3", "989444999999990971F1"}
    code, out, _ = run_ipa(card, capsys, "es10", "BF3E035C015A", "--json")
    assert data(out)["decoded"] == {"eidValue": EID}


def test_apdu_passthrough_prints_data_and_status_word(
    card: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_ipa(
        card, capsys, "apdu", "0070000001", "00A4040410A0000005591010FFFFFFFF8900000100", "--json"
    )
    assert code == 0
    manage, select = data(out)["exchanges"]
    assert (manage["data"], manage["sw"]) == ("01", "9000")
    assert select["sw"].startswith("61")
    code, out, _ = run_ipa(card, capsys, "apdu", "00A4")
    assert code == 2


def test_readers_without_pcsc_is_unreachable_or_lists(capsys: pytest.CaptureFixture[str]) -> None:
    code = ipa_cli.main(["readers", "--json"])
    document = envelope(capsys.readouterr().out)
    assert code in (0, 3) and document["code"] == code
    if code == 0:
        assert isinstance(document["data"]["readers"], list)


# -- profiles by name ------------------------------------------------------------------------------


def test_profiles_lists_the_shipped_ts48_packages(capsys: pytest.CaptureFixture[str]) -> None:
    assert card_cli.main(["profiles"]) == 0
    names = capsys.readouterr().out.split()
    assert "TS48V1-A-UNIQUE" in names and len(names) == len(list(TS48.glob("*.der")))


def test_preload_takes_a_shipped_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "card")
    assert card_cli.main(["init", path]) == 0
    assert card_cli.main(["preload", path, "TS48V1-A-UNIQUE", "--json"]) == 0
    (profile,) = envelope(capsys.readouterr().out.split("\n", 1)[1])["data"]["profiles"]
    assert profile["iccid"] == A
    assert card_cli.main(["preload", path, "TS48V9-NOTHING"]) == 2
    assert "TS48V1-A-UNIQUE" in capsys.readouterr().err  # the message lists the names


# -- streams ---------------------------------------------------------------------------------------


def test_broken_pipe_ends_quietly(card: str) -> None:
    """``ipa ... | head -1`` (stdout closed early): exit 141, no traceback."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    read, write = os.pipe()
    os.close(read)  # nobody reads: the first write fails with EPIPE
    with os.fdopen(write, "wb") as stdout:
        done = subprocess.run(
            [sys.executable, "-m", "ipa", "--card", card, "profiles"],
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=env,
            timeout=60,
        )
    assert done.returncode == 141
    assert b"Traceback" not in done.stderr and b"Exception ignored" not in done.stderr


def test_serve_streams_json_lines_and_stops_cleanly_on_ctrl_c(card: str) -> None:
    """``euicc-sim serve --json``: one ``serving`` line per card, the envelope last, exit 0."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a free port: nobody listens there, the card keeps retrying
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    argv = [sys.executable, "-m", "euicc_sim", "serve", card, "--vpcd", f"127.0.0.1:{port}"]
    child = subprocess.Popen(
        [*argv, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    try:
        assert child.stdout is not None
        first = json.loads(child.stdout.readline())
        child.send_signal(signal.SIGINT)
        rest, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert first == {
        "event": "serving",
        "eid": EID,
        "directory": card,
        "host": "127.0.0.1",
        "port": port,
    }
    (last,) = [json.loads(line) for line in rest.splitlines()]
    assert (last["ok"], last["code"], last["message"]) == (True, 0, "stopped")
    assert child.returncode == 0 and "Traceback" not in err


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_a_server_command_streams_json_lines_and_ends_normally_when_stopped(stop: str) -> None:
    """``euicc-sim smdpp --json``: a ``starting`` line, then on Ctrl-C or SIGTERM the envelope
    (ok, "stopped") and exit status 0: stopping is how a server command ends."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    argv = [sys.executable, "-m", "euicc_sim", "smdpp", "--pki", "sgp26", "--profiles", str(TS48)]
    argv += ["--http", "--port", str(port), "--json"]
    child = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    try:
        assert child.stdout is not None and child.stderr is not None
        first = json.loads(child.stdout.readline())
        for line in child.stderr:  # wait until it serves
            if "Uvicorn running" in line:
                break
        child.send_signal(getattr(signal, stop))
        rest, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert first == {"event": "starting", "server": "smdpp", "host": "127.0.0.1", "port": port}
    (last,) = [json.loads(line) for line in rest.splitlines()]
    assert (last["ok"], last["code"], last["message"]) == (True, 0, "stopped")
    assert child.returncode == 0
