"""The shared render service: surfaces, drawables and fan-out to display pipes."""
