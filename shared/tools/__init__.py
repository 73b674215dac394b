"""Everything around the functions: the local gateway and Broker, manifests, deployment, the command lines."""
