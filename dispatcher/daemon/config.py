"""The daemon's TOML file into a validated DaemonConfig, or one line `file:line: key: message`.

See examples/daemon.toml for every setting with its default. Credentials (provider keys,
the database URL, delivery-report secrets) are never in the file: it names the environment
variables that hold them.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.providers import built, check_failover, no_providers, provider_entry
from ..config.toml import Located, check_keys, read_toml, subtable
from ..phone import valid_region
from ..providers.base import Provider, Settings
from ..render import Template, TemplateError, compile_template
from .schedule import Schedule, Window, WindowError

TOP = {"daemon", "http", "webhooks", "providers", "routes", "defaults", "campaigns"}
DAEMON = {"dsn_env", "table", "worker", "region", "transliterate", "gsm_pt", "lease", "heartbeat", "dead_after",
          "poll", "claim", "max_in_flight", "stop_timeout", "max_claims", "retention_days", "rematch_hours",
          "log_level", "retry_for", "retry_base", "retry_max", "log_format", "stats_every"}
HTTP = {"listen", "public_url", "api_key_env"}
WEBHOOKS = {"url", "secret_env", "batch", "max_age", "timeout", "backoff_max"}
PROVIDER_EXTRA = {"dlr_secret_env", "dlr_match_recipient"}
CAMPAIGN = {"sender", "subject", "options", "template", "route", "provider", "window", "windows", "retry_for"}
WINDOW = {"days", "hours", "tz"}
ROUTE = {"default", "prefixes"}


@dataclass
class ProviderSpec:
    alias: str
    cls: type[Provider]
    settings: Settings
    channel: str
    secret: str | None  # the delivery-report secret (from dlr_secret_env); None: no report endpoint
    match_recipient: bool

    @property
    def kind(self) -> str:
        return self.cls.kind

    def build(self) -> Provider:
        return self.cls(self.alias, self.settings)

    @functools.cached_property
    def reporter(self) -> Provider:
        """The instance that reads this provider's delivery reports and wires its callback URL (into the
        settings the engine's instance is built from later)."""
        return self.build()


@dataclass(frozen=True)
class WebhookSpec:
    url: str
    secret: str  # the HMAC key (from secret_env); never logged
    batch: int = 100  # events per POST
    max_age: float = 72 * 3600.0  # seconds an undelivered event is retried, then given up (kept, counted)
    timeout: float = 15.0  # seconds a POST may take (Standard Webhooks: 15)
    backoff_max: float = 60.0


@dataclass(frozen=True)
class Route:
    default: str | None
    prefixes: tuple[tuple[str, str], ...] = ()  # longest first

    def pick(self, to: str) -> str | None:
        """The provider for a normalised address: the longest matching prefix (+33...) or domain (@example.com)."""
        for p, alias in self.prefixes:
            if to.endswith(p) if p[0] == "@" else to.startswith(p):
                return alias
        return self.default


@dataclass
class CampaignSpec:
    name: str
    sender: str = ""
    subject: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    template: Template | None = None
    route: str | None = None
    provider: str | None = None
    schedule: Schedule = field(default_factory=Schedule)
    retry_for: float | None = None  # seconds a row is retried through transient failures; None: [daemon]'s


