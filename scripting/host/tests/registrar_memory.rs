//! Bytes the registrar holds per registration (issue 18: PSS per registration), measured
//! with a counting allocator around the system one: 20,000 REGISTERs of the bench's shape
//! (one contact, digest user, received, User-Agent) through `shared::Registrar` on the
//! memory backend and on the local (redb) backend, whose writer must not keep a second copy.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use siphon_script::SipMessage;
use siphon_script::shared::{Registrar, SaveOutcome};
use siphon_script::state::RegistrarBackend;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` above with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc` is passed on.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const N: usize = 20_000;

fn register(i: usize) -> SipMessage {
    let text = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{i}-2;rport\r\n\
         From: <sip:u{i}@127.0.0.1>;tag=1234SIPpTag00{i}\r\n\
         To: <sip:u{i}@127.0.0.1>\r\n\
         Call-ID: {i}-5021@127.0.0.1\r\n\
         CSeq: 2 REGISTER\r\n\
         Contact: <sip:u{i}@127.0.0.1:5061;transport=UDP>\r\n\
         Max-Forwards: 70\r\nExpires: 3600\r\nUser-Agent: sipp-bench\r\n\
         Content-Length: 0\r\n\r\n"
    );
    SipMessage::parse(text.as_bytes()).expect("REGISTER parses")
}

/// Live bytes added by registering N users on `r`, per registration.
fn per_registration(r: &Registrar) -> usize {
    let msgs: Vec<SipMessage> = (0..N).map(register).collect();
    let src = "127.0.0.1:5061".parse().expect("addr");
    let before = LIVE.load(Ordering::Relaxed);
    for (i, m) in msgs.iter().enumerate() {
        match r.save(m, src, "udp", Some(&format!("u{i}"))) {
            SaveOutcome::Ok { .. } => {}
            _ => panic!("REGISTER {i} refused"),
        }
    }
    // The local store's writer drains its queue (the 200s would wait for this).
    if let Some(c) = r.commits() {
        let t = c.ticket();
        for _ in 0..500 {
            if c.done() >= t {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(c.done() >= t, "writer did not commit");
    }
    let after = LIVE.load(Ordering::Relaxed);
    drop(msgs);
    usize::try_from(after - before).unwrap_or(0) / N
}

#[test]
fn registration_costs_under_768_bytes_on_memory_and_local() {
    let mem = Registrar::new(Default::default());
    let m = per_registration(&mem);
    let dir = std::env::temp_dir().join(format!("siphon-regmem-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (local, _) = Registrar::open(
        Default::default(),
        &RegistrarBackend::Local {
            path: dir.join("r.redb"),
            commit_timeout: Duration::from_secs(4),
        },
        Default::default(),
        Arc::default(),
        Arc::new(|_, _| {}),
    )
    .expect("open local store");
    let l = per_registration(&local);
    println!("bytes per registration: memory {m}, local {l}");
    local.close();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(m <= 768, "memory backend: {m} bytes per registration");
    assert!(
        l <= m + 256,
        "local backend: {l} bytes per registration (memory: {m})"
    );
}
