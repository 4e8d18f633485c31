"""The euicc-sim and ipa command lines, run in-process on a card in a temporary directory."""

from __future__ import annotations

import json
from pathlib import Path

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
    info = json.loads(capsys.readouterr().out)
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
    assert json.loads(out) == {"eidValue": EID}


def test_ipa_enable_switches_and_persists(card: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_ipa(card, capsys, "enable", B)[0] == 0
    code, out, _ = run_ipa(card, capsys, "--json", "profiles")
    states = {p["iccid"]: p["profileState"] for p in json.loads(out)["profileInfoListOk"]}
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
    nick = {p["iccid"]: p.get("profileNickname") for p in json.loads(out)["profileInfoListOk"]}
    assert nick[B] == "lab sim"


def test_ipa_notifications_lists_and_removes(card: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_ipa(card, capsys, "enable", B)  # disable A, enable B: two notifications
    code, out, _ = run_ipa(card, capsys, "--json", "notifications")
    listed = json.loads(out)["notificationList"]
    events = [n["otherSignedNotification"]["profileManagementOperation"] for n in listed]
    assert events == [["notificationDisable"], ["notificationEnable"]]
    first = listed[0]["otherSignedNotification"]["seqNumber"]
    assert run_ipa(card, capsys, "notifications", "--remove", str(first))[0] == 0
    code, out, _ = run_ipa(card, capsys, "notifications")
    assert out.count("->") == 1


def test_ipa_info_shows_versions(card: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_ipa(card, capsys, "--json", "info")
    info = json.loads(out)
    assert info["eidValue"] == EID
    assert info["euiccInfo2"]["svn"] == "2.5.0"


def test_ipa_without_a_card_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert ipa_cli.main(["eid"]) == 2
    assert "--card" in capsys.readouterr().err


def test_ipa_on_a_directory_without_a_card_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ipa_cli.main(["--card", str(tmp_path / "none"), "eid"]) == 1
    assert "holds no card" in capsys.readouterr().err


def test_ipa_reader_options_need_a_reader(card: str, capsys: pytest.CaptureFixture[str]) -> None:
    from euicc_cli.ipa_command import main as ipa_main

    assert ipa_main(["--card", card, "--protocol", "T1", "eid"]) == 2
    assert "--protocol and --exclusive are for --reader" in capsys.readouterr().err
    assert ipa_main(["--card", card, "--exclusive", "eid"]) == 2