@dataclass
class DaemonConfig:
    path: Path
    dsn: str
    dsn_env: str
    table: str = "outbox"
    worker: str = ""
    region: str | None = None
    transliterate: bool = False
    gsm_pt: bool = False
    lease: float = 30.0  # seconds a claim is good for when its worker stops heartbeating
    heartbeat: float = 2.0
    dead_after: float = 10.0  # a worker silent this long is dead: its expired claims come back
    poll: float = 1.0  # seconds between polls when no NOTIFY came
    claim: int = 2000  # rows per claim
    max_in_flight: int = 0  # 0: the engine's default
    stop_timeout: float = 20.0
    max_claims: int = 5  # a row claimed this often by workers that died is failed (poison row)
    retention_days: float = 0.0  # 0: keep finished rows and reports forever
    rematch_hours: float = 24.0  # how long an unmatched report is retried against new results
    log_level: str = "info"
    # transient failures (5xx, timeouts, dropped connections, 429) reschedule the row in the outbox with
    # exponential backoff (retry_base doubling up to retry_max, jittered) for retry_for seconds after its
    # insert; only then does it fail. A provider outage costs time, not messages.
    retry_for: float = 4 * 3600.0
    retry_base: float = 5.0
    retry_max: float = 600.0
    listen_host: str = "127.0.0.1"
    listen_port: int = 8090
    public_url: str = ""  # what providers call back; default http://listen
    api_key: str | None = None  # the HTTP API's bearer key (from [http] api_key_env); None: no API
    log_format: str = "text"  # or "json": one object per line
    stats_every: float = 60.0  # seconds between the INFO lines with counts per provider (0: none)
    webhooks: WebhookSpec | None = None
    providers: dict[str, ProviderSpec] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)
    defaults: CampaignSpec = field(default_factory=lambda: CampaignSpec(""))
    campaigns: dict[str, CampaignSpec] = field(default_factory=dict)


def default_worker() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _num(loc: Located, section: str, t: dict[str, Any], key: str, default: float, *, minimum: float = 0.0,
         integer: bool = False, positive: bool = False) -> Any:
    v = t.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or (integer and not isinstance(v, int)):
        raise loc.error(section, key, f"must be a {'whole ' if integer else ''}number, not {v!r}")
    if v < minimum or (positive and v <= 0):
        raise loc.error(section, key, f"must be {'above' if positive else 'at least'} {minimum:g}, not {v!r}")
    return v


def _str(loc: Located, section: str, t: dict[str, Any], key: str, default: str | None = None) -> Any:
    v = t.get(key, default)
    if v is not None and not isinstance(v, str):
        raise loc.error(section, key, f"must be a string, not {v!r}")
    return v


