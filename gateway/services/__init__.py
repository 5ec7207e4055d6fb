"""Domain services: where decisions are made; views only parse and shape."""
