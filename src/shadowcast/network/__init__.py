"""The network as every stage sees it: routing over a topology, and a simulated network.

Below every stage that uses it (forecast maps OD demand onto links, shadow resolves paths,
plan and act change the routing, the replay simulates the network): nothing here imports a
stage.
"""
