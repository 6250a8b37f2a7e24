//! Inline placement: each "reactor" thread creates its core's interpreter and drives it with
//! `InlineWorker::turn` (no worker threads). Separate test binary: one Host per process.

use std::sync::Arc;

use siphon_script::{Disposition, Event, EventKind, Host, HostConfig, Meta, SipMessage};

#[test]
fn inline_workers_on_two_threads() {
    let dir = std::env::temp_dir().join(format!("siphon-inline-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let script = dir.join("app.py");
    std::fs::write(&script, "from siphon import proxy\nimport _siphon\n@proxy.on_request\ndef h(r):\n    r.reply(200, f'core {_siphon.worker_id()}')\n").expect("write");
    let mut cfg = HostConfig::new(2, &script);
    cfg.inline = true;
    let host = match Host::start(cfg) {
        Ok(h) => h,
        Err(e) if !cfg!(Py_3_12) => {
            // 3.11 has no per-core interpreters: inline placement is refused, loudly.
            eprintln!("inline placement unavailable on this Python: {e}");
            return;
        }
        Err(e) => panic!("host start: {e}"),
    };
    let threads: Vec<_> = (0..2)
        .map(|core| {
            let h = host.handle();
            std::thread::spawn(move || {
                let mut w = h.inline_worker(core).expect("inline worker");
                let raw = b"OPTIONS sip:a@example.com SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n";
                let ev = Event {
                    id: 7,
                    core,
                    kind: EventKind::Request,
                    request: Arc::new(SipMessage::parse(raw).expect("valid")),
                    reply: None,
                    meta: Meta::default(),
                    request_id: None,
                };
                h.submit(ev).expect("room");
                let a = loop {
                    w.turn();
                    if let Some(a) = h.poll(core) {
                        break a;
                    }
                };
                drop(w);
                a
            })
        })
        .collect();
    for (core, t) in threads.into_iter().enumerate() {
        let a = t.join().expect("thread");
        assert!(
            matches!(a.disposition, Disposition::Reply { status: 200, ref reason, .. } if *reason == format!("core {core}"))
        );
    }
    host.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
