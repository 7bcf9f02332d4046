"""The Swarm runtime: jobs on the nodes of a Docker Swarm (runtime.py), their services
and tasks (services.py), the nodes and the short tasks run on them (nodes.py), and a
job's disk there (quota.py)."""
