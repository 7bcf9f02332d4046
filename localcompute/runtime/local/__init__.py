"""The local Docker engine as a runtime: docker.py (DockerRuntime, the only module that
imports docker-py, and pump.py for its blocking streams), disk.py (a job's disk quota on
this host: an XFS project or a loop-mounted image) and hostinfo.py (what this host
offers: cores, memory, disk, GPUs). Only runtime/choice.py names it to the layers above.
"""
