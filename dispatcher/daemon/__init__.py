"""`dispatcher daemon DAEMON.toml`: drain a PostgreSQL outbox, take messages over HTTP, send status
webhooks, receive delivery reports, for months.

- outbox/     the tables (schema/*.sql), named queries, the row validator, the Source / Sink / Preparer
- histogram.py latency histograms kept by hand for /metrics
- heartbeat.py the worker registry: register, heartbeat, the rate split between live workers
- maintenance.py the rescuer (dead workers' claims) and the cleaner (retention), the outbox's depth
- delivery_reports.py the delivery-report endpoint (each provider module parses its own), matching, latest status
- schedule.py sending windows (days and hours in a time zone)
- api.py      the HTTP API: POST /v1/messages, GET /v1/messages/{id} and ?key=; openapi.py its document
- webhooks.py signed status webhooks from the events table (written by triggers on the outbox)
- page.py     the operator's page at / (the static files in page/): a client of the same API
- health.py   provider states from the engine's snapshot: logged as they change, for /healthz
- metrics.py  /metrics (Prometheus) and /healthz
- config.py   the daemon's TOML, validated with file:line errors
- service.py  the Daemon that puts them together; cli.py its command line
"""
