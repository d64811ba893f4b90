"""The sanitizing stages: each transforms one packet at a time."""
