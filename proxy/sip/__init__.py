"""The SIP layer: a sans-IO core (parser, SDP, transactions, dialogs) and its transport.

Nothing here but ``transport.py`` imports asyncio, socket or time: input is bytes and the
current time, output is bytes to send and events (see ``core.SipCore``).
"""
