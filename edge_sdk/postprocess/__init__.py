"""Post-processors by task: raw model outputs -> results a user reads (labels, boxes, speech)."""
