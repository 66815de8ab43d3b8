"""The admin site (Klein + Jinja2) and its JSON REST API: see the admin issue."""
