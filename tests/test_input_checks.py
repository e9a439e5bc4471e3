"""Nothing wrong goes out (issue 11): templates, senders, numbers and hostile files, each run as a user
runs a blast, against the simulators over local HTTP, checking their ledgers.

A campaign-wide mistake (an unclosed brace, a sender the provider refuses, a URL with a password in
it) is exit 2 with one line naming the file, the line and the setting, and no request is made. A bad
record (a landline, a NUL, an empty recipient, a huge field) is that record rejected with its id and
its reason, and every other record sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from blastkit import results, run_cli, write_toml

from dispatcher.cli import main

NRS = {"type": "nrs360", "username_env": "NRS360_USER", "password_env": "NRS360_PASSWORD", "batch_size": 10,
       "backoff_base": 0.01, "backoff_max": 0.2, "timeout": 5}
KALEYRA = {"type": "kaleyra", "sid_env": "KALEYRA_SID", "api_key_env": "KALEYRA_API_KEY", "backoff_base": 0.01,
           "timeout": 5}
SMS = {"sender": "ACME", "region": "ES", "template": "Hola {name}, debes {amount} EUR"}
HEADER = "id,phone,name,amount\n"


def good(n: int, start: int = 1) -> str:
    return "".join(f"r{i},+3461{i:07d},name{i},{i}.50\n" for i in range(start, start + n))


def write(tmp: Path, audience: str | bytes, url: str, *, message: dict[str, Any] | None = None,
          provider: dict[str, Any] | None = None, fmt: str = "csv") -> Path:
    """The audience file and a campaign reading it (id column `id`); returns the campaign's path."""
    name = f"audience.{fmt}"
    (tmp / name).write_bytes(audience.encode() if isinstance(audience, str) else audience)
    return write_toml(tmp / "campaign.toml", {
        "source": {"path": name, "recipient": "phone", "id": "id"},
        "message": message if message is not None else SMS,
        "providers": {"sms": {"url": url, **(provider or NRS)}},
        "sinks": [{"type": "jsonl", "path": "out/x.jsonl"}]})