def _env_name(loc: Located, section: str, key: str, v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
        raise loc.error(section, key, f"must name an environment variable, not {v!r}")
    return v


def _secret(loc: Located, section: str, key: str, v: Any, minimum: int) -> str:
    """A secret from the environment variable a setting names: present and long enough; never echoed."""
    env = _env_name(loc, section, key, v)
    value = os.environ.get(env) or ""
    if not value:
        raise loc.error(section, key, f"environment variable {env} is not set")
    if len(value) < minimum:
        raise loc.error(section, key, f"the secret in {env} is too short (at least {minimum} characters)")
    return value


def _table_name(loc: Located, d: dict[str, Any]) -> str:
    table = _str(loc, "daemon", d, "table", "outbox")
    if not re.fullmatch(r"([a-z_][a-z0-9_]{0,40}\.)?[a-z_][a-z0-9_]{0,40}", table):
        raise loc.error("daemon", "table", f"'{table}' must be a lower-case name, optionally schema.name")
    return table


def outbox_table(path: str | Path) -> str:
    """The outbox table a daemon file names, without reading any secret: `--print-schema` needs only this."""
    data, loc = read_toml(Path(path), "daemon")
    check_keys(loc, "", data, TOP)
    d = subtable(loc, data, "daemon")
    check_keys(loc, "daemon", d, DAEMON)
    return _table_name(loc, d)


def load_daemon(path: str | Path, worker: str | None = None) -> DaemonConfig:
    path = Path(path)
    data, loc = read_toml(path, "daemon")
    check_keys(loc, "", data, TOP)

    # -- [daemon] --------------------------------------------------------------------------
    d = subtable(loc, data, "daemon")
    check_keys(loc, "daemon", d, DAEMON)
    dsn_env = _env_name(loc, "daemon", "dsn_env", d.get("dsn_env", "DISPATCHER_DSN"))
    dsn = os.environ.get(dsn_env, "").strip()
    if not dsn:
        raise loc.error("daemon", "dsn_env" if "dsn_env" in d else None,
                        f"environment variable {dsn_env} is not set: it must hold the database URL, "
                        "postgresql://user:password@host:port/db")
    table = _table_name(loc, d)
    region = _str(loc, "daemon", d, "region")
    if region is not None and not valid_region(region):
        raise loc.error("daemon", "region", f"'{region}' is not a region code (ISO 3166 alpha-2, e.g. ES)")
    cfg = DaemonConfig(path=path, dsn=dsn, dsn_env=dsn_env, table=table, region=region.upper() if region else None)
    cfg.worker = worker or _str(loc, "daemon", d, "worker", "") or default_worker()
    if not re.fullmatch(r"[A-Za-z0-9._:@-]{1,100}", cfg.worker):
        raise loc.error("daemon", "worker", f"'{cfg.worker}' must be letters, digits and . _ : @ -")
    _tuning(loc, d, cfg)

    # -- [http] ----------------------------------------------------------------------------
    _http(loc, subtable(loc, data, "http"), cfg)
    cfg.webhooks = _webhooks(loc, subtable(loc, data, "webhooks"))

    # -- [providers.*] -----------------------------------------------------------------------
    ptables = subtable(loc, data, "providers")
    if not ptables:
        raise no_providers(loc)
    for alias, t in ptables.items():
        cfg.providers[alias] = _provider(loc, alias, t)
    check_failover(loc, {a: s.settings.failover for a, s in cfg.providers.items()},
                   {a: s.channel for a, s in cfg.providers.items()})

    # -- [routes] ----------------------------------------------------------------------------
    routes = subtable(loc, data, "routes")
    for name, v in routes.items():
        cfg.routes[name] = _route(loc, cfg, name, v)
    for alias, spec in cfg.providers.items():  # a channel with no route goes to its only provider
        if spec.channel not in cfg.routes:
            carriers = [a for a, s in cfg.providers.items() if s.channel == spec.channel]
            if len(carriers) == 1:
                cfg.routes[spec.channel] = Route(alias)

    # -- [defaults], [campaigns.*] -----------------------------------------------------------
    cfg.defaults = _campaign(loc, cfg, "defaults", "", subtable(loc, data, "defaults"))
    for name, t in subtable(loc, data, "campaigns").items():
        if not isinstance(t, dict):
            raise loc.error("campaigns", name, "must be a table")
        cfg.campaigns[name] = _campaign(loc, cfg, f"campaigns.{name}", name, t, cfg.defaults)
    return cfg




def _tuning(loc: Located, d: dict[str, Any], cfg: DaemonConfig) -> None:
    """The [daemon] table's switches and numbers, each checked, into `cfg`."""
    for key in ("transliterate", "gsm_pt"):
        v = d.get(key, False)
        if not isinstance(v, bool):
            raise loc.error("daemon", key, f"must be true or false, not {v!r}")
        setattr(cfg, key, v)
    cfg.lease = _num(loc, "daemon", d, "lease", cfg.lease, positive=True)
    cfg.heartbeat = _num(loc, "daemon", d, "heartbeat", cfg.heartbeat, minimum=0.05)
    cfg.dead_after = _num(loc, "daemon", d, "dead_after", max(cfg.dead_after, cfg.heartbeat * 3), positive=True)
    if cfg.dead_after < cfg.heartbeat * 2:
        raise loc.error("daemon", "dead_after", f"must be at least twice the heartbeat ({cfg.heartbeat * 2:g} s)")
    cfg.poll = _num(loc, "daemon", d, "poll", cfg.poll, minimum=0.01)
    cfg.claim = _num(loc, "daemon", d, "claim", cfg.claim, minimum=1, integer=True)
    cfg.max_in_flight = _num(loc, "daemon", d, "max_in_flight", 0, integer=True)
    cfg.stop_timeout = _num(loc, "daemon", d, "stop_timeout", cfg.stop_timeout, positive=True)
    cfg.max_claims = _num(loc, "daemon", d, "max_claims", cfg.max_claims, minimum=1, integer=True)
    cfg.retention_days = _num(loc, "daemon", d, "retention_days", 0)
    cfg.rematch_hours = _num(loc, "daemon", d, "rematch_hours", cfg.rematch_hours, positive=True)
    cfg.retry_for = _num(loc, "daemon", d, "retry_for", cfg.retry_for)
    cfg.retry_base = _num(loc, "daemon", d, "retry_base", cfg.retry_base, positive=True)
    cfg.retry_max = _num(loc, "daemon", d, "retry_max", max(cfg.retry_max, cfg.retry_base), positive=True)
    cfg.log_level = _str(loc, "daemon", d, "log_level", "info").lower()
    if cfg.log_level not in ("debug", "info", "warning", "error"):
        raise loc.error("daemon", "log_level", f"'{cfg.log_level}' must be debug, info, warning or error")
    cfg.log_format = _str(loc, "daemon", d, "log_format", "text").lower()
    if cfg.log_format not in ("text", "json"):
        raise loc.error("daemon", "log_format", f"'{cfg.log_format}' must be text or json")
    cfg.stats_every = _num(loc, "daemon", d, "stats_every", cfg.stats_every)


def _http(loc: Located, h: dict[str, Any], cfg: DaemonConfig) -> None:
    """[http]: where the API listens, the public URL providers call back, the API key."""
    check_keys(loc, "http", h, HTTP)
    listen = _str(loc, "http", h, "listen", "127.0.0.1:8090")
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise loc.error("http", "listen", f"'{listen}' must be host:port (port 0: any free port)")
    cfg.listen_host, cfg.listen_port = host.strip("[]") or "127.0.0.1", int(port)
    cfg.public_url = (_str(loc, "http", h, "public_url", "") or "").rstrip("/")
    if cfg.public_url and not cfg.public_url.startswith(("http://", "https://")):
        raise loc.error("http", "public_url", f"'{cfg.public_url}' must be an http(s) URL")
    if "api_key_env" in h:
        cfg.api_key = _secret(loc, "http", "api_key_env", h["api_key_env"], 16)


def _webhooks(loc: Located, w: dict[str, Any]) -> WebhookSpec | None:
    """[webhooks]: where status events are POSTed, and how (None: no webhooks)."""
    check_keys(loc, "webhooks", w, WEBHOOKS)
    if w:
        url = _str(loc, "webhooks", w, "url", "") or ""
        if not url.startswith(("http://", "https://")):
            raise loc.error("webhooks", "url", f"'{url}' must be an http(s) URL (required)")
        if "secret_env" not in w:
            raise loc.error("webhooks", None, "secret_env is required: the variable holding the signing secret")
        d0 = WebhookSpec(url, "")
        return WebhookSpec(
            url, _secret(loc, "webhooks", "secret_env", w["secret_env"], 16),
            batch=_num(loc, "webhooks", w, "batch", d0.batch, minimum=1, integer=True),
            max_age=_num(loc, "webhooks", w, "max_age", d0.max_age, positive=True),
            timeout=_num(loc, "webhooks", w, "timeout", d0.timeout, positive=True),
            backoff_max=_num(loc, "webhooks", w, "backoff_max", d0.backoff_max, positive=True))
    return None


def _provider(loc: Located, alias: str, t: Any) -> ProviderSpec:
    """One provider table: what a campaign's has (config.providers), and the daemon's delivery-report
    secret and matching rule."""
    section = f"providers.{alias}"
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", alias):
        raise loc.error(section, None, f"'{alias}' must be letters, digits, '_' or '-'")
    cls, settings, channel = provider_entry(loc, alias, t, "sms", extra=PROVIDER_EXTRA)
    secret = None
    if "dlr_secret_env" in t:
        env = _env_name(loc, section, "dlr_secret_env", t["dlr_secret_env"])
        secret = os.environ.get(env) or None
        if secret is None:
            raise loc.error(section, "dlr_secret_env", f"environment variable {env} is not set")
        if len(secret) < 16:
            raise loc.error(section, "dlr_secret_env", f"the secret in {env} is too short (at least 16 characters)")
        if not re.fullmatch(r"[A-Za-z0-9._~-]+", secret):
            raise loc.error(section, "dlr_secret_env", f"the secret in {env} must be letters, digits and . _ ~ - "
                            "(it travels in callback URLs)")
    match = t.get("dlr_match_recipient", not cls.ids_in_answers)  # else reports are paired by recipient
    if not isinstance(match, bool):
        raise loc.error(section, "dlr_match_recipient", f"must be true or false, not {match!r}")
    spec = ProviderSpec(alias, cls, settings, channel, secret, match)
    built(loc, alias, cls, settings)  # credentials and provider-specific settings, checked now
    return spec

def _route(loc: Located, cfg: DaemonConfig, name: str, v: Any) -> Route:
    section = "routes"
    if isinstance(v, str):
        if v not in cfg.providers:
            raise loc.error(section, name, f"'{v}' is not a provider ({', '.join(cfg.providers)})")
        return Route(v)
    if not isinstance(v, dict):
        raise loc.error(section, name, "must be a provider name or a table {default = ..., prefixes = {...}}")
    bad = set(v) - ROUTE
    if bad:
        raise loc.error(section, name, f"unknown setting(s) {', '.join(sorted(bad))}; known: default, prefixes")
    default = v.get("default")
    if default is not None and default not in cfg.providers:
        raise loc.error(section, name, f"default: '{default}' is not a provider ({', '.join(cfg.providers)})")
    prefixes = v.get("prefixes", {})
    if not isinstance(prefixes, dict):
        raise loc.error(section, name, "prefixes must be a table {\"+33\" = \"provider\"}")
    for p, alias in prefixes.items():
        if alias not in cfg.providers:
            raise loc.error(section, name, f"prefixes: '{p}' goes to '{alias}', which is not a provider")
        if not (p.startswith("+") and p[1:].isdigit()) and not (p.startswith("@") and "." in p):
            raise loc.error(section, name, f"prefixes: '{p}' must be '+' and digits (or an email domain '@x.com')")
    ordered = tuple(sorted(prefixes.items(), key=lambda kv: -len(kv[0])))
    return Route(default, ordered)


def _campaign(loc: Located, cfg: DaemonConfig, section: str, name: str, t: dict[str, Any],
              parent: CampaignSpec | None = None) -> CampaignSpec:
    check_keys(loc, section, t, CAMPAIGN)
    base = parent or CampaignSpec("")
    c = CampaignSpec(name, sender=base.sender, subject=base.subject, options=dict(base.options),
                     template=base.template, route=base.route, provider=base.provider, schedule=base.schedule,
                     retry_for=base.retry_for)
    if "retry_for" in t:
        c.retry_for = _num(loc, section, t, "retry_for", 0)
    for key in ("sender", "subject"):
        if key in t:
            setattr(c, key, _str(loc, section, t, key))
    if "options" in t:
        if not isinstance(t["options"], dict):
            raise loc.error(section, "options", "must be a table")
        c.options = {**c.options, **t["options"]}
    if "template" in t:
        src = _str(loc, section, t, "template")
        try:
            c.template = compile_template(src)
        except TemplateError as e:
            raise loc.error(section, "template", str(e)) from None
    if "route" in t:
        c.route = _str(loc, section, t, "route")
        if c.route not in cfg.routes:
            raise loc.error(section, "route", f"'{c.route}' is not in [routes] ({', '.join(cfg.routes) or 'none'})")
    if "provider" in t:
        c.provider = _str(loc, section, t, "provider")
        if c.provider not in cfg.providers:
            raise loc.error(section, "provider", f"'{c.provider}' is not a provider ({', '.join(cfg.providers)})")
    if "window" in t and "windows" in t:
        raise loc.error(section, "windows", "use `window` or `windows`, not both")
    if "window" in t or "windows" in t:
        key = "window" if "window" in t else "windows"
        specs = t[key] if key == "windows" else [t[key]]
        if not isinstance(specs, list) or not specs:
            raise loc.error(section, key, "must be a table (window) or a list of tables (windows)")
        windows = []
        for w in specs:
            if not isinstance(w, dict):
                raise loc.error(section, key, "each window must be a table {days, hours, tz}")
            bad = set(w) - WINDOW
            if bad:
                raise loc.error(section, key, f"unknown setting(s) {', '.join(sorted(bad))}; known: days, hours, tz")
            try:
                windows.append(Window.parse(str(w.get("days", "*")), str(w.get("hours", "*")), str(w.get("tz", "UTC"))))
            except WindowError as e:
                raise loc.error(section, key, str(e)) from None
        c.schedule = Schedule(tuple(windows))
    return c
