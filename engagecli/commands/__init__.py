"""Thin commands: parse options, call a service, render. No SQL, no HTTP here."""
