"""The domain, which knows neither HTTP, SQL nor Docker: statuses, errors, the job model,
the settings."""
