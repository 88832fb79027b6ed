"""Collection: flow-export decoders (NetFlow v5/v9, IPFIX, sFlow v5), UDP listeners, pcaps."""
