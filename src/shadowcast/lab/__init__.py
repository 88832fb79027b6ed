"""A backbone lab in network namespaces: routers, shaped links, edge VTEPs, cross traffic."""
