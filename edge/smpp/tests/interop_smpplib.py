"""Interop peer for edge/smpp/tests/interop.rs: PyPI `smpplib` (an independent SMPP 3.4
implementation) encodes a fixed set of PDUs and decodes ours.

Output, one record per line:
  ENC <case> <hex>                      smpplib's encoding of <case>
  DEC <case> <field> i <int>            a field smpplib decoded from our bytes (integer)
  DEC <case> <field> b <hex>            ... (octets)
Input (stdin), one per line: <case> <hex> (our encoding of <case>).
Exit 3 with a message when smpplib is not importable.
"""

import sys

try:
    import smpplib.smpp
    import smpplib.command
except ImportError as e:  # pragma: no cover
    print(f"smpplib is not importable ({e}); run: pip install smpplib", file=sys.stderr)
    sys.exit(3)

DLR = (b"id:msg-0001 sub:001 dlvrd:001 submit date:2611261903 "
       b"done date:2611261904 stat:DELIVRD err:000 text:hello")


def make(name, seq, **kw):
    p = smpplib.smpp.make_pdu(name, sequence=seq, **kw)
    # smpplib's constructor keeps the default client's sequence; set ours explicitly.
    p.sequence = seq
    return p


CASES = {
    "bind_transceiver": lambda: make(
        "bind_transceiver", 1, system_id="esme01", password="secret",
        system_type="VMA", addr_ton=1, addr_npi=1, address_range=""),
    "bind_transceiver_resp": lambda: make(
        "bind_transceiver_resp", 1, system_id="SMSC", sc_interface_version=0x34),
    "submit_sm": lambda: make(
        "submit_sm", 2, service_type="", source_addr_ton=1, source_addr_npi=1,
        source_addr="447700900000", dest_addr_ton=1, dest_addr_npi=1,
        destination_addr="447700900001", esm_class=0x40, protocol_id=0,
        priority_flag=1, schedule_delivery_time="", validity_period="",
        registered_delivery=1, replace_if_present_flag=0, data_coding=8,
        sm_default_msg_id=0, short_message=b"\x05\x00\x03\x2a\x02\x01\x00h\x00i",
        user_message_reference=42, sar_msg_ref_num=0x1234, sar_total_segments=2,
        sar_segment_seqnum=1),
    "submit_sm_payload": lambda: make(
        "submit_sm", 3, service_type="CMT", source_addr_ton=5, source_addr_npi=0,
        source_addr="Siphon", dest_addr_ton=1, dest_addr_npi=1,
        destination_addr="447700900001", esm_class=0, protocol_id=0,
        priority_flag=0, schedule_delivery_time="261126190300000+",
        validity_period="000001000000000R", registered_delivery=0,
        replace_if_present_flag=0, data_coding=0, sm_default_msg_id=0,
        message_payload=b"L" * 300),
    "submit_sm_resp": lambda: make("submit_sm_resp", 2, message_id="msg-0001"),
    "deliver_sm": lambda: make(
        "deliver_sm", 7, service_type="", source_addr_ton=1, source_addr_npi=1,
        source_addr="447700900001", dest_addr_ton=1, dest_addr_npi=1,
        destination_addr="447700900000", esm_class=0x04, protocol_id=0,
        priority_flag=0, schedule_delivery_time="", validity_period="",
        registered_delivery=0, replace_if_present_flag=0, data_coding=0,
        sm_default_msg_id=0, short_message=DLR,
        network_error_code=b"\x03\x00\x00", message_state=2,
        receipted_message_id="msg-0001"),
    "deliver_sm_resp": lambda: make("deliver_sm_resp", 7),
    "enquire_link": lambda: make("enquire_link", 8),
    "enquire_link_resp": lambda: make("enquire_link_resp", 8),
    "unbind": lambda: make("unbind", 9),
    "unbind_resp": lambda: make("unbind_resp", 9),
    "generic_nack": lambda: make("generic_nack", 10, status=0x03),
}


def emit_fields(case, p):
    print(f"DEC {case} command b {p.command.encode().hex()}")
    print(f"DEC {case} status i {p.status}")
    print(f"DEC {case} sequence i {p.sequence}")
    for field in getattr(p, "params_order", ()):
        v = getattr(p, field, None)
        if v is None:
            continue
        if isinstance(v, int):
            print(f"DEC {case} {field} i {v}")
        else:
            if isinstance(v, str):
                v = v.encode("latin-1")
            print(f"DEC {case} {field} b {v.hex()}")


def main():
    for case, build in CASES.items():
        print(f"ENC {case} {build().generate().hex()}")
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        case, hexdata = line.split(" ", 1)
        p = smpplib.smpp.parse_pdu(bytes.fromhex(hexdata), sequence=0)
        emit_fields(case, p)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
