"""Code that runs on the box: standard library only, shipped to the box as source."""
