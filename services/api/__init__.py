"""The xsell HTTP API: in-app offers for the shop's backend, e-mail link endpoints, and a demo shop."""
