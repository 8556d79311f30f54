"""Packet-level commands (netsem replay); registered by cli.build_parser."""


def add_replay_parser(sub, common) -> None:
    pass