def blast(toml: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    code = main(["blast", str(toml), "--quiet", "--run-id", "x"])
    rows = results(toml.parent / "out" / "x.jsonl")
    by_id = {r["id"]: r for r in rows}
    assert len(by_id) == len(rows), "one result per record"
    return code, by_id


def line_of(toml: Path, start: str) -> int:
    return next(i for i, line in enumerate(toml.read_text().splitlines(), 1) if line.startswith(start))


def assert_nothing_sent(sim, kind: str = "nrs360") -> None:
    assert sim.ledger(kind) == []
    assert sim.stats(kind)["requests"] == 0


def assert_sent_exactly(sim, by_id: dict[str, dict[str, Any]], ids: set[str], kind: str = "nrs360") -> None:
    sent = {i for i, r in by_id.items() if r["status"] == "sent"}
    assert sent == ids
    ledger = sim.ledger(kind)
    assert sorted(e["id"] for e in ledger) == sorted(by_id[i]["message_id"] for i in ids)


# -- 1. templates --------------------------------------------------------------------------------------------

def test_an_unclosed_brace_is_exit_2_and_nothing_sent(sim, tmp_path, capsys):
    toml = write(tmp_path, HEADER + good(5), sim.url("nrs360"),
                 message={**SMS, "template": "Hola {name, su pedido de {amount} EUR"})
    assert main(["blast", str(toml), "--quiet", "--run-id", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"dispatcher: {toml}:{line_of(toml, 'template =')}: message.template: unclosed '{{' at line 1, "
                   "column 6 of the template (write {{ and }} for literal braces)")
    assert_nothing_sent(sim)


def test_a_stray_brace_in_a_template_file_names_that_file(sim, tmp_path, capsys):
    (tmp_path / "message.txt").write_text("Hola {name},\nsu saldo es {amount}} EUR\n")
    toml = write(tmp_path, HEADER + good(3), sim.url("nrs360"),
                 message={"sender": "ACME", "region": "ES", "template_file": "message.txt"})
    assert main(["blast", str(toml), "--quiet", "--run-id", "x"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'message.txt'}:2:21: stray '}}' at line 2, column 21 of the template" in err
    assert f"message.template_file in {toml}:{line_of(toml, 'template_file')}" in err
    assert_nothing_sent(sim)


def test_doubled_braces_defaults_and_empty_values(sim, tmp_path):
    audience = HEADER + good(2) + "r3,+34610000003,,3.50\n" + "r4,+34610000004,name4,\n"
    toml = write(tmp_path, audience, sim.url("nrs360"),
                 message={**SMS, "template": "{{ref}} Hola {name|default:cliente|capitalize}, debes {amount} EUR"})
    code, by_id = blast(toml)
    assert code == 1
    r4 = by_id["r4"]
    assert (r4["status"], r4["code"]) == ("rejected", "empty_variable") and "'amount'" in r4["error"]
    assert_sent_exactly(sim, by_id, {"r1", "r2", "r3"})
    texts = {e["to"]: e["text"] for e in sim.ledger("nrs360")}
    assert texts["34610000003"] == "{ref} Hola Cliente, debes 3.50 EUR"
    assert texts["34610000001"] == "{ref} Hola Name1, debes 1.50 EUR"


def test_allow_empty_lets_a_variable_be_empty(sim, tmp_path):
    toml = write(tmp_path, HEADER + good(2) + "r3,+34610000003,,3.50\n", sim.url("nrs360"),
                 message={**SMS, "template": "Hola {name}!", "allow_empty": ["name"]})
    code, by_id = blast(toml)
    assert code == 0
    assert_sent_exactly(sim, by_id, {"r1", "r2", "r3"})
    assert "Hola !" in {e["text"] for e in sim.ledger("nrs360")}


def test_allow_empty_names_only_template_variables(sim, tmp_path, capsys):
    toml = write(tmp_path, HEADER + good(2), sim.url("nrs360"), message={**SMS, "allow_empty": ["nmae"]})
    assert main(["blast", str(toml), "--quiet", "--run-id", "x"]) == 2
    assert f"{toml}:{line_of(toml, 'allow_empty')}: message.allow_empty: 'nmae' is not a variable" \
           in capsys.readouterr().err
    assert_nothing_sent(sim)


# -- 2. senders and per-provider rules, checked at load ---------------------------------------------------------

@pytest.mark.parametrize("kind, provider, sender, says", [
    ("nrs360", NRS, "ACMEACMEACMEACMEA", "message.sender: 'ACMEACMEACMEACMEA' is not a 360nrs SMS sender: at most 11 "
                                         "letters and digits, or at most 15 digits (code 107) (providers.sms)"),
    ("nrs360", NRS, "1234567890123456", "is not a 360nrs SMS sender"),
    ("nrs360", NRS, "", "message.sender: required: 360nrs SMS need a sender"),
    ("kaleyra", KALEYRA, "A!", "message.sender: 'A!' is not a Kaleyra sender id"),
])
def test_a_sender_the_provider_refuses_is_exit_2_and_nothing_sent(sim, tmp_path, capsys, kind, provider, sender, says):
    toml = write(tmp_path, HEADER + good(5), sim.url(kind), message={**SMS, "sender": sender}, provider=provider)
    assert main(["blast", str(toml), "--quiet", "--run-id", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err
    assert f"{toml}:{line_of(toml, 'sender =')}: " in err
    assert_nothing_sent(sim, kind)


def test_a_numeric_sms_sender_loses_its_plus(sim, tmp_path):
    toml = write(tmp_path, HEADER + good(2), sim.url("nrs360"), message={**SMS, "sender": "+34666777555"})
    code, by_id = blast(toml)
    assert code == 0
    assert_sent_exactly(sim, by_id, {"r1", "r2"})
    assert {e["from"] for e in sim.ledger("nrs360")} == {"34666777555"}


WHATSAPP = {"channel": "whatsapp", "region": "ES", "template": "Hola {name}, debes {amount}",
            "options": {"template_id": "123", "parameters": ["name", "amount"]}}


def test_whatsapp_sender_and_template_id_are_normalised_at_load(sim, tmp_path):
    """The seed's `templateId` is an integer and its `from` digits: "123" and "+34 666 777 555" are sent so."""
    toml = write(tmp_path, HEADER + good(3), sim.url("nrs360"), message={**WHATSAPP, "sender": "+34 666 777 555"})
    code, by_id = blast(toml)
    assert code == 0
    assert_sent_exactly(sim, by_id, {"r1", "r2", "r3"})
    assert {(e["from"], e["templateId"]) for e in sim.ledger("nrs360")} == {("34666777555", 123)}


@pytest.mark.parametrize("options, sender, says", [
    ({"template_id": "promo"}, "34666777555", "message.options.template_id: 'promo' is not an integer"),
    ({}, "34666777555", "message.options.template_id: required"),
    ({"template_id": 123}, "ACME", "message.sender: 'ACME' is not a WhatsApp sender"),
])
def test_a_bad_whatsapp_template_id_or_sender_is_exit_2(sim, tmp_path, capsys, options, sender, says):
    toml = write(tmp_path, HEADER + good(3), sim.url("nrs360"),
                 message={**WHATSAPP, "sender": sender, "options": options})
    assert main(["blast", str(toml), "--quiet", "--run-id", "x"]) == 2
    assert says in capsys.readouterr().err
    assert_nothing_sent(sim)


def test_an_email_sender_must_be_an_address(sim, tmp_path, capsys):
    audience = "id,email,name\nr1,a@example.com,ana\n"
    (tmp_path / "audience.csv").write_text(audience)
    toml = write(tmp_path, audience, sim.url("sendx"), provider={"type": "sendx", "api_key_env": "SENDX_API_KEY"},
                 message={"channel": "email", "sender": "news at example.com", "subject": "Hi",
                          "template": "<p>Hi {name}</p>"})
    toml.write_text(toml.read_text().replace('recipient = "phone"', 'recipient = "email"'))
    assert main(["blast", str(toml), "--quiet", "--run-id", "x"]) == 2
    assert "message.sender: 'news at example.com' is not an email address" in capsys.readouterr().err
    assert_nothing_sent(sim, "sendx")


# -- the provider URL and the channel -------------------------------------------------------------------------------

def test_a_provider_url_with_credentials_is_exit_2_without_echoing_them(sim, tmp_path, capsys):
    url = sim.url("nrs360").replace("http://", "http://demo:hunter2-secret@")
    toml = write(tmp_path, HEADER + good(5), url)
    assert main(["blast", str(toml), "--quiet", "--run-id", "x"]) == 2
    err = capsys.readouterr().err
    assert f"{toml}:{line_of(toml, 'url =')}: providers.sms.url: must not hold credentials" in err
    assert "hunter2" not in err and "demo:" not in err
    assert_nothing_sent(sim)


def test_credentials_in_the_url_override_are_refused_too(sim, tmp_path, capsys):
    toml = write(tmp_path, HEADER + good(2), sim.url("nrs360"))
    url = sim.url("nrs360").replace("http://", "http://demo:hunter2-secret@")
    assert main(["blast", str(toml), "--quiet", "--run-id", "x", "--url", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dispatcher: --url: must not hold credentials") and "hunter2" not in err
    assert_nothing_sent(sim)


def test_an_unknown_channel_names_the_message_setting(sim, tmp_path, capsys):
    toml = write(tmp_path, HEADER + good(2), sim.url("nrs360"), message={**SMS, "channel": "smss"})
    assert main(["blast", str(toml), "--quiet", "--run-id", "x"]) == 2
    assert capsys.readouterr().err.startswith(f"dispatcher: {toml}:{line_of(toml, 'channel =')}: message.channel: "
                                              "unknown channel 'smss' (did you mean 'sms'?)")
    assert_nothing_sent(sim)


# -- 3. numbers -------------------------------------------------------------------------------------------------

LANDLINES = "l1,+34 913 456 789,fijo,1\nl2,213456789,fixo,2\nl3,+34 803 123 456,premium,3\n"


def test_landlines_and_premium_numbers_are_rejected_not_mobile(sim, tmp_path):
    toml = write(tmp_path, HEADER + good(2) + LANDLINES + good(1, start=3), sim.url("nrs360"))
    code, by_id = blast(toml)
    assert code == 1
    for rid, number in (("l1", "+34913456789"), ("l3", "+34803123456")):
        r = by_id[rid]
        assert (r["status"], r["code"]) == ("rejected", "not_mobile") and number in r["error"], r
    assert by_id["l2"]["code"] == "invalid_number"  # 213456789 is a Portuguese landline, not Spanish at all
    assert_sent_exactly(sim, by_id, {"r1", "r2", "r3"})


def test_allow_landlines_sends_to_them(sim, tmp_path):
    toml = write(tmp_path, HEADER + good(1) + LANDLINES, sim.url("nrs360"),
                 message={**SMS, "region": "PT", "allow_landlines": True})
    code, by_id = blast(toml)
    assert code == 0
    assert {r["status"] for r in by_id.values()} == {"sent"}, by_id
    assert "351213456789" in {e["to"] for e in sim.ledger("nrs360")}


# -- 4. hostile files ---------------------------------------------------------------------------------------------

def test_a_nul_rejects_its_record_while_tabs_and_newlines_in_quotes_are_data(sim, tmp_path):
    audience = (HEADER + good(2) + "n1,+34610000091,ana\x00maria,1\n" + 'n2,+34610000092,"ana\tmaria\nlopez",2\n'
                + "n3,+34610000093,\x1b[31mred,3\n" + good(1, start=3))
    code, by_id = blast(write(tmp_path, audience, sim.url("nrs360")))
    assert code == 1
    for rid, char in (("n1", "U+0000"), ("n3", "U+001B")):
        r = by_id[rid]
        assert (r["status"], r["code"]) == ("rejected", "bad_characters") and f"field 'name' holds the control " \
            f"character {char}" in r["error"], r
    assert_sent_exactly(sim, by_id, {"r1", "r2", "n2", "r3"})
    sent = {e["to"]: e for e in sim.ledger("nrs360")}
    assert sent["34610000092"]["text"] == "Hola ana\tmaria\nlopez, debes 2 EUR"
    # only the text with a tab (outside GSM 03.38) is UCS-2: the NUL never reached the codec
    assert {to for to, e in sent.items() if e["encoding"] != "GSM-7"} == {"34610000092"}


def test_an_empty_recipient_keeps_its_id_and_says_empty(sim, tmp_path):
    code, by_id = blast(write(tmp_path, HEADER + good(2) + "b3,,carla,3\n" + good(1, start=4), sim.url("nrs360")))
    assert code == 1
    b3 = by_id["b3"]
    assert (b3["status"], b3["code"], b3["seq"]) == ("rejected", "empty_recipient", 4)
    assert b3["error"].endswith(":4: field 'phone' is empty")
    assert_sent_exactly(sim, by_id, {"r1", "r2", "r4"})


def test_jsonl_an_empty_recipient_is_empty_and_a_missing_one_missing(sim, tmp_path):
    lines = ['{"id": "j1", "phone": "+34610000001", "name": "a", "amount": "1"}',
             '{"id": "j2", "phone": "", "name": "b", "amount": "2"}', '{"id": "j3", "name": "c", "amount": "3"}',
             '{"id": "j4", "phone": "+34610000004", "name": "d\\u0000", "amount": "4"}']
    code, by_id = blast(write(tmp_path, "\n".join(lines) + "\n", sim.url("nrs360"), fmt="jsonl"))
    assert code == 1
    assert [(by_id[i]["code"], by_id[i]["error"].split(": ", 1)[1]) for i in ("j2", "j3")] == [
        ("empty_recipient", "field 'phone' is empty"), ("missing_recipient", "no field 'phone'")]
    assert by_id["j4"]["code"] == "bad_characters"
    assert_sent_exactly(sim, by_id, {"j1"})


def test_an_oversized_field_rejects_its_record_and_a_huge_line_is_skipped(sim, tmp_path):
    """A field over 1 MiB is that record rejected with its id; a 50 MB line without a newline at the end
    of the file is a rejected row with its line number, read in constant memory, never a traceback."""
    audience = (b"id,phone,name,amount,note\n" + b"".join(f"r{i},+3461{i:07d},n{i},1,-\n".encode() for i in (1, 2))
                + b"big,+34610000003,n3,1," + b"x" * ((1 << 20) + 10) + b"\n"
                + b"ok,+34610000004,n4,1," + b"y" * 500_000 + b"\n"
                + b"r5,+34610000005,n5,1,-\n" + b"z" * (50 << 20))
    toml = write(tmp_path, audience, sim.url("nrs360"))
    code, by_id = blast(toml)
    assert code == 1
    big = by_id["big"]
    assert (big["status"], big["code"]) == ("rejected", "field_too_large") and "field 'note'" in big["error"]
    huge = by_id["7"]  # no id can be read from a line that was skipped: its line number stands in
    assert (huge["status"], huge["seq"]) == ("rejected", 7) and "longer than" in huge["error"]
    assert_sent_exactly(sim, by_id, {"r1", "r2", "ok", "r5"})


def test_a_file_that_is_one_huge_line_is_exit_2_with_one_line(sim, tmp_path):
    toml = write(tmp_path, b"z" * (50 << 20), sim.url("nrs360"))
    done = run_cli("blast", str(toml), "--quiet", "--run-id", "x")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert "audience.csv:1: the header line is longer than" in done.stderr
    assert_nothing_sent(sim)


def test_a_settings_line_is_found_in_its_own_table_and_not_in_a_later_one(tmp_path):
    """Errors name the line: a key written as a table of its own is found at its header, and a key
    missing from its table is not matched in the next one (which would point the user at the wrong line)."""
    from dispatcher.config.toml import Located

    text = "[a]\nx = 1\n\n[b]\ny = 2\n\n[a.window]\ndays = 'mon'\n"
    loc = Located(tmp_path / "c.toml", text)
    assert loc.line("a", "x") == 2
    assert loc.line("a", "window") == 7  # [a.window]
    assert loc.line("a", "y") == 1  # not b's y on line 5: the table's header
    assert loc.line("b") == 4 and loc.line("", "x") == 2
    assert str(loc.error("a", "window", "bad")).startswith(f"{tmp_path / 'c.toml'}:7: a.window: bad")
