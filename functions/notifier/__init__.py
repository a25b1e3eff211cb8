"""The notifier remediator: formats alerts from the severity topics for chat and e-mail."""
