//! RFC 4475 (SIP torture messages) and RFC 5118 (IPv6 torture messages) conformance: every file
//! of `tests/corpus/{rfc4475,rfc5118}` is checked against its row in `VERDICTS.tsv`
//! (classes, and where the bytes come from, in `tests/corpus/PROVENANCE.md`):
//! - P/S: parses (datagram framing), round-trips byte-exact through the serializer, a modified
//!   copy reparses; P also passes every typed accessor (and proxy validation for requests).
//! - F: rejected by the parser/framer with a typed error.
//! - H: parses, but a typed header accessor fails.
//! - V: parses, and request validation answers one of the listed status codes.
//! - L / two-letter classes: either behaviour; whatever is accepted must serialize to something
//!   that reparses (we never forward bad syntax we could not parse).
//!
//! The corpus is committed in the crate (`tests/corpus/`, byte-exact: its `.gitattributes` turns
//! off line-ending conversion), so a clone alone runs this test. A missing corpus FAILS the test.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use siphon_sip::{
    HeaderName, Host, Message, ParseErrorKind, StreamFramer, StreamItem, Uri, ValidationConfig,
    validate_request,
};

fn corpus_root() -> PathBuf {
    let root = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
    .join("tests/corpus");
    assert!(
        root.join("rfc4475/VERDICTS.tsv").is_file() && root.join("rfc5118/VERDICTS.tsv").is_file(),
        "conformance corpus missing at {}",
        root.display()
    );
    root
}

struct Row {
    name: String,
    class: String,
    expected: String,
}

fn verdicts(dir: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(dir.join("VERDICTS.tsv")).expect("read VERDICTS.tsv");
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(cols.len() >= 4, "bad VERDICTS row: {line}");
        rows.push(Row {
            name: cols[0].to_string(),
            class: cols[2].to_string(),
            expected: cols[3].to_string(),
        });
    }
    rows
}

fn dat_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read corpus dir")
        .filter_map(|e| {
            let p = e.expect("dir entry").path();
            (p.extension().and_then(|x| x.to_str()) == Some("dat"))
                .then(|| p.file_stem().and_then(|s| s.to_str()).map(str::to_string))
                .flatten()
        })
        .collect()
}

