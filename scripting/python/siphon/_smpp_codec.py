"""The SMPP 3.4 tables and TLV codec of ``siphon.smpp``: status names, standard TLVs, and
the TLV encoding the send helpers use. Pure Python (no ``_siphon``), so the SDK's
``SmppTestHarness`` uses this same file (``siphon_sdk/_smpp_codec.py`` links here) instead of
a copy of the tables."""

import struct

# The names a script may use (upstream's SMPP_STATUSES, 41).
STATUSES = {
    "ESME_ROK": 0x00, "ESME_RINVMSGLEN": 0x01, "ESME_RINVCMDLEN": 0x02, "ESME_RINVCMDID": 0x03,
    "ESME_RINVBNDSTS": 0x04, "ESME_RALYBND": 0x05, "ESME_RINVPRTFLG": 0x06,
    "ESME_RINVREGDLVFLG": 0x07, "ESME_RSYSERR": 0x08, "ESME_RINVSRCADR": 0x0A,
    "ESME_RINVDSTADR": 0x0B, "ESME_RINVMSGID": 0x0C, "ESME_RBINDFAIL": 0x0D,
    "ESME_RINVPASWD": 0x0E, "ESME_RINVSYSID": 0x0F, "ESME_RCANCELFAIL": 0x11,
    "ESME_RREPLACEFAIL": 0x13, "ESME_RMSGQFUL": 0x14, "ESME_RINVSERTYP": 0x15,
    "ESME_RINVNUMDESTS": 0x33, "ESME_RINVDLNAME": 0x34, "ESME_RINVDESTFLAG": 0x40,
    "ESME_RINVSUBREP": 0x42, "ESME_RINVESMCLASS": 0x43, "ESME_RCNTSUBDL": 0x44,
    "ESME_RSUBMITFAIL": 0x45, "ESME_RINVSRCTON": 0x48, "ESME_RINVSRCNPI": 0x49,
    "ESME_RINVDSTTON": 0x50, "ESME_RINVDSTNPI": 0x51, "ESME_RINVSYSTYP": 0x53,
    "ESME_RINVREPFLAG": 0x54, "ESME_RINVNUMMSGS": 0x55, "ESME_RTHROTTLED": 0x58,
    "ESME_RINVSCHED": 0x61, "ESME_RINVEXPIRY": 0x62, "ESME_RINVDFTMSGID": 0x63,
    "ESME_RX_T_APPN": 0x64, "ESME_RX_P_APPN": 0x65, "ESME_RX_R_APPN": 0x66,
    "ESME_RQUERYFAIL": 0x67,
}
NAMES = {v: k for k, v in STATUSES.items()}

# Standard TLVs (SMPP 3.4 section 5.3.2): name -> (tag, integer width or 0 for octets/str).
TLVS = {
    "dest_addr_subunit": (0x0005, 1), "dest_network_type": (0x0006, 1),
    "dest_bearer_type": (0x0007, 1), "dest_telematics_id": (0x0008, 2),
    "source_addr_subunit": (0x000D, 1), "source_network_type": (0x000E, 1),
    "source_bearer_type": (0x000F, 1), "source_telematics_id": (0x0010, 1),
    "qos_time_to_live": (0x0017, 4), "payload_type": (0x0019, 1),
    "additional_status_info_text": (0x001D, 0), "receipted_message_id": (0x001E, 0),
    "ms_msg_wait_facilities": (0x0030, 1), "privacy_indicator": (0x0201, 1),
    "source_subaddress": (0x0202, 0), "dest_subaddress": (0x0203, 0),
    "user_message_reference": (0x0204, 2), "user_response_code": (0x0205, 1),
    "source_port": (0x020A, 2), "destination_port": (0x020B, 2),
    "sar_msg_ref_num": (0x020C, 2), "language_indicator": (0x020D, 1),
    "sar_total_segments": (0x020E, 1), "sar_segment_seqnum": (0x020F, 1),
    "sc_interface_version": (0x0210, 1), "callback_num_pres_ind": (0x0302, 1),
    "callback_num_atag": (0x0303, 0), "number_of_messages": (0x0304, 1),
    "callback_num": (0x0381, 0), "dpf_result": (0x0420, 1), "set_dpf": (0x0421, 1),
    "ms_availability_status": (0x0422, 1), "network_error_code": (0x0423, 0),
    "message_payload": (0x0424, 0), "delivery_failure_reason": (0x0425, 1),
    "more_messages_to_send": (0x0426, 1), "message_state": (0x0427, 1),
    "ussd_service_op": (0x0501, 1), "display_time": (0x1201, 1), "sms_signal": (0x1203, 2),
    "ms_validity": (0x1204, 1), "alert_on_message_delivery": (0x130C, 0),
    "its_reply_type": (0x1380, 1), "its_session_info": (0x1383, 2),
}
TAG_WIDTH = {tag: w for tag, w in TLVS.values()}

def status_code(name):
    """A status name (any case) or number -> its number."""
    if isinstance(name, int) and not isinstance(name, bool):
        return name
    code = STATUSES.get(str(name).upper())
    if code is None:
        raise ValueError(f"unknown SMPP status: {name}")
    return code


def tag_of(key):
    """A TLV name (``tlv_`` prefix optional) or tag number -> its tag."""
    if isinstance(key, int) and not isinstance(key, bool):
        if not 0 <= key <= 0xFFFF:
            raise ValueError(f"TLV tag {key} out of range")
        return key
    name = str(key).lower()
    if name.startswith("tlv_"):
        name = name[4:]
    t = TLVS.get(name)
    if t is None:
        raise ValueError(f"unknown TLV: {key}")
    return t[0]


def parse_tlvs(raw):
    """TLV wire octets -> ``{tag: bytes}`` (first occurrence wins)."""
    out = {}
    i = 0
    n = len(raw)
    while i + 4 <= n:
        tag, ln = struct.unpack_from(">HH", raw, i)
        out.setdefault(tag, bytes(raw[i + 4:i + 4 + ln]))
        i += 4 + ln
    return out


def encode_tlvs(tlvs):
    """``{name|tag: bytes|str|int}`` -> wire octets (spec section 2.3 rules)."""
    if not tlvs:
        return b""
    if not isinstance(tlvs, dict):
        raise TypeError("tlvs must be a dict")
    seen = set()
    out = bytearray()
    for k, v in tlvs.items():
        tag = tag_of(k)
        if tag in seen:
            raise ValueError(f"TLV {k} given twice")
        seen.add(tag)
        if isinstance(v, (bytes, bytearray)):
            val = bytes(v)
        elif isinstance(v, str):
            val = v.encode() + b"\0"
        elif isinstance(v, (int, bool)):
            w = TAG_WIDTH.get(tag, 0)
            if w == 0:
                raise ValueError(f"TLV {k} is not an integer TLV")
            try:
                val = int(v).to_bytes(w, "big")
            except OverflowError:
                raise ValueError(f"{v} does not fit TLV {k} ({w} octets)") from None
        else:
            raise TypeError(f"TLV {k}: bytes, str or int expected, not {type(v).__name__}")
        if len(val) > 0xFFFF:
            raise ValueError(f"TLV {k} value too long")
        out += struct.pack(">HH", tag, len(val)) + val
    return bytes(out)
