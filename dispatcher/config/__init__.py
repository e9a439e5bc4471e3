"""Campaign files (TOML) into a validated Campaign, or one clear line saying what is wrong.

Every error names the file, the line where it can be found, and the setting. Relative
paths are relative to the campaign file. Credentials are never in the file: a provider
names the environment variables that hold them.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..blast.campaign import Campaign
from ..errors import ConfigError, SinkError, SourceError
from ..model import Content
from ..phone import valid_region
from ..providers import kinds
from ..providers.base import Provider, Settings
from ..render import Template, TemplateError, compile_template
from ..routing import Fixed, build_router
from ..sinks.base import Sink
from ..sources.base import CHUNK_SIZE, Source
from ..state import RunState
from .providers import built, check_failover, no_providers, provider_entry
from .reports import report_settings
from .toml import Located, check_keys, closest, read_toml, subtable

TOP = {"run_id", "state_dir", "on_doubt", "source", "message", "messages", "providers", "routing", "sinks", "engine",
       "reports"}
SOURCE = {"type", "path", "format", "recipient", "id", "delimiter", "encoding",
          "dsn_env", "table", "where", "query", "key", "fetch"}
MESSAGE = {"channel", "template", "template_file", "sender", "subject", "region", "transliterate", "gsm_pt", "options",
           "recipient", "allow_empty", "allow_landlines"}
MOBILE_CHANNELS = frozenset({"sms", "whatsapp", "rcs"})  # a landline or a premium number cannot receive these
ENGINE = {"chunk_size", "max_in_flight", "workers"}
SINK = {"type", "path", "dsn_env", "table", "mark_sent"}


def default_run_id(path: Path) -> str:
    return f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclasses.dataclass
class Overrides:
    run_id: str | None = None
    source: str | None = None
    rate: float | None = None
    concurrency: int | None = None
    url: str | None = None
    on_doubt: str | None = None
    state_dir: str | None = None
    dry_run: bool = False
    retry_failed: str | None = None  # run id whose failed records this run sends
    allow_changed: bool = False  # resume although the source or the message changed
    workers: int | None = None  # processes sharing the run (engine.workers)
    limit: int | None = None  # a test send: the first N sendable records, as a run of its own


def load_campaign(path: str | Path, o: Overrides | None = None) -> Campaign:
    o = o or Overrides()
    path = Path(path)
    data, loc = read_toml(path, "campaign")
    base = path.parent
    check_keys(loc, "", data, TOP)

    state_dir = state_dir_of(path, data, o.state_dir)
    if o.retry_failed and not o.run_id:
        run_id = _retry_run_id(state_dir, o.retry_failed)
    elif o.limit and not o.run_id:  # a test send is a run of its own, never the campaign's run
        run_id = f"{data.get('run_id') or path.stem}-limit{o.limit}-{time.strftime('%Y%m%d-%H%M%S')}"
    else:
        run_id = o.run_id or data.get("run_id") or default_run_id(path)
    if o.retry_failed and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", o.retry_failed):
        raise ConfigError(f"--retry-failed {o.retry_failed!r}: not a run id (letters, digits, '.', '_' or '-')")
    o = recorded_overrides(state_dir, o)
    if o.limit is None:  # a resume of a test send stays one: it never goes on to the whole audience
        was = ((RunState(state_dir, str(run_id)).manifest or {}).get("origin") or {}).get("overrides") or {}
        if was.get("limit"):
            o = dataclasses.replace(o, limit=int(was["limit"]))
    if o.retry_failed and run_id == o.retry_failed:
        raise ConfigError(f"--run-id {run_id}: a retry of run '{run_id}' needs a run id of its own "
                          f"(leave --run-id out for '{_retry_run_id(state_dir, o.retry_failed)}')")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", str(run_id)):
        raise loc.error("", "run_id", f"'{run_id}' must be letters, digits, '.', '_' or '-'")
    on_doubt = o.on_doubt or data.get("on_doubt", "resend")
    if on_doubt not in ("resend", "hold"):
        raise loc.error("", "on_doubt", f"'{on_doubt}' must be \"resend\" or \"hold\"")
    report_settings(loc, data)  # checked with the rest; the blast reads it (config/reports.py)
    engine = subtable(loc, data, "engine")
    check_keys(loc, "engine", engine, ENGINE)
    chunk_size = engine.get("chunk_size", CHUNK_SIZE)
    if not isinstance(chunk_size, int) or not 1 <= chunk_size <= 100_000:
        raise loc.error("engine", "chunk_size", "must be a whole number from 1 to 100000")

    msg = subtable(loc, data, "message")
    known = sorted({ch for cls in kinds().values() for ch in cls.channels})
    _known_channel(loc, "message", msg.get("channel", "sms"), known)
    providers, channels = _providers(loc, data, o, msg.get("channel", "sms"), known)

    contents, sections, region = _messages(loc, base, data, msg, known, providers, channels)

    # -- source --------------------------------------------------------------------------------
    src = subtable(loc, data, "source")
    check_keys(loc, "source", src, SOURCE)
    source = _source(loc, base, src, o, chunk_size)
    columns = source.columns()
    if columns is not None:
        for channel, content in contents.items():
            section = sections[channel]
            if content.recipient and content.recipient not in columns:
                raise loc.error(section, "recipient", f"no column '{content.recipient}' in {source.name} "
                                f"(columns: {', '.join(columns)})")
            for name in content.template.variables:
                if name not in columns:
                    hint = closest(name, tuple(columns))
                    raise loc.error(section, "template", f"unknown template variable '{name}'"
                                    + (f" (did you mean '{hint}'?)" if hint else "")
                                    + f"; {source.name} has columns: {', '.join(columns)}")

    route = _router(loc, data, providers, channels, src.get("recipient", "phone"),
                    str(region).upper() if region else None)
    check_failover(loc, {a: p.settings.failover for a, p in providers.items()}, channels)

    sinks = _sinks(loc, base, data, run_id)
    workers = _workers(loc, engine, o, providers, source, sinks)
    # a resumed retry run stays a retry: it must not send the records its original run finished
    retried = o.retry_failed or (RunState(state_dir, str(run_id)).manifest or {}).get("retry_of")
    retry_of = (retried, _sinks(loc, base, data, retried)[0]) if retried else None
    return Campaign(
        run_id=str(run_id), source=source, sinks=sinks, providers=providers, contents=contents,
        channels=channels, route=route, recipient=src.get("recipient", "phone"), id_column=src.get("id", ""),
        region=str(region).upper() if region else None,
        transliterate=bool(msg.get("transliterate", False)), gsm_pt=bool(msg.get("gsm_pt", False)),
        chunk_size=chunk_size, max_in_flight=int(engine.get("max_in_flight", 0)), on_doubt=on_doubt,
        state_dir=state_dir, retry_of=retry_of, allow_changed=o.allow_changed,
        origin=origin_of(path, o, sinks[0]), processes=workers,
    )




RECORDED = ("source", "rate", "concurrency", "workers", "url", "on_doubt", "state_dir", "limit")  # what a resume repeats


def origin_of(path: Path, o: Overrides, primary: Sink) -> dict[str, Any]:
    """What a run was started as: its campaign file, the overrides in force (paths made absolute) and its
    results file (or the PostgreSQL sink's table and the variable naming its database), so `dispatcher status`
    prints a resume command that works from anywhere, a retry reads the same source, and `runs` counts what
    the sink holds (a killed attempt's results included)."""
    from ..sinks.files import CsvSink, JsonlSink
    given = {k: getattr(o, k) for k in RECORDED if getattr(o, k) is not None}
    for k in ("source", "state_dir"):
        if k in given:
            given[k] = str(Path(given[k]).resolve())
    out: dict[str, Any] = {"campaign": str(path.resolve()), "overrides": given}
    if isinstance(primary, (JsonlSink, CsvSink)):
        out["results"] = {"type": "csv" if isinstance(primary, CsvSink) else "jsonl",
                          "path": str(primary.path.resolve())}
    elif isinstance(getattr(primary, "dsn_env", None), str) and isinstance(getattr(primary, "table", None), str):
        out["results"] = {"type": "postgres", "table": primary.table, "dsn_env": primary.dsn_env}  # no DSN: a secret
    return out


def recorded_overrides(state_dir: Path, o: Overrides) -> Overrides:
    """A retry (`--retry-failed RUN`) takes the source and overrides RUN recorded, unless given again: it
    retries the records of RUN's own audience, through the same providers."""
    if not o.retry_failed:
        return o
    m = RunState(state_dir, o.retry_failed).manifest
    if m is None:
        return o
    given = dict((m.get("origin") or {}).get("overrides") or {})
    path = ((m.get("identity") or {}).get("source") or {}).get("path")
    if path and "source" not in given:
        given["source"] = path
    fill = {k: v for k, v in given.items() if k in RECORDED and k != "state_dir" and getattr(o, k) is None}
    return dataclasses.replace(o, **fill)


def _messages(loc: Located, base: Path, data: dict[str, Any], msg: dict[str, Any], known: list[str],
              providers: dict[str, Provider], channels: dict[str, str]) -> tuple[dict[str, Content], dict[str, str], Any]:
    """[message] and [messages.CHANNEL]: the content of each channel (checked by the providers that carry
    it), the section each is written in, and the default region."""
    contents: dict[str, Content] = {}
    sections: dict[str, str] = {}  # channel -> where its message is written
    region = msg.get("region")
    tables = {"message": msg, **{f"messages.{k}": v for k, v in subtable(loc, data, "messages").items()}}
    for section, table in tables.items():
        if not table:
            continue
        if not isinstance(table, dict):
            raise loc.error(section, None, "must be a table")
        check_keys(loc, section, table, MESSAGE)
        channel = table.get("channel", section.split(".", 1)[1] if "." in section else "sms")
        _known_channel(loc, section, channel, known, key="channel" if "channel" in table else None)
        template = _template(loc, base, section, table)
        landlines = table.get("allow_landlines", False)
        if not isinstance(landlines, bool):
            raise loc.error(section, "allow_landlines", "must be true or false")
        sections[channel] = section
        contents[channel] = Content(channel, template, str(table.get("sender", "")), str(table.get("subject", "")),
                                    dict(table.get("options", {})), str(table.get("recipient", "")),
                                    mobile_only=channel in MOBILE_CHANNELS and not landlines)
        region = table.get("region", region)
    if not contents:
        raise loc.error("message", None, "required: a [message] table with a `template`")
    if region is not None and not valid_region(str(region)):
        raise loc.error("message", "region", f"'{region}' is not a region code (ISO 3166 alpha-2, e.g. ES)")
    for alias, channel in channels.items():
        if channel not in contents:
            raise loc.error(f"providers.{alias}", "channel", f"no message for channel '{channel}': add [messages.{channel}]")
        try:
            contents[channel] = providers[alias].validate(channel, contents[channel])
        except ConfigError as e:
            raise _content_error(loc, sections[channel], alias, e) from None
    return contents, sections, region

def _providers(loc: Located, data: dict[str, Any], o: Overrides, default_channel: str,
               known: list[str]) -> tuple[dict[str, Provider], dict[str, str]]:
    """The campaign's providers by alias (with the command line's --rate, --concurrency, --url), and
    the channel each carries."""
    ptables = subtable(loc, data, "providers")
    if not ptables:
        raise no_providers(loc)

    def adjust(settings: Settings) -> None:
        for key in ("rate", "concurrency", "url"):
            if getattr(o, key) is not None:
                setattr(settings, key, getattr(o, key))

    def url_error(e: ConfigError) -> ConfigError:
        return ConfigError(f"--url: {e}") if o.url is not None else loc.error(section, "url", str(e))

    providers: dict[str, Provider] = {}
    channels: dict[str, str] = {}
    for alias, table in ptables.items():
        section = f"providers.{alias}"
        if isinstance(table, dict) and "channel" in table:
            _known_channel(loc, section, table["channel"], known)
        cls, settings, channel = provider_entry(loc, alias, table, default_channel, adjust=adjust, url_error=url_error)
        providers[alias] = built(loc, alias, functools.partial(_unauthenticated, cls) if o.dry_run else cls, settings)
        channels[alias] = channel
    return providers, channels

def _workers(loc: Located, engine: dict[str, Any], o: Overrides, providers: dict[str, Provider], source: Source,
             sinks: list[Sink]) -> int:
    """engine.workers (or --workers): processes sharing the run, each reading its part of a file source
    and appending to the same result files. Each needs a connection of its own to every provider, and
    what it writes must be a file it can append to beside the others."""
    workers = o.workers if o.workers is not None else engine.get("workers", 1)

    def bad(why: str) -> ConfigError:
        return ConfigError(f"--workers {workers}: {why}") if o.workers is not None else \
            loc.error("engine", "workers", why)
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 64:
        raise bad("must be a whole number from 1 to 64")
    if workers == 1:
        return 1
    if not source.splits:
        raise bad(f"several workers read a CSV or JSONL file; {source.name} is not one (use 1)")
    for sink in sinks:
        if not sink.shared:
            raise bad(f"several workers append to JSONL or CSV result files; {sink.name} is not one (use 1)")
    for alias, p in providers.items():
        concurrency = p.settings.concurrency or p.default_concurrency
        if concurrency < workers:
            raise bad(f"providers.{alias} allows {concurrency} request(s) in flight, fewer than the workers "
                      f"(each worker needs one of its own)")
    return workers


def state_dir_of(path: Path, data: dict[str, Any], override: str | None = None) -> Path:
    """Where a campaign's runs live: --state-dir, else its `state_dir` (default .dispatcher) beside the file."""
    return Path(override) if override else path.parent / str(data.get("state_dir", ".dispatcher"))


def _retry_run_id(state_dir: Path, old: str) -> str:
    """`OLD-retry`, or `OLD-retry2`, ... : the first that is not a run already (a retry of a retry is fine)."""
    n = 1
    while True:
        rid = f"{old}-retry" if n == 1 else f"{old}-retry{n}"
        if not RunState(state_dir, rid).exists:
            return rid
        n += 1
def _known_channel(loc: Located, section: str, channel: object, known: list[str], key: str | None = "channel") -> None:
    if channel not in known:
        hint = closest(str(channel), tuple(known))
        raise loc.error(section, key, f"unknown channel {channel!r}" + (f" (did you mean '{hint}'?)" if hint else "")
                        + f"; known: {', '.join(known)}")


def _template(loc: Located, base: Path, section: str, table: dict[str, Any]) -> Template:
    """The section's template, compiled; an error names the template's file, line and column."""
    allow = table.get("allow_empty", [])
    if not (allow is True or (isinstance(allow, list) and all(isinstance(a, str) for a in allow))):
        raise loc.error(section, "allow_empty", "must be a list of template variable names (or true for all)")
    source_text = table.get("template")
    where: Path | None = None
    if "template_file" in table:
        where = base / str(table["template_file"])
        try:
            source_text = where.read_text(encoding="utf-8")
        except OSError as e:
            raise loc.error(section, "template_file", f"cannot read ({e.strerror or e})") from None
        except UnicodeDecodeError:
            raise loc.error(section, "template_file", f"{where} is not UTF-8 text") from None
    if not isinstance(source_text, str) or not source_text:
        raise loc.error(section, "template", "required: the message text, with {variables}")
    try:
        template = compile_template(source_text, allow_empty=allow)
    except TemplateError as e:
        if where is None:
            raise loc.error(section, "template", str(e)) from None
        raise ConfigError(f"{where}:{e.line}:{e.column}: {e} ({section}.template_file in "
                          f"{loc.path}:{loc.line(section, 'template_file')})") from None
    if allow is not True:
        for name in allow:
            if name not in template.variables:
                raise loc.error(section, "allow_empty", f"'{name}' is not a variable of the template "
                                f"(it reads: {', '.join(template.variables) or 'none'})")
    return template


def _content_error(loc: Located, section: str, alias: str, e: ConfigError) -> ConfigError:
    """A provider's `message.KEY: ...` complaint, placed at the section and line it is about."""
    text = str(e)
    key, sep, rest = text.partition(": ")
    path = key.split(".")
    if not sep or path[0] != "message" or len(path) < 2:
        return loc.error(section, None, f"{text} (providers.{alias})")
    return loc.error(section, path[1], f"{rest} (providers.{alias})") if len(path) == 2 else \
        ConfigError(f"{loc.path}:{loc.line(section, path[1]) or ''}: {'.'.join([section, *path[1:]])}: {rest} "
                    f"(providers.{alias})")


def _unauthenticated(cls: type[Provider], alias: str, settings: Settings) -> Provider:
    """A dry run needs the provider's rules, not its credentials."""
    p = cls.__new__(cls)
    Provider.__init__(p, alias, settings)
    return p


def _source(loc: Located, base: Path, src: dict[str, Any], o: Overrides, chunk_size: int) -> Source:
    kind = src.get("type", "file")
    try:
        if kind == "file":
            from ..sources.files import FileSource
            raw = o.source or src.get("path")
            if not raw:
                raise loc.error("source", "path", "required: the CSV or JSONL file of recipients")
            p = Path(raw) if o.source else base / raw
            return FileSource(p, fmt=src.get("format", ""), recipient=src.get("recipient", "phone"),
                              id_column=src.get("id", ""), delimiter=src.get("delimiter", ","),
                              encoding=src.get("encoding", "utf-8"), chunk_size=chunk_size)
        if kind == "postgres":
            try:
                from ..sources.postgres import PostgresSource
            except ImportError:
                raise loc.error("source", "type", "PostgreSQL sources are not available in this build") from None
            return PostgresSource.from_config(src, chunk_size)
    except SourceError as e:
        raise ConfigError(f"{loc.path}:{loc.line('source', 'path') or ''}: source: {e}") from None
    raise loc.error("source", "type", f"unknown source type '{kind}' (file or postgres)")


def _sinks(loc: Located, base: Path, data: dict[str, Any], run_id: str) -> list[Sink]:
    from ..sinks.files import CsvSink, JsonlSink
    specs = data.get("sinks", [{"type": "jsonl", "path": "results/{run_id}.jsonl"}])
    if not isinstance(specs, list):
        raise loc.error("", "sinks", "must be a list of [[sinks]] tables")
    out: list[Sink] = []
    for spec in specs:
        check_keys(loc, "sinks", spec, SINK)
        kind = spec.get("type", "jsonl")
        if kind in ("jsonl", "csv"):
            if "path" not in spec:
                raise loc.error("sinks", "path", f"required for a {kind} sink")
            p = base / str(spec["path"]).replace("{run_id}", run_id)
            out.append(JsonlSink(p) if kind == "jsonl" else CsvSink(p))
        elif kind == "postgres":
            try:
                from ..sinks.postgres import PostgresSink
            except ImportError:
                raise loc.error("sinks", "type", "PostgreSQL sinks are not available in this build") from None
            try:
                out.append(PostgresSink.from_config(spec, run_id, source=subtable(loc, data, "source")))
            except SinkError as e:
                raise loc.error("sinks", "type", str(e)) from None
        else:
            raise loc.error("sinks", "type", f"unknown sink type '{kind}' (jsonl, csv or postgres)")
    return out


def _router(loc: Located, data: dict[str, Any], providers: dict[str, Provider], channels: dict[str, str],
            recipient: str, region: str | None) -> Callable[[dict[str, Any]], str]:
    routing = subtable(loc, data, "routing")
    if not routing:
        standby = {p.settings.failover for p in providers.values()}
        if len(set(providers) - standby) > 1:
            raise loc.error("", None, "several providers: add a [routing] table saying which records go where")
        return Fixed(next(a for a in providers if a not in standby))
    try:
        return build_router(routing, providers, channels, recipient, region)
    except ConfigError as e:
        raise loc.error("routing", None, str(e)) from None
