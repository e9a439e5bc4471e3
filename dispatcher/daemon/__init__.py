"""`dispatcher daemon DAEMON.toml`: drain a PostgreSQL outbox, receive delivery reports, for months.

- outbox.py   the tables, claims with leases, the Source / Sink / Engine of the outbox
- workers.py  worker registry, heartbeats, reaping dead workers' claims, the rate split
- reports.py  the delivery-report endpoint, parsers for every provider, matching, latest status
- schedule.py sending windows (days and hours in a time zone)
- metrics.py  /metrics (Prometheus) and /healthz
- config.py   the daemon's TOML, validated with file:line errors
- service.py  the Daemon that puts them together; cli.py its command line
"""
