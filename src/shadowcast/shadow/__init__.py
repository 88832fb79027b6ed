"""Shadow tunnels: same-path VXLAN overlays carrying STAMP probes."""
