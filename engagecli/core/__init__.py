"""The pure core: models, time rules, the busy rule, the slot engine, recurrence expansion.

Nothing here imports typer, rich, requests, a provider or the store; functions take `now` and data and
return data (tests/test_layering.py checks it). icalendar and recurring_ical_events are imported only inside
`core.ical`, on first use.
"""
