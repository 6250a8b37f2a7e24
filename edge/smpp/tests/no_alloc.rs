//! The hot path allocates nothing: decoding submit_sm / deliver_sm / their resps (TLVs
//! included) and encoding them into a buffer with enough capacity. Checked with a counting
//! global allocator; this file is its own test binary, so nothing else runs beside it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use siphon_smpp::{Body, MessageIdResp, Pdu, SequenceNumber, SubmitSm, Tlv, TlvTag, Tlvs};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s contract is upheld exactly as the caller upholds ours.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` above with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; `ptr`/`layout` came from this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const TLVS: [Tlv<'static>; 3] = [
    Tlv::new(TlvTag::RECEIPTED_MESSAGE_ID, b"abc\0"),
    Tlv::new(TlvTag::MESSAGE_STATE, &[2]),
    Tlv::new(TlvTag(0x1403), b"vendor"),
];

#[test]
fn decode_and_encode_do_not_allocate() {
    let sm = SubmitSm {
        source_addr: b"447700900000",
        destination_addr: b"447700900001",
        short_message: b"id:abc stat:DELIVRD",
        tlvs: Tlvs::from_slice(&TLVS),
        ..SubmitSm::default()
    };
    let pdus = [
        Pdu::request(SequenceNumber(1), Body::SubmitSm(sm)),
        Pdu::request(SequenceNumber(2), Body::DeliverSm(sm)),
        Pdu::request(
            SequenceNumber(3),
            Body::SubmitSmResp(MessageIdResp { message_id: b"m-1" }),
        ),
        Pdu::request(
            SequenceNumber(4),
            Body::DeliverSmResp(MessageIdResp::default()),
        ),
    ];
    let mut wires = Vec::new();
    for p in &pdus {
        let mut w = Vec::new();
        p.encode(&mut w).unwrap();
        wires.push(w);
    }
    let mut out = Vec::with_capacity(4096);
    let before = ALLOCS.load(Ordering::Relaxed);
    let mut tlv_count = 0;
    for (w, p) in wires.iter().zip(&pdus) {
        let d = Pdu::decode(w).unwrap();
        if let Body::SubmitSm(s) | Body::DeliverSm(s) = d.body {
            tlv_count += s.tlvs.iter().count();
            assert!(s.tlvs.get(TlvTag(0x1403)).is_some());
        }
        out.clear();
        d.encode(&mut out).unwrap();
        assert_eq!(&out, w);
        assert!(d == *p);
    }
    let after = ALLOCS.load(Ordering::Relaxed);
    assert_eq!(tlv_count, 6);
    assert_eq!(after - before, 0, "allocations on the decode/encode path");
}
