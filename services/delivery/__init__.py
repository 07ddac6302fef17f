"""E-mail delivery of offer decisions: render, a durable outbox, SMTP, and the consuming service.

`xsell deliver` runs `services.delivery.service.DeliveryService`; `infra.smtp_capture` is the local
SMTP server that stores every message it receives under `XSELL_HOME/mail`.
"""
