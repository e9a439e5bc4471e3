"""One blast across all five providers: SMS through 360nrs, Kaleyra and SmsGateway24, WhatsApp
through Sendix, email through SendX, routed by a column; checked against every ledger."""

from __future__ import annotations

import csv
from collections import Counter

from blastkit import results

from dispatcher.cli import main

ALIASES = {"nrs": "nrs360", "kal": "kaleyra", "gw": "smsgateway24", "wa": "sendix", "mail": "sendx"}


def test_one_run_mixes_all_five_providers(sim, tmp_path):
    rows = []
    for i in range(1, 301):
        alias = list(ALIASES)[i % 5]
        rows.append({"id": f"r{i}", "phone": f"+3462{i:07d}", "email": f"user{i}@example.com", "name": f"name{i}",
                     "amount": f"{i}.25", "route": alias})
    rows.append({"id": "bad-phone", "phone": "123", "email": "x@example.com", "name": "z", "amount": "1",
                 "route": "kal"})
    rows.append({"id": "bad-mail", "phone": "+34620000000", "email": "not-an-address", "name": "z", "amount": "1",
                 "route": "mail"})
    rows.append({"id": "no-route", "phone": "+34620000001", "email": "y@example.com", "name": "z", "amount": "1",
                 "route": "pigeon"})
    with open(tmp_path / "a.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    fast = "backoff_base = 0.01\nbackoff_max = 0.1\n"
    (tmp_path / "c.toml").write_text(f"""
[source]
path = "a.csv"
recipient = "phone"
id = "id"

[message]
channel = "sms"
sender = "KLRHXA"
region = "ES"
template = "Hi {{name|capitalize}}, your balance is {{amount|formatDotComma}}"
options = {{ type = "TXN", device_id = 260 }}

[messages.whatsapp]
template = "Hola {{name}}, {{amount}}"
options = {{ template_name = "promo", language = "es", parameters = ["name", "amount"] }}

[messages.email]
recipient = "email"
sender = "news@example.com"
subject = "Your balance"
template = "<p>Hi {{name}}</p>"
options = {{ from_name = "ACME", reply_to = "help@example.com" }}

[providers.nrs]
type = "nrs360"
url = "{sim.url('nrs360')}"
username_env = "NRS360_USER"
password_env = "NRS360_PASSWORD"
{fast}
[providers.kal]
type = "kaleyra"
url = "{sim.url('kaleyra')}"
sid_env = "KALEYRA_SID"
api_key_env = "KALEYRA_API_KEY"
{fast}
[providers.gw]
type = "smsgateway24"
url = "{sim.url('smsgateway24')}"
email_env = "SMSGATEWAY24_EMAIL"
password_env = "SMSGATEWAY24_PASSWORD"
{fast}
[providers.wa]
type = "sendix"
channel = "whatsapp"
url = "{sim.url('sendix')}"
username_env = "SENDIX_USER"
password_env = "SENDIX_PASSWORD"
{fast}
[providers.mail]
type = "sendx"
channel = "email"
url = "{sim.url('sendx')}"
api_key_env = "SENDX_API_KEY"
{fast}
[routing]
by = "column"
column = "route"

[[sinks]]
type = "jsonl"
path = "out/{{run_id}}.jsonl"
""")
    code = main(["blast", str(tmp_path / "c.toml"), "--quiet", "--run-id", "mix"])
    out = results(tmp_path / "out" / "mix.jsonl")
    assert code == 1  # the three bad rows
    by_id = {r["id"]: r for r in out}
    assert len(by_id) == len(out) == len(rows), "exactly one result per record"
    assert by_id["bad-phone"]["code"] == "invalid_number"
    assert by_id["bad-mail"]["code"] == "invalid_address"
    assert by_id["no-route"]["code"] == "no_route"
    sent = [r for r in out if r["status"] == "sent"]
    assert Counter(r["provider"] for r in sent) == {a: 60 for a in ALIASES}
    for alias, kind in ALIASES.items():
        ledger = sim.ledger(kind)
        mine = [r for r in sent if r["provider"] == alias]
        assert len(ledger) == len(mine), f"{kind}: ledger {len(ledger)} against {len(mine)} sent results"
        ids = {r["message_id"] for r in mine if r["message_id"]}
        ledger_ids = {str(e.get("id") or e.get("messageId") or e.get("message_id") or "") for e in ledger}
        assert ids <= ledger_ids, f"{kind}: result ids missing from the ledger"
    channels = {r["provider"]: r["channel"] for r in sent}
    assert channels == {"nrs": "sms", "kal": "sms", "gw": "sms", "wa": "whatsapp", "mail": "email"}
    mails = {r["to"] for r in sent if r["provider"] == "mail"}
    assert all(m.endswith("@example.com") for m in mails)