/// RFC 5118 archive files: LF → CRLF, close the header section, recompute Content-Length
/// (PROVENANCE.md).
fn normalise_5118(raw: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(raw.to_vec()).expect("rfc5118 files are text");
    assert!(!text.contains('\r'), "rfc5118 archive has no CR");
    let crlf = text.replace('\n', "\r\n");
    let (head, body) = match crlf.find("\r\n\r\n") {
        Some(i) => (crlf[..i].to_string(), crlf[i + 4..].to_string()),
        None => (crlf.trim_end_matches("\r\n").to_string(), String::new()),
    };
    let mut out = String::new();
    for line in head.split("\r\n") {
        let name = line.split(':').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l") {
            out.push_str(&format!("Content-Length: {}\r\n", body.len()));
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

fn statuses(expected: &str) -> Vec<u16> {
    expected
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| w.len() == 3)
        .filter_map(|w| w.parse().ok())
        .filter(|n| (100..700).contains(n))
        .collect()
}

/// Parse, serialize unmodified (byte-exact), serialize modified (reparses); returns the message.
fn parse_and_round_trip(name: &str, input: &[u8]) -> Message {
    let m = Message::parse_slice(input).unwrap_or_else(|e| panic!("{name}: must parse: {e}"));
    assert!(
        input.starts_with(m.as_bytes()),
        "{name}: message bytes are a prefix of the input"
    );
    assert_eq!(
        m.edit().to_bytes(),
        m.as_bytes(),
        "{name}: unmodified round trip is byte-exact"
    );
    let mut e = m.edit();
    if m.is_request() {
        e.push_via("SIP/2.0/UDP proxy.example.net:5060;branch=z9hG4bKconf1")
            .expect("push via");
        let _ = e.decrement_max_forwards();
        e.insert_record_route("<sip:proxy.example.net;lr>")
            .expect("rr");
        let _ = e.pop_route();
        e.set_request_uri("sip:next@192.0.2.99:5070").expect("ruri");
    } else {
        e.pop_via().expect("response has a Via");
    }
    e.add_header("X-Conformance", name).expect("add header");
    // The copy is indexed as it is written; a parse of its bytes finds the same.
    let again = e.to_message();
    let reparsed = Message::parse(again.bytes().clone())
        .unwrap_or_else(|err| panic!("{name}: modified copy reparses: {err}"));
    assert_eq!(again.start_line(), reparsed.start_line(), "{name}");
    assert!(
        again.headers().eq(reparsed.headers()),
        "{name}: same header index as a parse"
    );
    assert_eq!(again.body(), reparsed.body(), "{name}");
    assert_eq!(again.content_length(), reparsed.content_length(), "{name}");
    assert_eq!(again.body(), m.body(), "{name}: body preserved");
    assert_eq!(again.header_str("X-Conformance"), Some(name));
    if m.is_request() {
        assert_eq!(
            again.top_via().expect("top via").branch(),
            Some("z9hG4bKconf1"),
            "{name}"
        );
        assert_eq!(again.request_uri_str(), Some("sip:next@192.0.2.99:5070"));
        let rr = again
            .record_routes()
            .next()
            .expect("rr")
            .expect("rr parses");
        assert_eq!(rr.uri.as_str(), "sip:proxy.example.net;lr");
    } else {
        assert_eq!(
            again.vias().count() + 1,
            m.vias().count(),
            "{name}: one Via popped"
        );
    }
    // Stream framing of the same message, fed in small pieces, gives the same message when it
    // has Content-Length.
    if m.content_length().is_some() {
        let mut f = StreamFramer::new();
        let mut got = None;
        for chunk in m.as_bytes().chunks(7) {
            f.push(chunk);
            while let Some(item) = f
                .poll_item()
                .unwrap_or_else(|e| panic!("{name}: stream: {e}"))
            {
                if let StreamItem::Message(x) = item {
                    got = Some(x);
                }
            }
        }
        assert_eq!(
            got.expect("stream yields the message").as_bytes(),
            m.as_bytes(),
            "{name}"
        );
    }
    m
}

/// Touch every accessor; returns whether every header present passed its typed accessor
/// (missing mandatory headers are request validation's business, not a header fault).
fn exercise(m: &Message) -> bool {
    let _ = (
        m.method(),
        m.method_str(),
        m.request_uri(),
        m.status(),
        m.reason(),
        m.version(),
    );
    let _ = (
        m.call_id(),
        m.cseq(),
        m.from(),
        m.to(),
        m.top_via(),
        m.max_forwards(),
    );
    let _ = (m.expires(), m.content_type(), m.top_route());
    let _ =
        m.vias().count() + m.contacts().count() + m.routes().count() + m.record_routes().count();
    let _ =
        m.allow().count() + m.supported().count() + m.require().count() + m.proxy_require().count();
    let _ = validate_request(m, &ValidationConfig::PROXY);
    let _ = validate_request(m, &ValidationConfig::UAS);
    m.check_typed_headers().is_ok()
}

/// Every mandatory header present and typed.
fn mandatory_ok(m: &Message) -> bool {
    m.call_id().is_ok()
        && m.cseq().is_ok()
        && m.from().is_ok()
        && m.to().is_ok()
        && m.top_via().is_ok()
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Accepted,
    FramingRejected,
    HeaderRejected,
    ValidationRejected(u16),
}

fn run_corpus(sub: &str) {
    let dir = corpus_root().join(sub);
    let rows = verdicts(&dir);
    let names: BTreeSet<String> = rows.iter().map(|r| r.name.clone()).collect();
    assert_eq!(names.len(), rows.len(), "{sub}: duplicate VERDICTS rows");
    let files = dat_files(&dir);
    let no_row: Vec<_> = files.difference(&names).collect();
    let no_file: Vec<_> = names.difference(&files).collect();
    assert!(
        no_row.is_empty(),
        "{sub}: files without a VERDICTS row: {no_row:?}"
    );
    assert!(
        no_file.is_empty(),
        "{sub}: VERDICTS rows without a file: {no_file:?}"
    );
    assert!(!rows.is_empty());

    let mut summary = Vec::new();
    for row in &rows {
        let raw = std::fs::read(dir.join(format!("{}.dat", row.name))).expect("read .dat");
        let input = if sub == "rfc5118" {
            normalise_5118(&raw)
        } else {
            raw
        };
        let name = row.name.as_str();
        let role = if row.expected.starts_with("UAS:") {
            ValidationConfig::UAS
        } else {
            ValidationConfig::PROXY
        };
        let outcome = match Message::parse_slice(&input) {
            Err(e) => {
                assert_ne!(e.kind, ParseErrorKind::Empty, "{name}");
                Outcome::FramingRejected
            }
            Ok(m) => {
                let typed_ok = exercise(&m);
                if !typed_ok {
                    Outcome::HeaderRejected
                } else if m.is_request() {
                    match validate_request(&m, &role) {
                        Ok(()) => Outcome::Accepted,
                        Err(r) => Outcome::ValidationRejected(r.status.as_u16()),
                    }
                } else {
                    Outcome::Accepted
                }
            }
        };
        let allowed = |c: char| -> bool {
            match c {
                'P' | 'S' => match &outcome {
                    Outcome::Accepted => true,
                    // S: syntactically valid, the application decides: parsing is what counts.
                    Outcome::ValidationRejected(_) | Outcome::HeaderRejected => c == 'S',
                    Outcome::FramingRejected => false,
                },
                'F' => outcome == Outcome::FramingRejected,
                'H' => outcome == Outcome::HeaderRejected,
                'V' => match outcome {
                    Outcome::ValidationRejected(s) => statuses(&row.expected).contains(&s),
                    _ => false,
                },
                'L' => true,
                other => panic!("{name}: unknown class letter {other}"),
            }
        };
        let ok = row
            .class
            .split('/')
            .any(|c| allowed(c.chars().next().expect("class letter")));
        assert!(
            ok,
            "{sub}/{name}: class {} but outcome {outcome:?} ({})",
            row.class, row.expected
        );

        // Class-specific extra checks.
        let first = row.class.chars().next().expect("class");
        // Whatever parsed (P, S, H, V, and accepted L) round-trips and a modified copy
        // reparses: we never emit what we could not parse back.
        if outcome != Outcome::FramingRejected {
            let m = parse_and_round_trip(name, &input);
            if first == 'P' {
                assert!(
                    exercise(&m) && mandatory_ok(&m),
                    "{name}: P must pass every typed accessor"
                );
                if m.is_request() {
                    validate_request(&m, &ValidationConfig::PROXY)
                        .unwrap_or_else(|r| panic!("{name}: P request rejected: {r:?}"));
                }
            }
        }
        if first == 'F' && row.class == "F" {
            // Typed error, and the stream framer never yields a message from it.
            let err = Message::parse_slice(&input).expect_err("F rejected");
            let mut f = StreamFramer::new();
            f.push(&input);
            match f.poll_item() {
                Err(_) | Ok(None) => {}
                Ok(Some(StreamItem::Message(m))) => {
                    panic!("{name}: stream framer yielded {m:?} (datagram error {err})")
                }
                Ok(Some(_)) => {}
            }
        }
        summary.push(format!("{name}:{}→{outcome:?}", row.class));
    }
    println!("{sub}: {}", summary.join(", "));
}

#[test]
fn rfc4475_torture_corpus() {
    run_corpus("rfc4475");
}

#[test]
fn rfc5118_ipv6_corpus() {
    run_corpus("rfc5118");
}

fn load(sub: &str, name: &str) -> Message {
    let raw = std::fs::read(corpus_root().join(sub).join(format!("{name}.dat"))).expect("read");
    let input = if sub == "rfc5118" {
        normalise_5118(&raw)
    } else {
        raw
    };
    Message::parse_slice(&input).expect("parses")
}

#[test]
fn torture_semantics() {
    // wsinv: folding, compact forms, odd LWS, unknown headers kept.
    let m = load("rfc4475", "wsinv");
    assert_eq!(m.max_forwards().unwrap(), Some(68));
    assert_eq!(m.cseq().unwrap().seq, 9);
    assert_eq!(m.to().unwrap().tag(), Some("1918181833n"));
    assert_eq!(m.from().unwrap().tag(), Some("98asjd8"));
    let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(vias[2].host_raw, "192.168.255.111");
    let c = m.contacts().next().unwrap().unwrap();
    assert_eq!(c.q_millis(), Some(330));
    assert!(
        m.header_str("NewFangledHeader")
            .unwrap()
            .contains("continued newfangled value")
    );

    // esc01: escapes compare equal to their unescaped form.
    let m = load("rfc4475", "esc01");
    let to = m.to().unwrap();
    assert!(
        to.uri
            .equivalent(&Uri::parse("sip:user@example.com").unwrap())
    );
    // escnull: %00 is data.
    let m = load("rfc4475", "escnull");
    assert_eq!(m.contacts().count(), 2);
    // esc02: RE%47IST%45R is an extension method, not REGISTER.
    let m = load("rfc4475", "esc02");
    assert_eq!(m.method(), Some(siphon_sip::Method::Extension));
    assert_eq!(m.method_str(), Some("RE%47IST%45R"));
    // semiuri: ';' in the user part is user.
    let m = load("rfc4475", "semiuri");
    let ruri = m.request_uri().unwrap();
    assert_eq!(
        ruri.as_sip().unwrap().user,
        Some("user;par=u%40example.net")
    );
    // transports: five Vias with five transports.
    let m = load("rfc4475", "transports");
    let t: Vec<_> = m.vias().map(|v| v.unwrap().transport).collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    // dblreq: only the first message.
    let m = load("rfc4475", "dblreq");
    assert_eq!(m.method(), Some(siphon_sip::Method::Register));
    assert!(m.body().is_empty());
    // cparam01/02: where ;unknownparam belongs.
    let m = load("rfc4475", "cparam01");
    let c = m.contacts().next().unwrap().unwrap();
    let a = c.address().unwrap();
    assert!(a.params.contains("unknownparam") && a.uri.as_sip().unwrap().params.is_empty());
    let m = load("rfc4475", "cparam02");
    let c = m.contacts().next().unwrap().unwrap();
    assert!(
        c.address()
            .unwrap()
            .uri
            .as_sip()
            .unwrap()
            .params
            .contains("unknownparam")
    );
    // regescrt: the escaped ?Route= stays in the Contact URI.
    let m = load("rfc4475", "regescrt");
    let c = m.contacts().next().unwrap().unwrap();
    assert_eq!(
        c.address().unwrap().uri.as_sip().unwrap().headers,
        Some("Route=%3Csip:sip.example.com%3E")
    );
    // bext01: 420 lists the Proxy-Require tags.
    let m = load("rfc4475", "bext01");
    let r = validate_request(&m, &ValidationConfig::PROXY).unwrap_err();
    assert_eq!(
        r.headers,
        [(
            HeaderName::Unsupported,
            "noProxiesSupportThis, norDoAnyProxiesSupportThis".to_string()
        )]
    );
    // zeromf: a UAS processes it.
    let m = load("rfc4475", "zeromf");
    assert!(validate_request(&m, &ValidationConfig::UAS).is_ok());
    // inv2543: no Content-Length over UDP = rest of datagram.
    let m = load("rfc4475", "inv2543");
    assert!(m.body().starts_with(b"v=0"));
    assert_eq!(m.top_via().unwrap().branch(), None);
    // mpart01: binary body opaque, exact length.
    let m = load("rfc4475", "mpart01");
    assert_eq!(m.body().len(), m.content_length().unwrap() as usize);
    // unreason / noreason.
    assert_eq!(load("rfc4475", "noreason").reason(), Some(""));
    assert!(
        load("rfc4475", "unreason")
            .reason()
            .unwrap()
            .starts_with("= 2**3")
    );
    // clerr on a stream: wait for more bytes.
    let raw = std::fs::read(corpus_root().join("rfc4475/clerr.dat")).unwrap();
    let mut f = StreamFramer::new();
    f.push(&raw);
    assert!(f.poll_item().unwrap().is_none());
}

#[test]
fn ipv6_semantics() {
    let m = load("rfc5118", "port-ambiguous");
    let u = m.request_uri().unwrap();
    let s = u.as_sip().unwrap();
    assert_eq!(s.host, Host::Ipv6("2001:db8::10:5070".parse().unwrap()));
    assert_eq!(s.port, None);
    let m = load("rfc5118", "port-unambiguous");
    let u = m.request_uri().unwrap();
    assert_eq!(u.as_sip().unwrap().port, Some(5070));
    let a = load("rfc5118", "ipv6-bug-abnf-3-colons");
    let b = load("rfc5118", "ipv6-correct-abnf-2-colons");
    assert!(
        a.request_uri()
            .unwrap()
            .equivalent(&b.request_uri().unwrap())
    );
    let m = load("rfc5118", "via-received-param-with-delim");
    assert_eq!(m.top_via().unwrap().received(), Some("[2001:db8::9:255]"));
    let m = load("rfc5118", "mult-ip-in-header");
    let hosts: Vec<String> = m.vias().map(|v| v.unwrap().host.to_string()).collect();
    assert_eq!(hosts, ["[2001:db8::9:1]", "192.0.2.1", "[2001:db8::9:255]"]);
}
