//! Fuzz target: the stream framer yields the same items whatever the read boundaries. The
//! first byte picks the chunk size; the rest is the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siphon_sip::{StreamFramer, StreamItem};

#[derive(Debug, PartialEq)]
enum Seen {
    Msg(Vec<u8>),
    Ping,
    Pong,
    Err,
}

fn run(data: &[u8], chunk: usize) -> Vec<Seen> {
    let mut f = StreamFramer::new();
    let mut out = Vec::new();
    for c in data.chunks(chunk.max(1)) {
        f.push(c);
        loop {
            match f.poll_item() {
                Ok(None) => break,
                Ok(Some(StreamItem::Message(m))) => out.push(Seen::Msg(m.as_bytes().to_vec())),
                Ok(Some(StreamItem::Ping)) => out.push(Seen::Ping),
                Ok(Some(StreamItem::Pong)) => out.push(Seen::Pong),
                Err(_) => {
                    out.push(Seen::Err);
                    return out;
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&c, rest)) = data.split_first() else {
        return;
    };
    let whole = run(rest, rest.len().max(1));
    let split = run(rest, usize::from(c % 64) + 1);
    // Pong needs a byte after the CRLF to be told apart from a ping, so a split stream may
    // report it later, never differently; compare messages and errors only.
    let strip = |v: Vec<Seen>| -> Vec<Seen> {
        v.into_iter().filter(|s| !matches!(s, Seen::Pong)).collect()
    };
    assert_eq!(strip(whole), strip(split));
});
