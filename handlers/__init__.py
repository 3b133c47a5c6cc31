"""Handler modules: each exposes ``handle(payload, context)``; pick them with WEBHOOK_HANDLERS."""
