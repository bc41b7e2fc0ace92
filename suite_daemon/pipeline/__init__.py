"""From inputs to durable, numbered, published events: routing, the correlator seam and the loop."""
