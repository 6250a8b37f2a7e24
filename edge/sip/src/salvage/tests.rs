//! Salvage on the RFC 4475 messages that must get a 400 (from the committed corpus), on the
//! parser's rejects, and on garbage; plus a bounded mutation sweep that must never panic.

use super::*;
use crate::Message;

fn corpus(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/corpus/rfc4475/{name}.dat",
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Salvage `raw`, answer it, and parse the answer back.
fn answer(raw: &[u8], status: StatusCode, reason: &str) -> Message {
    let s = salvage_request(raw).expect("salvageable");
    Message::parse(s.response(status, reason, Some("s1"))).expect("the answer parses")
}

#[test]
fn rfc4475_messages_that_must_get_a_400() {
    // (file, Call-ID, CSeq as received, Via lines, To gets our tag)
    let cases: [(&str, &str, &str, usize, bool); 4] = [
        (
            "scalar02",
            "scalar02.23o0pd9vanlq3wnrlnewofjas9ui32",
            "36893488147419103232 REGISTER",
            1,
            true,
        ),
        ("quotbal", "quotbal.aksdj", "8 INVITE", 1, false),
        (
            "badinv01",
            "badinv01.0ha0isndaksdjasdf3234nas",
            "8 INVITE",
            1,
            true,
        ),
        (
            "regbadct",
            "regbadct.k345asrl3fdbv@10.0.0.1",
            "1 REGISTER",
            1,
            true,
        ),
    ];
    for (name, call_id, cseq, vias, tagged) in cases {
        let raw = corpus(name);
        let s = salvage_request(&raw).expect(name);
        assert_eq!(s.call_id(), call_id.as_bytes(), "{name}");
        assert_eq!(s.cseq(), cseq.as_bytes(), "{name}");
        assert!(!s.is_ack());
        let m = answer(&raw, StatusCode::BAD_REQUEST, "Malformed CSeq");
        assert_eq!(m.status(), Some(StatusCode::BAD_REQUEST), "{name}");
        assert_eq!(m.reason(), Some("Malformed CSeq"));
        assert_eq!(m.header_str("Call-ID"), Some(call_id), "{name}");
        assert_eq!(m.header_str("CSeq"), Some(cseq), "{name}");
        assert_eq!(m.headers_named(HeaderName::Via).count(), vias, "{name}");
        let to = m.header_str("To").expect("To copied");
        assert_eq!(to.ends_with(";tag=s1"), tagged, "{name}: {to}");
        assert!(m.body().is_empty());
        assert_eq!(m.content_length(), Some(0));
    }
}

#[test]
fn parser_rejects_get_a_reason_naming_the_fault() {
    let cases = [
        ("clerr", "Body Shorter Than Content-Length"),
        ("ncl", "Malformed Content-Length"),
        ("mcl01", "Conflicting Content-Length"),
        ("ltgtruri", "Malformed Request-URI"),
        ("lwsstart", "Malformed Request-URI"),
        ("trws", "Malformed SIP-Version"),
        ("baddn", "Header Section Not Terminated"),
    ];
    for (name, reason) in cases {
        let raw = corpus(name);
        let err = Message::parse_slice(&raw).expect_err(name);
        let (status, why) = parse_error_reply(&err);
        assert_eq!((status, why), (StatusCode::BAD_REQUEST, reason), "{name}");
        let m = answer(&raw, status, why);
        assert_eq!(m.reason(), Some(reason), "{name}");
        assert!(m.call_id().is_ok(), "{name}: Call-ID copied");
    }
    let too_large = ParseError::new(ParseErrorKind::TooLarge, 0);
    assert_eq!(
        parse_error_reply(&too_large),
        (StatusCode(513), "Message Too Large")
    );
}

#[test]
fn garbage_and_responses_are_not_requests() {
    for raw in [
        &b""[..],
        b"\r\n\r\n",
        b"\x00\x01\x02\xff\xfe",
        b"hello",
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
        b" INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
    ] {
        assert_eq!(
            salvage_request(raw),
            Err(SalvageError::NotARequest),
            "{raw:?}"
        );
    }
    assert_eq!(
        salvage_request(&corpus("bigcode")),
        Err(SalvageError::NotARequest)
    );
    // test.dat: a request line, but no Via and no CSeq.
    assert_eq!(
        salvage_request(&corpus("test")),
        Err(SalvageError::MissingVia)
    );
    let no_call_id = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCSeq: 1 OPTIONS\r\n\r\n";
    assert_eq!(
        salvage_request(no_call_id),
        Err(SalvageError::MissingCallId)
    );
    for cseq in ["CSeq: x OPTIONS", "CSeq: 1", "CSeq: 1OPTIONS", "CSeq:"] {
        let raw =
            format!("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\ni: c\r\n{cseq}\r\n\r\n");
        assert_eq!(
            salvage_request(raw.as_bytes()),
            Err(SalvageError::MissingCSeq),
            "{cseq}"
        );
    }
}

#[test]
fn compact_forms_folding_leading_crlf_and_ack() {
    let raw = b"\r\n\r\nINVITE  sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h1;branch=z9hG4bK1\r\n ;rport\r\n\
        Bad line without colon\r\nVIA : SIP/2.0/UDP h2, SIP/2.0/UDP h3\r\nf: <sip:x@y>;tag=9\r\n\
        t: \"B\" <sip:a@b>;TAG = 7\r\ni: abc@h1\r\nCSeq:\t12\t  INVITE\r\nContent-Length: 99999\r\n\r\nbody";
    let s = salvage_request(raw).expect("salvage");
    assert_eq!(s.method(), b"INVITE");
    assert_eq!(s.vias().len(), 2);
    assert_eq!(s.from(), Some(&b"<sip:x@y>;tag=9"[..]));
    let out = s.response(StatusCode::BAD_REQUEST, "Bad\r\nRequest", Some("ours"));
    let m = Message::parse(out).expect("parses");
    assert_eq!(m.reason(), Some("Bad  Request"));
    let vias: Vec<_> = m
        .vias()
        .map(|v| v.expect("via").host_raw.to_string())
        .collect();
    assert_eq!(vias, ["h1", "h2", "h3"]);
    assert_eq!(m.top_via().expect("via").rport(), Some(None));
    assert_eq!(
        m.to_tag().expect("to"),
        Some("7"),
        "an existing tag is kept"
    );
    assert_eq!(m.cseq().expect("cseq").seq, 12);

    let ack = b"ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\ni: c\r\nCSeq: 1 ACK\r\n\r\n";
    assert!(salvage_request(ack).expect("ack").is_ack());
    let odd = b"FOO sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\ni: c\r\nCSeq: 1 ack\r\n\r\n";
    assert!(
        salvage_request(odd).expect("odd").is_ack(),
        "CSeq method ACK"
    );
}

#[test]
fn limits_bound_the_work() {
    let mut raw = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
    for i in 0..(MAX_VIAS + 10) {
        raw.extend_from_slice(format!("Via: SIP/2.0/UDP h{i}\r\n").as_bytes());
    }
    raw.extend_from_slice(b"Call-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n");
    assert_eq!(
        salvage_request(&raw).expect("salvage").vias().len(),
        MAX_VIAS
    );
    let mut raw = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
    for _ in 0..MAX_LINES {
        raw.extend_from_slice(b"X: y\r\n");
    }
    raw.extend_from_slice(b"Via: SIP/2.0/UDP h\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n");
    assert_eq!(salvage_request(&raw), Err(SalvageError::MissingVia));
}

/// Every prefix of every corpus file, and single-byte corruptions at a stride: salvage never
/// panics, and whatever it accepts yields an answer that frames as one message.
#[test]
fn mutation_sweep_never_panics() {
    let dir = format!(
        "{}/tests/corpus/rfc4475",
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR")
    );
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "dat"))
        .collect();
    files.sort();
    assert!(files.len() >= 50);
    let check = |raw: &[u8]| {
        if let Ok(s) = salvage_request(raw) {
            let out = s.response(StatusCode::BAD_REQUEST, "Bad Request", Some("t"));
            let m = Message::parse(out).expect("answer frames");
            assert_eq!(m.status(), Some(StatusCode::BAD_REQUEST));
        }
    };
    for f in files {
        let raw = std::fs::read(&f).expect("read");
        for n in 0..=raw.len() {
            check(&raw[..n]);
        }
        for (i, b) in [0u8, b'\r', b'\n', b':', b' ', b'"', 0xff]
            .iter()
            .enumerate()
        {
            for at in (i..raw.len()).step_by(7) {
                let mut m = raw.clone();
                m[at] = *b;
                check(&m);
            }
        }
    }
}
