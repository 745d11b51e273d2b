"""Plugins: the hooks they implement (hookspecs), the built-in ones, and the host that loads them."""
