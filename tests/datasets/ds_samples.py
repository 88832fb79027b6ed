"""Small input files shared by the datasets tests."""

from __future__ import annotations

NS = 'xmlns="http://sndlib.zib.de/network" version="1.0"'


def matrix(time: str, demands: list[tuple[str, str, str]], nodes: str = "A B C") -> str:
    node_xml = "".join(
        f'<node id="{n}"><coordinates><x>1.0</x><y>2.0</y></coordinates></node>'
        for n in nodes.split()
    )
    dem_xml = "".join(
        f'<demand id="{s}_{t}"><source>{s}</source><target>{t}</target>'
        f"<demandValue> {v} </demandValue></demand>"
        for s, t, v in demands
    )
    return (
        f'<?xml version="1.0"?>\n<network {NS}>\n <meta>\n  <granularity>5min</granularity>\n'
        f"  <time>{time}</time>\n  <unit>MBITPERSEC</unit>\n </meta>\n"
        f' <networkStructure>\n  <nodes coordinatesType="geographical">{node_xml}</nodes>\n'
        "  <links>\n  </links>\n </networkStructure>\n"
        f" <demands>\n{dem_xml}\n </demands>\n</network>\n"
    )


CSV_OK = "time,src,dst,value\n2024-01-01T00:00:00Z,A,B,1.5\n2024-01-01T00:05:00Z,A,B,2\n"


def sndlib_network(links: str) -> str:
    return (
        f'<?xml version="1.0"?>\n<network {NS}>\n <networkStructure>\n'
        ' <nodes coordinatesType="geographical">\n'
        '  <node id="A"><coordinates><x>1</x><y>2</y></coordinates></node>\n'
        '  <node id="B"><coordinates><x>3</x><y>4</y></coordinates></node>\n'
        f" </nodes>\n <links>\n{links}\n </links>\n </networkStructure>\n</network>\n"
    )


def link(lid: str, s: str, t: str, cap: str = "100.0") -> str:
    return (
        f'<link id="{lid}"><source>{s}</source><target>{t}</target>'
        f"<preInstalledModule><capacity>{cap}</capacity><cost>0</cost></preInstalledModule></link>"
    )


GRAPHML = """<?xml version="1.0" encoding="utf-8"?>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns">
  <key attr.name="LinkSpeedRaw" attr.type="double" for="edge" id="d1" />
  <key attr.name="LinkLabel" attr.type="string" for="edge" id="d2" />
  <key attr.name="LinkSpeed" attr.type="string" for="edge" id="d3" />
  <key attr.name="LinkSpeedUnits" attr.type="string" for="edge" id="d4" />
  <key attr.name="label" attr.type="string" for="node" id="d5" />
  <key attr.name="Longitude" attr.type="double" for="node" id="d6" />
  <key attr.name="Latitude" attr.type="double" for="node" id="d7" />
  <graph edgedefault="undirected">
    <node id="0">
      <data key="d5">Oslo</data><data key="d6">10.7</data><data key="d7">59.9</data>
    </node>
    <node id="1"><data key="d5">Bergen</data></node>
    <node id="2"><data key="d5">Oslo</data></node>
    <edge source="0" target="1"><data key="d1">2500000000.0</data></edge>
    <edge source="0" target="1"><data key="d3">1</data><data key="d4">G</data></edge>
    <edge source="1" target="2"><data key="d2">STM-1 155 Mbps</data></edge>
    <edge source="2" target="0"></edge>
    EXTRA
  </graph>
</graphml>
"""
