"""Sans-IO SPICE wire layer: enums, message schema, framing, link stage, tickets."""
